"""The daemon's life cycle: shutdown with work in flight, signals, restarts, logging, and
/healthz while the database readers are busy. Every daemon here reads local sources only
(file:// or the fixture server on 127.0.0.1)."""

import datetime
import json
import os
import re
import select
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from daemon import Daemon, wait_for  # noqa: E402
from fixture import FixtureServer  # noqa: E402
from test_daemon import config, latest_rates, seed_page  # noqa: E402

SEED_RATES = {"USD": 87.45, "EUR": 99.56, "RUB": 1.10}


def seed_history(db_path, days=2000, source="24kg", currency="USD"):
    """Writes one USD change point per hour for `days` days before the first one the
    daemon stored, straight into its SQLite file (schema of sql/001_init.sql), so that
    history queries have real work to do. Safe while the daemon runs (WAL, and the
    daemon only writes when it scrapes). Returns the number of rows written."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        (source_id,) = db.execute("SELECT id FROM source WHERE name = ?", (source,)).fetchone()
        (first,) = db.execute("SELECT min(since) FROM rate_change WHERE source_id = ? AND currency = ?",
                              (source_id, currency)).fetchone()
        hour = 3600 * 1000
        start = first - days * 24 * hour
        rows = []
        for i, since in enumerate(range(start, first - 24 * hour, hour)):
            rate = f"{80 + (i % 700) / 100:.2f}"
            rows.append((source_id, currency, since, rate, float(rate), since))
        with db:
            db.executemany("INSERT INTO rate_change (source_id, currency, since, rate, rate_num, "
                           "observed_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)
    finally:
        db.close()


def days_ago(days):
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return then.strftime("%Y-%m-%d")


def raw_exchange(sock, timeout=20):
    """Reads everything the daemon sends on sock until it closes. Returns the bytes; a
    reset counts as the end of what was sent."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        if not chunk:
            return data
        data += chunk


