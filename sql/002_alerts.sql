-- Alerts: rules created through the API, the state of every rule, the events rules
-- raised and their delivery to notifiers (the outbox). Times are Unix milliseconds
-- (UTC) as in 001; thresholds, measured values and rates are exact text.
-- Enumerations are stored as their names; the CHECKs keep anything else out.

-- A rule created through the API; definition is its JSON (the keys of [[alert]]).
-- Rules from the config file are not stored.
CREATE TABLE alert_rule (
  name       TEXT    NOT NULL PRIMARY KEY,
  definition TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Where each rule (from the config or the API) is in its life; one row per rule name.
-- value is the last measured value as text, '' when none.
CREATE TABLE alert_state (
  rule          TEXT    NOT NULL PRIMARY KEY,
  phase         TEXT    NOT NULL CHECK (phase IN ('inactive', 'pending', 'firing', 'resolved')),
  since         INTEGER NOT NULL,
  started_at    INTEGER,
  last_notified INTEGER,
  evaluated_at  INTEGER,
  value         TEXT    NOT NULL DEFAULT '',
  created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Every event, a snapshot of what receivers need (the rule may have changed or gone
-- since). id is the outbox order; event_id is the idempotency key sent to receivers.
-- labels is a JSON object of strings. Events are never updated.
CREATE TABLE alert_event (
  id        INTEGER PRIMARY KEY,
  event_id  TEXT    NOT NULL UNIQUE,
  rule      TEXT    NOT NULL,
  kind      TEXT    NOT NULL CHECK (kind IN ('firing', 'reminder', 'resolved', 'test')),
  at        INTEGER NOT NULL,
  starts_at INTEGER NOT NULL,
  ends_at   INTEGER,
  condition TEXT    NOT NULL
    CHECK (condition IN ('above', 'below', 'change_pct', 'spread_pct', 'stale')),
  currency  TEXT    NOT NULL DEFAULT '',
  source    TEXT    NOT NULL,
  against   TEXT    NOT NULL DEFAULT '',
  threshold TEXT    NOT NULL,
  value     TEXT    NOT NULL,
  rate      TEXT    NOT NULL DEFAULT '',
  labels    TEXT    NOT NULL DEFAULT '{}'
);
-- A rule's events in outbox order (the API's ?rule= and a rule's last event: one seek).
CREATE INDEX alert_event_rule ON alert_event (rule, id);
-- Events by time (the API's ?since=).
CREATE INDEX alert_event_at ON alert_event (at);

-- One event's delivery to one notifier. Strict FIFO per notifier: only the lowest-id
-- pending delivery of a notifier is ever attempted, so the partial index below makes
-- "the head of each notifier's queue" one seek per notifier however long the history.
-- The UNIQUE constraint's index also finds an event's deliveries.
CREATE TABLE alert_delivery (
  id              INTEGER PRIMARY KEY,
  event           INTEGER NOT NULL REFERENCES alert_event (id),
  notifier        TEXT    NOT NULL,
  status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  created_at      INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  done_at         INTEGER,
  last_error      TEXT    NOT NULL DEFAULT '',
  UNIQUE (event, notifier)
);
CREATE INDEX alert_delivery_pending ON alert_delivery (notifier, id) WHERE status = 'pending';

-- Every attempt of a delivery; the rowid orders a delivery's attempts oldest first.
CREATE TABLE alert_attempt (
  id          INTEGER PRIMARY KEY,
  delivery    INTEGER NOT NULL REFERENCES alert_delivery (id),
  at          INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  http_status INTEGER NOT NULL,
  outcome     TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
  error       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX alert_attempt_delivery ON alert_attempt (delivery);
