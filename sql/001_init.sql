-- Initial schema. Rates are stored as change points: a run of scrapes that saw the
-- same published text is one rate_change row whose observed_at moves forward.
-- Times are Unix milliseconds (UTC); dates are 'YYYY-MM-DD'.

-- A scraped site ("24kg", "nbkr").
CREATE TABLE source (
  id   INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

-- One value of one currency, in force from since until the next row's since.
-- rate is the text exactly as published; rate_num only orders values (OHLC high/low)
-- and is never read back as a rate. The primary key is also the index every query
-- seeks on: "value in force at t" is the last row with since <= t.
CREATE TABLE rate_change (
  source_id      INTEGER NOT NULL REFERENCES source (id),
  currency       TEXT    NOT NULL,
  since          INTEGER NOT NULL,
  rate           TEXT    NOT NULL,
  rate_num       REAL    NOT NULL,
  observed_at    INTEGER NOT NULL,
  effective_date TEXT,
  PRIMARY KEY (source_id, currency, since)
) WITHOUT ROWID;

-- A value that jumped by more than the plausibility share, waiting to be seen again.
CREATE TABLE rate_hold (
  source_id      INTEGER NOT NULL REFERENCES source (id),
  currency       TEXT    NOT NULL,
  rate           TEXT    NOT NULL,
  first_seen     INTEGER NOT NULL,
  effective_date TEXT,
  PRIMARY KEY (source_id, currency)
) WITHOUT ROWID;

-- Every scrape attempt. Health needs the newest success, the newest error and the
-- errors after that success; a partial index per kind answers each with one seek
-- (outcome has four values, so outcome <> 'error' is exactly "success").
CREATE TABLE scrape_log (
  id          INTEGER PRIMARY KEY,
  source_id   INTEGER NOT NULL REFERENCES source (id),
  started_at  INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  http_status INTEGER NOT NULL,
  outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'not_modified', 'held', 'error')),
  error       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX scrape_log_success ON scrape_log (source_id, started_at) WHERE outcome <> 'error';
CREATE INDEX scrape_log_failure ON scrape_log (source_id, started_at) WHERE outcome = 'error';