def read_response(sock, timeout=20):
    """Reads exactly one response with Content-Length from a keep-alive connection."""
    sock.settimeout(timeout)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if m and len(body) >= int(m.group(1)):
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def parse_response(data):
    """(status, headers, body) of one complete HTTP/1.1 response with Content-Length;
    raises AssertionError when data is a truncated or malformed response."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"truncated response head: {data[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) .*", lines[0])
    if not m:
        raise AssertionError(f"bad status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    if len(body) != length:
        raise AssertionError(f"truncated body: {len(body)} of {length} bytes (status {m.group(1)})")
    return int(m.group(1)), headers, body


class Lifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fixture = FixtureServer()
        cls.fixture.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.fixture.__exit__(None, None, None)

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="somrated-life-")
        self.page = os.path.join(self.work, "page.html")
        with open(self.page, "wb") as f:
            f.write(seed_page())
        self.path = f"/english/{self.id().rsplit('.', 1)[-1]}/"
        self.fixture.set_page(self.path, seed_page())
        self.fixture.set_mode(self.path, "ok")

    def file_config(self, interval="1h"):
        return config("file://" + self.page, interval=interval, nbkr=False)

    def wait_first_scrape(self, d):
        return wait_for(lambda: latest_rates(d) == SEED_RATES,
                        what="first scrape to show the seed rates")

    def assert_shutdown_logged(self, d):
        log = d.log()
        down = log.find("SIGTERM received: shutting down")
        self.assertNotEqual(down, -1, log)
        self.assertNotEqual(log.find("stopped", down), -1, log)
        self.assertTrue(log.rstrip().endswith("stopped"), log[-2000:])

    # -- shutdown ---------------------------------------------------------------------

    def test_sigterm_lets_requests_in_flight_finish(self):
        with Daemon(self.file_config()) as d:
            self.wait_first_scrape(d)
            self.assertGreater(seed_history(d.db), 40000)
            # About 4 000 twelve-hour OHLC buckets: tens of milliseconds each in a debug
            # build, so the readers still have a queue when the first answer is out.
            target = f"/api/v1/history?currency=USD&from={days_ago(1990)}&step=12h&agg=ohlc"
            request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\n\r\n").encode()
            reference = d.get(target, timeout=30)
            self.assertEqual(reference.status, 200, reference.text[:300])
            expected_points = len(reference.json()["points"])
            self.assertGreater(expected_points, 3900)

            # Every request is on the wire before the signal; the readers work through
            # them two at a time.
            socks = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(24)]
            try:
                for s in socks:
                    s.sendall(request)
                # Signal as soon as the first answer arrives: the rest are still queued.
                wait_for(lambda: any(self._readable(s) for s in socks), timeout=30,
                         interval=0.005, what="the first response")
                answered_before = [self._readable(s) for s in socks]
                t0 = time.monotonic()
                d.send_signal(signal.SIGTERM)
                outcomes = [raw_exchange(s) for s in socks]
            finally:
                for s in socks:
                    s.close()
            code = d.stop(timeout=10)
            elapsed = time.monotonic() - t0
            self.assertEqual(code, 0)
            self.assertLess(elapsed, 10)

            complete_after_signal = 0
            for i, data in enumerate(outcomes):
                with self.subTest(request=i):
                    if not data:
                        continue  # closed before answering: allowed, nothing is truncated
                    status, headers, body = parse_response(data)
                    self.assertIn(status, (200, 503), body[:300])
                    if status == 200:
                        self.assertGreaterEqual(len(json.loads(body)["points"]), expected_points - 1)
                        if not answered_before[i]:
                            complete_after_signal += 1
            self.assertGreater(complete_after_signal, 0,
                               "no request in flight at SIGTERM got its response")
            self.assert_shutdown_logged(d)

    @staticmethod
    def _readable(sock):
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    def test_sigterm_closes_idle_connections_at_once_and_stalled_ones_after_the_grace(self):
        with Daemon(self.file_config()) as d:
            self.wait_first_scrape(d)
            idle = socket.create_connection(("127.0.0.1", d.port), timeout=20)
            stalled = socket.create_connection(("127.0.0.1", d.port), timeout=20)
            try:
                idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                status, _, body = parse_response(read_response(idle))
                self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
                # Half a request: the daemon is reading it when the signal comes.
                stalled.sendall(b"GET /api/v1/latest HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                wait_for(lambda: d.get("/healthz").status == 200,
                         what="the daemon to read the half request")
                t0 = time.monotonic()
                d.send_signal(signal.SIGTERM)
                # The idle keep-alive connection has nothing to finish: closed at once.
                self.assertEqual(raw_exchange(idle), b"")
                idle_closed = time.monotonic() - t0
                # The stalled one is given the grace period (5 s), then closed unanswered.
                self.assertEqual(raw_exchange(stalled), b"")
                stalled_closed = time.monotonic() - t0
            finally:
                idle.close()
                stalled.close()
            self.assertEqual(d.stop(timeout=10), 0)
            self.assertLess(idle_closed, 3.0)
            self.assertLess(stalled_closed, 10.0)
            self.assertLess(time.monotonic() - t0, 10.0)
            self.assertIn("closing 1 connection(s) still open after the grace period", d.log())
            self.assert_shutdown_logged(d)

    def test_sigterm_while_a_scrape_hangs(self):
        self.fixture.set_mode(self.path, "hang")
        cfg = config(self.fixture.url(self.path), interval="1h", timeout="20s", nbkr=False)
        with Daemon(cfg) as d:
            wait_for(lambda: self.fixture.log(self.path),
                     what="the daemon's request to the hanging page")
            self.assertEqual(d.get("/healthz").status, 200)
            t0 = time.monotonic()
            code = d.stop(timeout=10)
            self.assertEqual(code, 0)
            self.assertLess(time.monotonic() - t0, 10)
            self.assert_shutdown_logged(d)
            self.assertNotIn("scrape ok", d.log())

    # -- signals ----------------------------------------------------------------------

    def test_sighup_reloads_the_config_and_keeps_serving(self):
        with Daemon(self.file_config()) as d:
            self.wait_first_scrape(d)
            needle = "configuration reloaded: no changes"
            for n in (1, 2):  # the handler re-arms after each signal
                d.send_signal(signal.SIGHUP)
                wait_for(lambda: d.log().count(needle) == n, what=f"reload number {n} to be logged")
                self.assertIsNone(d.proc.poll(), "the daemon exited on SIGHUP")
                r = d.get("/healthz")
                self.assertEqual((r.status, r.json()), (200, {"status": "ok"}))
                self.assertEqual(latest_rates(d), SEED_RATES)
            self.assertRegex(d.log(), r"notice: SIGHUP received: reloading the configuration from "
                                      r".*somrated\.toml")
            self.assertNotIn("shutting down", d.log())
            # SIGINT stops it like SIGTERM.
            self.assertEqual(d.stop(sig=signal.SIGINT), 0)
            self.assertRegex(d.log(),
                             r"notice: SIGINT received: shutting down\n(.*\n)*.* notice: stopped\n$")

    # -- the API while the readers are busy ---------------------------------------------

    def test_healthz_answers_while_readers_are_busy(self):
        with Daemon(self.file_config()) as d:
            self.wait_first_scrape(d)
            seed_history(d.db)
            # About 7 900 six-hour OHLC buckets, each a handful of index seeks: accepted
            # (under 10 000 points), and slow enough to keep both readers busy.
            target = f"/api/v1/history?currency=USD&from={days_ago(1980)}&step=6h&agg=ohlc"
            first = d.get(target, timeout=30)
            self.assertEqual(first.status, 200, first.text[:300])
            self.assertGreater(len(first.json()["points"]), 7000)

            results = []
            lock = threading.Lock()
            done = threading.Event()

            def load():
                try:
                    r = d.get(target, timeout=60)
                    item = (r.status, r.body)
                except Exception as e:  # noqa: BLE001 - reported below
                    item = ("exception", repr(e))
                with lock:
                    results.append(item)
                    if len(results) == 40:
                        done.set()

            threads = [threading.Thread(target=load) for _ in range(40)]
            for t in threads:
                t.start()
            health = []
            while not done.is_set() and len(health) < 20:
                t0 = time.monotonic()
                r = d.get("/healthz", timeout=10)
                elapsed = time.monotonic() - t0
                with lock:
                    outstanding = 40 - len(results)
                health.append((r.status, elapsed, outstanding))
                time.sleep(0.1)
            for t in threads:
                t.join(120)

            self.assertTrue(any(out > 0 for _, _, out in health),
                            f"the history load finished before /healthz was asked: {health}")
            for status, elapsed, outstanding in health:
                self.assertEqual(status, 200)
                if outstanding > 0:
                    self.assertLess(elapsed, 3.0, f"/healthz took {elapsed:.2f}s with "
                                                  f"{outstanding} history requests outstanding")
            self.assertEqual(len(results), 40)
            for status, body in results:
                self.assertIn(status, (200, 503), body[:300] if isinstance(body, bytes) else body)
                if status == 503:
                    self.assertEqual(json.loads(body)["error"]["code"], "busy")
                else:
                    self.assertGreater(len(json.loads(body)["points"]), 7000)

    # -- restart ----------------------------------------------------------------------

    def test_restart_keeps_stored_data(self):
        cfg = config(self.fixture.url(self.path), interval="1s", nbkr=False)
        with Daemon(cfg) as first:
            self.wait_first_scrape(first)
            self.fixture.set_page(self.path, seed_page(usd="87.50"))
            wait_for(lambda: latest_rates(first)["USD"] == 87.50, what="USD 87.50")
            _, latest_before = first.get_json("/api/v1/latest")
            _, history_before = first.get_json("/api/v1/history?currency=USD&from=2020-01-01")
            self.assertEqual(first.stop(), 0)

        self.fixture.set_mode(self.path, "500")
        self.fixture.clear_log(self.path)
        with Daemon(cfg, workdir=first.dir) as second:
            self.assertEqual(second.db, first.db)
            wait_for(lambda: second.source("24kg")["consecutive_failures"] >= 1, timeout=30,
                     what="the restarted daemon's first (failing) scrape")
            self.assertTrue(self.fixture.log(self.path))
            self.assertIn("HTTP 500", second.source("24kg")["last_error"]["message"])
            status, latest_after = second.get_json("/api/v1/latest")
            self.assertEqual(status, 200)
            self.assertEqual(latest_after["rates"], latest_before["rates"])
            self.assertEqual(latest_rates(second), {"USD": 87.50, "EUR": 99.56, "RUB": 1.10})
            _, history_after = second.get_json("/api/v1/history?currency=USD&from=2020-01-01")
            self.assertEqual(history_after["points"], history_before["points"])
            self.assertEqual([p["rate"] for p in history_after["points"]], [87.45, 87.50])

    def test_restart_after_sigkill_keeps_stored_data(self):
        cfg = config(self.fixture.url(self.path), interval="1s", nbkr=False)
        d = Daemon(cfg)
        self.addCleanup(d.stop)
        d.start()
        self.wait_first_scrape(d)
        self.fixture.set_page(self.path, seed_page(usd="87.50"))
        wait_for(lambda: latest_rates(d)["USD"] == 87.50, what="USD 87.50")
        _, history_before = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
        self.assertEqual(d.kill(), -signal.SIGKILL)

        # The same object starts again on the same directory and database.
        d.start()
        self.assertEqual(latest_rates(d), {"USD": 87.50, "EUR": 99.56, "RUB": 1.10})
        _, history_after = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
        self.assertEqual(history_after["points"], history_before["points"])
        self.assertEqual(d.stop(), 0)

    # -- logging ----------------------------------------------------------------------

    def test_log_level_warning_keeps_only_warnings(self):
        self.fixture.set_mode(self.path, "500")
        cfg = self.file_config(interval="1s") + f"""
