"""End to end: the real somrated against local fixture HTTP and HTTPS servers."""

import html
import os
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from daemon import BINARY, TEST_DATA, Daemon, wait_for  # noqa: E402
from fixture import FixtureServer, make_ca  # noqa: E402

SEED = os.path.join(TEST_DATA, "24kg", "24kg-english-2025-06-10.txt")
NBKR = os.path.join(TEST_DATA, "nbkr", "daily_2022-07-18_usbtypec1-nbkr-fx-rates-bot.xml")


def seed_page(usd="87.45", eur="99.56", rub="1.10"):
    """The seed text as an HTML page, with the strip values replaced."""
    with open(SEED, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if line.startswith("USD "):
            line = f"USD {usd}"
        elif line.startswith("EUR "):
            line = f"EUR {eur}"
        elif line.startswith("RUB "):
            line = f"RUB {rub}"
        out.append(f"<div>{html.escape(line)}</div>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>24.kg</title></head><body>"
            + "\n".join(out) + "</body></html>").encode("utf-8")


def config(url_24kg, interval="1s", ca_file="", timeout="2s", nbkr=True, max_body="1MiB"):
    text = f"""
[storage]
path = "@DB@"

[log]
level = "debug"

[[source]]
name = "24kg"
kind = "24kg"
url = "{url_24kg}"
interval = "{interval}"
timeout = "{timeout}"
max_body = "{max_body}"
"""
    if ca_file:
        text += f'ca_file = "{ca_file}"\n'
    if nbkr:
        text += f"""
[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{os.path.abspath(NBKR)}"
interval = "1h"
"""
    return text


def latest_rates(d, source="24kg"):
    status, body = d.get_json(f"/api/v1/latest?source={source}")
    if status != 200:
        return None
    return {k: v["rate"] for k, v in body["rates"].items()}


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tls_dir = tempfile.mkdtemp(prefix="somrated-ca-")
        cls.ca = make_ca(cls.tls_dir)
        cls.fixture = FixtureServer(tls_dir=cls.tls_dir)
        cls.fixture.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.fixture.__exit__(None, None, None)

    def setUp(self):
        self.path = f"/english/{self.id().rsplit('.', 1)[-1]}/"
        self.fixture.set_page(self.path, seed_page())
        self.fixture.set_mode(self.path, "ok")

    def wait_first_scrape(self, d):
        return wait_for(lambda: latest_rates(d) == {"USD": 87.45, "EUR": 99.56, "RUB": 1.10},
                        what="first scrape to show 87.45 / 99.56 / 1.10")

    def test_http_scrape_latest_and_history(self):
        with Daemon(config(self.fixture.url(self.path))) as d:
            self.wait_first_scrape(d)
            r = d.get("/api/v1/latest")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["Content-Type"], "application/json; charset=utf-8")
            # Exactly as published: 1.10 stays 1.10 in the bytes, not 1.1.
            self.assertIn('"rate":87.45', r.text.replace(" ", ""))
            self.assertIn('"rate":1.10', r.text.replace(" ", ""))
            body = r.json()
            self.assertEqual(body["base"], "KGS")
            self.assertEqual(body["source"], "24kg")
            self.assertFalse(body["stale"])
            self.assertTrue(body["rates"]["USD"]["since"].endswith("Z"))

            # The page changes: history gets a new change point.
            self.fixture.set_page(self.path, seed_page(usd="87.50"))
            wait_for(lambda: latest_rates(d)["USD"] == 87.50, what="new USD value")
            status, hist = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
            self.assertEqual(status, 200)
            rates = [p["rate"] for p in hist["points"]]
            self.assertEqual(rates, [87.45, 87.50])
            csv = d.get("/api/v1/history?currency=usd&from=2020-01-01&format=csv")
            lines = csv.text.strip().split("\n")
            self.assertEqual(lines[0], "time,currency,source,rate")
            self.assertTrue(lines[1].endswith(",USD,24kg,87.45"))
            self.assertTrue(lines[2].endswith(",USD,24kg,87.50"))

            # The NBKR file source keeps every currency, with its effective date.
            status, nb = d.get_json("/api/v1/latest?source=nbkr")
            self.assertEqual(status, 200)
            self.assertEqual(set(nb["rates"]), {"USD", "EUR", "KZT", "RUB"})
            self.assertEqual(nb["rates"]["USD"]["effective_date"], "2022-07-18")
            self.assertIn('"rate":80.9694', d.get("/api/v1/latest?source=nbkr").text.replace(" ", ""))

            # The conditional request: the fixture saw If-None-Match after the first 200.
            wait_for(lambda: any("If-None-Match" in e["headers"] for e in self.fixture.log(self.path)),
                     what="a conditional request")
            ua = self.fixture.log(self.path)[0]["headers"].get("User-Agent", "")
            self.assertTrue(ua.startswith("somrated/"), ua)
            self.assertEqual(d.stop(), 0)

    def test_https_with_own_ca(self):
        with Daemon(config(self.fixture.url(self.path, tls=True), ca_file=self.ca)) as d:
            self.wait_first_scrape(d)
            self.assertEqual(d.source("24kg")["consecutive_failures"], 0)

    def test_https_unknown_ca_is_refused(self):
        with Daemon(config(self.fixture.url(self.path, tls=True), nbkr=False)) as d:
            src = wait_for(lambda: (s := d.source("24kg"))["last_error"] and s, what="a TLS error")
            self.assertIn("certificate", src["last_error"]["message"].lower())
            self.assertEqual(latest_rates(d), {})

    def test_faults_leave_stored_data_untouched(self):
        cases = [
            ("500", "HTTP 500"),
            ("hang", "timed out"),
            ("huge", "exceeds"),
            ("redirect_loop", "redirect"),
            ("layout", "strip"),
        ]
        with Daemon(config(self.fixture.url(self.path), timeout="1s", nbkr=False)) as d:
            self.wait_first_scrape(d)
            _, before = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
            for mode, expected in cases:
                with self.subTest(mode=mode):
                    if mode == "layout":
                        page = b"<html><body><nav><p>Dollar: 87.45</p></nav><p>news</p></body></html>"
                        self.fixture.set_page(self.path, page)
                        self.fixture.set_mode(self.path, "ok")
                    else:
                        self.fixture.set_mode(self.path, mode)
                    src = wait_for(
                        lambda: (s := d.source("24kg"))["consecutive_failures"] > 0
                        and expected.lower() in s["last_error"]["message"].lower() and s,
                        timeout=30, what=f"error for {mode}")
                    self.assertIsNotNone(src["last_error"]["at"])
                    self.assertEqual(latest_rates(d), {"USD": 87.45, "EUR": 99.56, "RUB": 1.10})
                    _, after = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
                    self.assertEqual(after["points"], before["points"])
                    self.assertEqual(d.get("/healthz").status, 200)
                    # Heal the server: the daemon recovers on its own.
                    self.fixture.set_page(self.path, seed_page())
                    self.fixture.set_mode(self.path, "ok")
                    wait_for(lambda: d.source("24kg")["consecutive_failures"] == 0, timeout=30,
                             what=f"recovery after {mode}")

    def held(self, d):
        return {h["currency"]: h for h in d.source("24kg")["held"]}

    def usd_history(self, d):
        status, hist = d.get_json("/api/v1/history?currency=USD&from=2020-01-01")
        self.assertEqual(status, 200)
        return [(p["time"], p["rate"]) for p in hist["points"]]

    def test_implausible_jump_is_held_until_the_next_scrape_confirms_it(self):
        # max_jump defaults to 0.25: 87.45 -> 120.00 is a 37 % jump. The checks between
        # two scrapes need the interval to outlast a slow poll (a sanitizer build, a busy
        # machine): 5 s rather than 2.
        with Daemon(config(self.fixture.url(self.path), interval="5s", nbkr=False)) as d:
            self.wait_first_scrape(d)
            self.fixture.set_page(self.path, seed_page(usd="120.00"))
            held = wait_for(lambda: self.held(d).get("USD"), what="USD 120.00 to be held")
            # Right after the scrape that saw it, before the next one (5 s later).
            self.assertEqual(latest_rates(d), {"USD": 87.45, "EUR": 99.56, "RUB": 1.10})
            self.assertEqual(held["rate"], 120.00)
            self.assertRegex(d.get("/api/v1/sources").text.replace(" ", ""),
                             r'"held":\[\{"currency":"USD","rate":120\.00,')
            self.assertEqual(set(self.held(d)), {"USD"})  # EUR and RUB did not move
            self.assertEqual([r for _, r in self.usd_history(d)], [87.45])
            self.assertIn("implausible jump held", d.log())

            # The next scrape sees 120.00 again (a 304 with the same page): released, and
            # dated from when it was first seen.
            wait_for(lambda: latest_rates(d)["USD"] == 120.00, timeout=30,
                     what="USD 120.00 to be released")
            self.assertEqual(self.held(d), {})
            self.assertIn('"rate":120.00', d.get("/api/v1/latest").text.replace(" ", ""))
            hist = self.usd_history(d)
            self.assertEqual([r for _, r in hist], [87.45, 120.00])
            self.assertEqual(hist[1][0], held["since"])
            self.assertEqual(d.get_json("/api/v1/latest")[1]["rates"]["USD"]["since"], held["since"])

    def test_unconfirmed_jump_never_becomes_latest(self):
        # The page must go back before the next scrape: 5 s leaves room for a slow poll.
        with Daemon(config(self.fixture.url(self.path), interval="5s", nbkr=False)) as d:
            self.wait_first_scrape(d)
            self.fixture.set_page(self.path, seed_page(usd="120.00"))
            wait_for(lambda: self.held(d).get("USD"), what="USD 120.00 to be held")
            self.fixture.set_page(self.path, seed_page())  # back to 87.45 before the next scrape
            fetches_of_jump = len(self.fixture.log(self.path))
            self.assertEqual(latest_rates(d)["USD"], 87.45)

            # The next scrape sees 87.45 again: the hold is dropped, nothing is stored.
            wait_for(lambda: len(self.fixture.log(self.path)) > fetches_of_jump and not self.held(d),
                     timeout=30, what="the next scrape to drop the hold")
            self.assertEqual(latest_rates(d), {"USD": 87.45, "EUR": 99.56, "RUB": 1.10})
            hist = self.usd_history(d)
            self.assertNotIn(120.00, [r for _, r in hist])
            self.assertEqual([r for _, r in hist], [87.45])
            csv = d.get("/api/v1/history?currency=USD&from=2020-01-01&format=csv").text
            self.assertNotIn("120.00", csv)

    def test_bad_requests_get_clear_errors(self):
        with Daemon(config(self.fixture.url(self.path), nbkr=False)) as d:
            self.wait_first_scrape(d)
            cases = {
                "/api/v1/history?currency=XYZ": (404, "unknown_currency"),
                "/api/v1/history?currency=USD&from=2025-02-01&to=2025-01-01": (400, "invalid_range"),
                "/api/v1/history?currency=USD&from=yesterday": (400, "from"),
                "/api/v1/history?currency=USD&from=2000-01-01&step=1s": (400, "too_many_points"),
                "/api/v1/history?from=2020-01-01": (400, "currency"),
                "/api/v1/latest?source=nope": (404, "unknown_source"),
                "/nope": (404, "not_found"),
            }
            for path, (status, needle) in cases.items():
                with self.subTest(path=path):
                    r = d.get(path)
                    self.assertEqual(r.status, status, r.text)
                    self.assertIn(needle, r.text)
                    self.assertIn("message", r.json()["error"])
            r = d.request("/api/v1/latest", method="POST")
            self.assertEqual(r.status, 405)
            many = "&".join(f"p{i}=1" for i in range(10000))
            r = d.get("/api/v1/latest?" + many)
            self.assertIn(r.status, (400, 414, 431))
            r = d.get("/api/v1/latest", headers={"X-Big": "a" * 100000})
            self.assertEqual(r.status, 431)
            head = d.request("/api/v1/latest", method="HEAD")
            self.assertEqual(head.status, 200)
            self.assertEqual(head.body, b"")
            # Raw garbage on a socket gets a 400, and the daemon keeps serving.
            with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
                s.sendall(b"\x00\x01garbage\r\n\r\n")
                self.assertIn(b"400", s.recv(4096))
            self.assertEqual(latest_rates(d)["USD"], 87.45)
            self.assertEqual(d.get("/readyz").status, 200)


