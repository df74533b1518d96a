"""Day-two commands on the real binary and temp files: backup while the daemon writes,
export -> import -> export round trips, a large import in bounded memory, scrape-log
retention on a running daemon, check-config and vacuum. Sources are file:// only."""

import datetime
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from daemon import BINARY, Daemon, wait_for  # noqa: E402
from test_daemon import NBKR, seed_page  # noqa: E402

HEADER = "source,currency,since,rate,observed_at,effective_date"

# Peak resident memory allowed for importing a CSV larger than it: proof of streaming.
MAX_IMPORT_RSS = 64 * 1024 * 1024


def run(*args, stdin=None, timeout=300):
    """Runs somrated with args; returns the CompletedProcess (text mode)."""
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    return subprocess.run([BINARY, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


def sanitized_binary():
    """True when the binary was built with a sanitizer, whose shadow memory makes any
    resident-memory bound meaningless."""
    with open(BINARY, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def ops_config(page_path, keep="90d", interval="1s", extra=""):
    """A daemon config reading page_path (24kg) and the NBKR fixture through file://."""
    return f"""
[storage]
path = "@DB@"
keep_scrape_log = "{keep}"

[log]
level = "info"

[[source]]
name = "24kg"
kind = "24kg"
url = "file://{page_path}"
interval = "{interval}"
max_jump = 0

[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{os.path.abspath(NBKR)}"
interval = "{interval}"
{extra}"""


def write_page(path, usd):
    """Replaces the 24kg page atomically, so a scrape never reads half a file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(seed_page(usd=usd))
    os.replace(tmp, path)


def seed_changes(db_path, source="24kg", currency="USD", count=100_000, start_ms=1_262_304_000_000):
    """Writes count old change points straight into the daemon's SQLite file (schema of
    sql/001_init.sql), before anything the daemon stores; safe while it runs (WAL)."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        db.execute("INSERT OR IGNORE INTO source (name) VALUES (?)", (source,))
        (source_id,) = db.execute("SELECT id FROM source WHERE name = ?", (source,)).fetchone()
        rows = []
        for i in range(count):
            since = start_ms + i * 600_000
            rate = f"{80 + (i % 700) / 100:.2f}"
            rows.append((source_id, currency, since, rate, float(rate), since + 1))
        with db:
            db.executemany("INSERT INTO rate_change (source_id, currency, since, rate, rate_num, "
                           "observed_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        db.close()


def seed_scrape_log(db_path, source, count, started_ms):
    """Writes count successful scrape-log rows from started_ms on, one ms apart."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        db.execute("INSERT OR IGNORE INTO source (name) VALUES (?)", (source,))
        (source_id,) = db.execute("SELECT id FROM source WHERE name = ?", (source,)).fetchone()
        with db:
            db.executemany("INSERT INTO scrape_log (source_id, started_at, duration_ms, "
                           "http_status, outcome) VALUES (?, ?, 1, 0, 'ok')",
                           [(source_id, started_ms + i) for i in range(count)])
    finally:
        db.close()


def query(db_path, sql, args=()):
    """One query's rows, read-only."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def now_ms():
    return int(time.time() * 1000)


class PageWriter:
    """Changes the USD value of the 24kg page every 0.2 s, so the daemon stores a new
    change point at every scrape."""

    def __init__(self, path):
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self.stop.wait(0.2):
            i += 1
            write_page(self.path, f"{87 + (i % 90) / 100:.2f}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class Ops(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-ops-")
        self.page = os.path.join(self.dir, "24kg.html")
        write_page(self.page, "87.45")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def scrape_count(self, d):
        return query(d.db, "SELECT count(*) FROM scrape_log")[0][0]

    def assert_no_database_errors(self, d):
        self.assertNotIn("database job failed", d.log())
        self.assertNotIn("error:", d.log())

    def test_backup_while_the_daemon_writes(self):
        with Daemon(ops_config(self.page), workdir=self.dir) as d:
            wait_for(lambda: self.scrape_count(d) >= 2, what="first scrapes")
            # Enough pages that a copy takes many steps, each a chance for a write between.
            seed_changes(d.db, count=200_000)
            with PageWriter(self.page):
                previous = 0
                for i in range(4):
                    before = self.scrape_count(d)
                    dest = self.path(f"backup{i}.db")
                    r = run("backup", "--config", d.config_path, dest)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertRegex(r.stdout, r"^backed up .* to .*: \d+ pages, \d+ bytes, "
                                               r"integrity ok\n$")
                    self.assertEqual(query(dest, "PRAGMA integrity_check"), [("ok",)])
                    self.assertEqual(query(dest, "PRAGMA journal_mode"), [("delete",)])
                    self.assertFalse(os.path.exists(dest + "-wal"))
                    (changes,) = query(dest, "SELECT count(*) FROM rate_change")[0]
                    self.assertGreater(changes, 200_000)
                    self.assertGreaterEqual(changes, previous)
                    previous = changes
                    # The daemon keeps scraping and storing between (and during) copies.
                    wait_for(lambda: self.scrape_count(d) > before, what="a scrape after the backup")
            # The file is never overwritten without --force, and is with it.
            r = run("backup", "--config", d.config_path, self.path("backup0.db"))
            self.assertEqual(r.returncode, 1)
            self.assertIn("exists; add --force to replace it", r.stderr)
            r = run("backup", self.path("backup0.db"), "--force", "--config", d.config_path)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(query(self.path("backup0.db"), "PRAGMA integrity_check"), [("ok",)])
            self.assert_no_database_errors(d)
            # A copy is a working database: a daemon starts on it.
        shutil.copy(self.path("backup3.db"), self.path("restored.db"))
        restored = Daemon(ops_config(self.page).replace("@DB@", self.path("restored.db")),
                          workdir=tempfile.mkdtemp(prefix="somrated-ops-", dir=self.dir))
        with restored as r:
            status, body = r.get_json("/api/v1/history?currency=USD&from=2010-01-01&to=2010-01-02")
            self.assertEqual(status, 200)
            self.assertGreater(len(body["points"]), 100)

    def test_export_import_export_is_exact(self):
        with Daemon(ops_config(self.page), workdir=self.dir) as d:
            with PageWriter(self.page):
                wait_for(lambda: query(d.db, "SELECT count(*) FROM rate_change WHERE currency = "
                                             "'USD'")[0][0] >= 4, what="a few USD changes")
            seed_changes(d.db, count=5_000)
            seed_changes(d.db, source="old-site", currency="EUR", count=3_000)
            first = run("export", "--config", d.config_path)
        self.assertEqual(first.returncode, 0, first.stderr)
        lines = first.stdout.splitlines()
        self.assertEqual(lines[0], HEADER)
        self.assertIn("24kg,USD,2010-01-01T00:00:00.000Z,80.00,2010-01-01T00:00:00.001Z,", lines)
        # NBKR rows carry their effective date; every time has milliseconds.
        self.assertTrue(any(re.fullmatch(r"nbkr,USD,[0-9T:.\-]+Z,80\.9694,[0-9T:.\-]+Z,2022-07-18", l)
                            for l in lines))
        count = len(lines) - 1
        self.assertIn(f"change points exported: {count}", first.stderr)

        csv_path = self.path("all.csv")
        with open(csv_path, "w") as f:
            f.write(first.stdout)
        fresh = self.path("fresh.db")
        r = run("import", "--db", fresh, csv_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"change points: {count} imported, 0 moved earlier, "
                                   "0 already present, 0 rejected\n")
        second = run("export", "--db", fresh)
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(second.stdout.encode(), first.stdout.encode())

        # Idempotent, also through standard input.
        r = run("import", "-", "--db", fresh, stdin=first.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"change points: 0 imported, 0 moved earlier, "
                                   f"{count} already present, 0 rejected\n")
        self.assertEqual(run("export", "--db", fresh).stdout, first.stdout)

        # Filters.
        r = run("export", "--db", fresh, "--source", "old-site", "--currency", "eur",
                "--from", "2010-01-02", "--to", "2010-01-02T00:30:00Z")
        self.assertEqual(r.stdout.splitlines(), [
            HEADER,
            "old-site,EUR,2010-01-02T00:00:00.000Z,81.44,2010-01-02T00:00:00.001Z,",
            "old-site,EUR,2010-01-02T00:10:00.000Z,81.45,2010-01-02T00:10:00.001Z,",
            "old-site,EUR,2010-01-02T00:20:00.000Z,81.46,2010-01-02T00:20:00.001Z,",
            "old-site,EUR,2010-01-02T00:30:00.000Z,81.47,2010-01-02T00:30:00.001Z,",
        ])

        # Conflicting and malformed rows are reported by line and not applied.
        bad = (f"{HEADER}\n"
               "old-site,EUR,2010-01-02T00:00:00.000Z,99.99,,\n"
               "old-site,EUR,2009-12-31,79.00,,\n"
               "old-site,EUR,2009-12-30,79.0x,,\n")
        r = run("import", "--db", fresh, "-", stdin=bad)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "change points: 1 imported, 0 moved earlier, 0 already present, "
                                   "2 rejected\n")
        self.assertIn("stdin:4: column 4: rate: \"79.0x\" is not a rate", r.stderr)
        self.assertIn("stdin:2: old-site EUR at 2010-01-02T00:00:00.000Z: the database has 81.44 "
                      "at that time, the file 99.99; not imported", r.stderr)

    def test_import_of_a_large_csv_in_bounded_memory(self):
        rows = 2_000_000
        csv_path = self.path("big.csv")
        sources = ["24kg", "nbkr", "kicb", "optima"]
        currencies = ["USD", "EUR", "RUB", "KZT", "CNY"]
        per_series = rows // (len(sources) * len(currencies))
        # Ten-minute steps from 2010 on, observed five minutes later, as RFC 3339.
        start = datetime.datetime(2010, 1, 1, tzinfo=datetime.timezone.utc)
        step = datetime.timedelta(minutes=10)
        times = [(start + i * step).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(per_series + 1)]
        observed = [t.replace(":00Z", ":30Z") for t in times]
        with open(csv_path, "w") as f:
            f.write(HEADER + "\n")
            for s in sources:
                for c in currencies:
                    f.writelines(f"{s},{c},{times[i]},{80 + (i % 997) / 100:.2f},{observed[i]},\n"
                                 for i in range(per_series))
        size = os.path.getsize(csv_path)
        self.assertGreater(size, MAX_IMPORT_RSS)
        db = self.path("big.db")

        proc = subprocess.Popen([BINARY, "import", "--db", db, csv_path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        polled = 0
        status_path = f"/proc/{proc.pid}/status"
        while True:
            try:
                with open(status_path) as f:
                    m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
                if m:
                    polled = max(polled, int(m.group(1)) * 1024)
            except OSError:
                pass
            # VmHWM is the high-water mark of the program since exec (ru_maxrss would
            # also count the forked Python before exec); it only grows, so the last
            # reading before the exit is the peak so far.
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(out, f"change points: {rows} imported, 0 moved earlier, 0 already present, "
                              "0 rejected\n")
        self.assertEqual(query(db, "SELECT count(*) FROM rate_change"), [(rows,)])
        self.assertEqual(query(db, "PRAGMA integrity_check"), [("ok",)])
        peak = polled
        self.assertGreater(peak, 0)
        print(f"\nimport of {rows} rows ({size >> 20} MiB of CSV): peak RSS {peak >> 20} MiB",
              file=sys.stderr)
        if sanitized_binary():
            self.skipTest("sanitizer build: its shadow memory makes the RSS bound meaningless")
        self.assertLess(peak, MAX_IMPORT_RSS)

    def test_retention_on_a_running_daemon(self):
        day = 86_400_000
        with Daemon(ops_config(self.page, keep="3s"), workdir=self.dir) as d:
            wait_for(lambda: self.scrape_count(d) >= 2, what="first scrapes")
            seed_changes(d.db, count=1_000)
            # Years-old rows: the first pass to see them deletes them in batches.
            seed_scrape_log(d.db, "24kg", 5_000, now_ms() - 400 * day)
            changes = query(d.db, "SELECT count(*) FROM rate_change")[0][0]

            def old_rows(age_ms):
                return query(d.db, "SELECT count(*) FROM scrape_log WHERE started_at < ?",
                             (now_ms() - age_ms,))[0][0]

            wait_for(lambda: old_rows(day) == 0, timeout=30, what="year-old rows deleted")
            wait_for(lambda: "deleted" in d.log() and "keep_scrape_log = 3s" in d.log(),
                     what="the catch-up logged")
            # Rows keep coming and going: none is much older than 3 s (plus a period).
            wait_for(lambda: self.scrape_count(d) >= 4 and old_rows(6_000) == 0, timeout=30,
                     what="only recent scrape-log rows")
            # Change points are kept; health is intact.
            self.assertEqual(query(d.db, "SELECT count(*) FROM rate_change")[0][0], changes)
            src = d.source("24kg")
            self.assertIsNotNone(src["last_success"])
            self.assertEqual(src["consecutive_failures"], 0)
            self.assert_no_database_errors(d)

    def test_keep_zero_keeps_the_scrape_log(self):
        with Daemon(ops_config(self.page, keep="0"), workdir=self.dir) as d:
            wait_for(lambda: self.scrape_count(d) >= 1, what="first scrape")
            seed_scrape_log(d.db, "24kg", 100, now_ms() - 400 * 86_400_000)
            start = self.scrape_count(d)
            wait_for(lambda: self.scrape_count(d) >= start + 4, what="four more scrapes")
            self.assertEqual(query(d.db, "SELECT count(*) FROM scrape_log WHERE started_at < ?",
                                   (now_ms() - 86_400_000,))[0][0], 100)

    def test_check_config_redacts_and_reloads(self):
        token_file = self.path("token")
        with open(token_file, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        cfg = ops_config(self.page, extra="""
[server]
token = "s3cret-api-token-0123456789"

[[notifier]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook?token=q-secret"
headers = { Authorization = "Bearer h-secret", "X-Trace" = "t-1" }

[[alert]]
name = "usd-high"
currency = "USD"
above = "95"
notify = ["hook"]
""").replace("@DB@", self.path("rates.db"))
        path = self.path("somrated.toml")
        with open(path, "w") as f:
            f.write(cfg)
        r = run("check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        for secret in ("s3cret-api-token", "q-secret", "h-secret"):
            self.assertNotIn(secret, r.stdout)
        self.assertIn('# token = "REDACTED"', r.stdout)
        self.assertIn('"Authorization" = "REDACTED"', r.stdout)
        self.assertIn('"X-Trace" = "t-1"', r.stdout)
        self.assertIn('keep_scrape_log = "90d"', r.stdout)
        self.assertIn(f'path = "{self.path("rates.db")}"', r.stdout)

        # The same through --config, with --db applied.
        via = run("--db", self.path("other.db"), "check-config", "--config", path)
        self.assertEqual(via.returncode, 0, via.stderr)
        self.assertEqual(via.stdout, r.stdout.replace(self.path("rates.db"), self.path("other.db")))

        # The output is a config: it checks again, and a daemon runs on it.
        shown = self.path("shown.toml")
        with open(shown, "w") as f:
            f.write(r.stdout)
        again = run("check-config", shown)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout, r.stdout.replace(
            '# token = "REDACTED"  (set in the file but not shown; without it API writes are '
            'disabled)', 'token = ""'))
        with open(shown) as f:
            text = f.read()
        with Daemon(text.replace(self.path("rates.db"), "@DB@"),
                    workdir=tempfile.mkdtemp(prefix="somrated-ops-", dir=self.dir)) as d:
            status, body = d.get_json("/api/v1/alerts")
            self.assertEqual(status, 200, body)
            self.assertIn("usd-high", str(body))

        # A token file is named, never read out.
        with open(path, "w") as f:
            f.write(cfg.replace('token = "s3cret-api-token-0123456789"',
                                f'token_file = "{token_file}"'))
        r = run("check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f'token_file = "{token_file}"', r.stdout)
        self.assertNotIn("0123456789abcdef0123456789abcdef", r.stdout)

        # A broken config: exit 2, the file, line and key.
        with open(path, "w") as f:
            f.write(cfg.replace('keep_scrape_log = "90d"', 'keep_scrape_log = "90 days"'))
        r = run("check-config", path)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertRegex(r.stderr, rf"^somrated: {re.escape(path)}:\d+: storage.keep_scrape_log: "
                                   r"\"90 days\" is not a duration")

    def test_vacuum(self):
        with Daemon(ops_config(self.page, keep="0"), workdir=self.dir) as d:
            wait_for(lambda: self.scrape_count(d) >= 1, what="first scrape")
            seed_scrape_log(d.db, "24kg", 50_000, now_ms() - 400 * 86_400_000)
            with sqlite3.connect(d.db, timeout=30) as db:
                db.execute("DELETE FROM scrape_log WHERE started_at < ?", (now_ms() - 86_400_000,))
            before = run("export", "--db", d.db).stdout
            size_before = os.path.getsize(d.db) + os.path.getsize(d.db + "-wal")

            # The daemon runs on: its writes are short, so VACUUM gets its turn.
            r = run("vacuum", "--config", d.config_path)
            self.assertEqual(r.returncode, 0, r.stderr)
            m = re.fullmatch(r"vacuumed .*: (\d+) bytes before, (\d+) after; (.*)\n", r.stdout)
            self.assertIsNotNone(m, r.stdout)
            self.assertLess(int(m.group(2)), size_before)
            self.assertLess(int(m.group(2)), int(m.group(1)))
            self.assertEqual(query(d.db, "PRAGMA integrity_check"), [("ok",)])
            self.assertEqual(run("export", "--db", d.db).stdout, before)
            start = self.scrape_count(d)
            wait_for(lambda: self.scrape_count(d) > start, what="a scrape after VACUUM")
            self.assert_no_database_errors(d)

        # A connection holding the write lock too long: vacuum gives up politely.
        holder = sqlite3.connect(d.db, timeout=30, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            r = run("vacuum", "--db", d.db, timeout=60)
            self.assertEqual(r.returncode, 1)
            self.assertIn("the database stayed locked by another connection (the running "
                          "daemon?) for more than 10000 ms; nothing was changed", r.stderr)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        self.assertEqual(query(d.db, "PRAGMA integrity_check"), [("ok",)])

        r = run("vacuum", "--db", self.path("missing.db"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no database at", r.stderr)
        self.assertFalse(os.path.exists(self.path("missing.db")))


if __name__ == "__main__":
    unittest.main()