[[source]]
name = "broken"
kind = "24kg"
url = "{self.fixture.url(self.path)}"
interval = "1s"
timeout = "2s"
"""
        with Daemon(cfg, extra_args=["--log-level", "warning"]) as d:
            self.wait_first_scrape(d)
            wait_for(lambda: d.source("broken")["consecutive_failures"] >= 1, timeout=30,
                     what="the broken source to fail")
            # Another successful 24kg scrape, each of which would log "scrape ok".
            attempt = d.source("24kg")["last_attempt"]
            wait_for(lambda: (s := d.source("24kg"))["last_attempt"] != attempt and s["last_success"],
                     timeout=30, what="another 24kg scrape")
            wait_for(lambda: "broken: scrape failed: HTTP 500" in d.log(), what="the warning")
            self.assertEqual(d.stop(), 0)
            log = d.log()
            self.assertNotIn("scrape ok", log)
            self.assertNotIn("listening on", log)  # notice
            self.assertNotIn("retrying in", log)  # info
            for line in log.splitlines():
                self.assertRegex(line, r"^\S+Z (warning|error): ")

    def test_journal_stream_gets_priority_prefixes(self):
        with Daemon(self.file_config(), journal=True) as d:
            self.wait_first_scrape(d)
            wait_for(lambda: "scrape ok" in d.log(), what="scrape ok")
            self.assertEqual(d.stop(), 0)
            log = d.log()
            lines = log.splitlines()
            self.assertTrue(lines)
            for line in lines:
                self.assertRegex(line, r"^<[0-7]>\S")
                # No timestamp and no level word: the journal adds both.
                self.assertNotRegex(line, r"^<\d>(\d{4}-\d\d-\d\dT|(debug|info|notice|warning|error): )")
            self.assertRegex(log, r"(?m)^<5>somrated \S+ listening on http://127\.0\.0\.1:\d+")
            self.assertRegex(log, r"(?m)^<6>24kg: scrape ok")
            self.assertRegex(log, r"(?m)^<7>24kg: fetching file://")
            self.assertRegex(log, r"(?m)^<5>SIGTERM received: shutting down$")
            self.assertRegex(log, r"(?m)^<5>stopped$")

    def test_journal_stream_naming_another_file_keeps_timestamps(self):
        other = os.stat(self.page)
        env = {"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"}
        with Daemon(self.file_config(), env=env) as d:
            self.wait_first_scrape(d)
            self.assertEqual(d.stop(), 0)
            for line in d.log().splitlines():
                self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                                       r"(debug|info|notice|warning|error): ")


if __name__ == "__main__":
    unittest.main()