class CommandLine(unittest.TestCase):
    def run_cli(self, *args, timeout=30):
        return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=timeout)

    def test_help_and_version(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--config", r.stdout)
        r = self.run_cli("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^somrated \d+\.\d+\.\d+")

    def test_scrape_once_prints_and_stores_nothing(self):
        work = tempfile.mkdtemp(prefix="somrated-cli-")
        db = os.path.join(work, "rates.db")
        page = os.path.join(work, "page.html")
        with open(page, "wb") as f:
            f.write(seed_page())
        cfg = os.path.join(work, "c.toml")
        with open(cfg, "w") as f:
            f.write(config("file://" + page).replace("@DB@", db))
        r = self.run_cli("scrape", "--once", "--config", cfg)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("USD 87.45", r.stdout)
        self.assertIn("RUB 1.10", r.stdout)
        self.assertIn("KZT 0.1686", r.stdout)
        self.assertFalse(os.path.exists(db))
        r = self.run_cli("--config", cfg, "scrape", "--once", "--source", "nbkr")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("USD 87.45", r.stdout)
        with open(page, "wb") as f:
            f.write(b"<html><body>no rates today</body></html>")
        r = self.run_cli("scrape", "--once", "--source", "24kg", "--config", cfg)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("strip", r.stdout + r.stderr)

    def test_bad_config_names_key_and_line(self):
        work = tempfile.mkdtemp(prefix="somrated-cli-")
        cfg = os.path.join(work, "bad.toml")
        with open(cfg, "w") as f:
            f.write('[server]\nlisten = "127.0.0.1:0"\n\n[[source]]\nkind = "24kg"\nintervall = "10m"\n')
        r = self.run_cli("--config", cfg)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("intervall", r.stderr)
        self.assertIn("interval", r.stderr)
        self.assertIn(":6", r.stderr)

    def test_unopenable_database_fails_startup(self):
        # Local sources only: should the database open after all, the daemon must not
        # reach for the real 24.kg and nbkr.kg.
        work = tempfile.mkdtemp(prefix="somrated-cli-")
        page = os.path.join(work, "page.html")
        with open(page, "wb") as f:
            f.write(seed_page())
        cfg = os.path.join(work, "c.toml")
        with open(cfg, "w") as f:
            f.write(config("file://" + page, interval="1h").replace("@DB@", os.path.join(work, "r.db")))
        r = self.run_cli("--config", cfg, "--db", "/proc/nonexistent/x.db", "--listen", "127.0.0.1:0",
                         timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("database", r.stderr)
        self.assertIn("/proc/nonexistent/x.db", r.stderr)
        self.assertNotIn("listening on", r.stderr)


if __name__ == "__main__":
    unittest.main()
