"""A full disk, simulated with [storage] max_size (SQLite's max_page_count on the daemon's
writing connection): writes fail whole with a clear error in /api/v1/sources, the log and
the API write's 507 answer; reads keep answering from what is stored; nothing is
half-written; the daemon neither dies nor retries in a hot loop; and raising the limit
with a SIGHUP lets writes resume.
"""

import os
import re
import signal
import sqlite3
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import TOKEN, FixtureCase, auth, toml_table, webhook  # noqa: E402
from daemon import Daemon, wait_for  # noqa: E402
from test_daemon import seed_page  # noqa: E402

RULE = "usd-above-90"
CURRENCIES = ("USD", "EUR", "RUB")
FULL = "database or disk is full"
EXTRA_SOURCES = 7


def full_config(source_url, hook_url, max_size):
    """Source 24kg scraped every second with the plausibility hold off, and more sources
    reading the same page so that the database fills in seconds rather than minutes; a
    webhook, a rule that fires above 90, and [storage] max_size."""
    text = toml_table("[storage]", {"path": "@DB@", "max_size": max_size})
    text += toml_table("[server]", {"token": TOKEN})
    text += toml_table("[log]", {"level": "info"})
    text += toml_table("[alerting]", {"evaluate_every": "1s"})
    for name in ("24kg", *(f"copy-{n}" for n in range(EXTRA_SOURCES))):
        text += toml_table("[[source]]", {"name": name, "kind": "24kg", "url": source_url,
                                          "interval": "1s", "timeout": "2s", "max_jump": 0.0})
    text += toml_table("[[notifier]]", webhook("hook", hook_url))
    text += toml_table("[[alert]]", {"name": RULE, "currency": "USD", "above": 90,
                                     "notify": ["hook"]})
    return text


def connect_ro(path):
    return sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=10)


def database_bytes(path):
    """Pages in use times the page size, as the daemon's limit counts them."""
    con = connect_ro(path)
    try:
        return con.execute("PRAGMA page_count").fetchone()[0] * \
            con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()


def kib(n_bytes):
    """A whole number of KiB as max_size takes it (pages are 4 KiB, so always exact)."""
    assert n_bytes % 1024 == 0, n_bytes
    return f"{n_bytes // 1024}KiB"


class Publisher(threading.Thread):
    """Publishes new values of all three rates every 300 ms (USD above 90), so that every
    scrape has new change points to store."""

    def __init__(self, fixture, path):
        super().__init__(daemon=True, name="publisher")
        self.fixture, self.path = fixture, path
        self.stop_event = threading.Event()
        self.published = []  # (usd, eur, rub), oldest first
        self.lock = threading.Lock()

    def run(self):
        n = 0
        while not self.stop_event.wait(0.3):
            n += 1
            values = (f"{91 + n / 100:.2f}", f"{95 + n / 100:.2f}", f"{1 + n / 1000:.3f}")
            with self.lock:
                self.published.append(values)
            self.fixture.set_page(self.path, seed_page(*values))

    def stop(self):
        self.stop_event.set()
        self.join(10)


class DiskFull(FixtureCase):
    def daemon_config(self, max_size):
        return full_config(self.source_url(), self.hook.url("/hook"), max_size)

    def rewrite_config(self, d, max_size):
        with open(d.config_path, "w") as f:
            f.write(self.daemon_config(max_size).replace("@DB@", d.db))

    def reload(self, d, max_size):
        """Writes max_size into the config and SIGHUPs; returns once it is applied."""
        before = d.log().count("configuration reloaded")
        self.rewrite_config(d, max_size)
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: d.log().count("configuration reloaded") > before,
                 what="the reload to be applied")

    def history(self, d, currency):
        r = d.get(f"/api/v1/history?currency={currency}&source=24kg&from=2000-01-01"
                  "&to=2100-01-01")
        self.assertEqual(r.status, 200, r.text)
        return [(p["time"], str(p["rate"])) for p in r.json()["points"]]

    def fill_with_rules(self, d, prefix):
        """Creates API rules until one is refused; returns (created names, refused name,
        the refusal)."""
        created = []
        for k in range(5000):
            name = f"{prefix}-{k:04d}"
            r = d.request("/api/v1/alerts", method="POST", headers=auth(),
                          body={"name": name, "currency": "EUR", "below": 50,
                                "notify": ["hook"]})
            if r.status != 201:
                return created, name, r
            created.append(name)
        self.fail("5000 rules fitted under the limit")

    def test_writes_fail_clearly_reads_go_on_and_a_higher_limit_recovers(self):
        self.hook = self.receiver()
        d = Daemon(self.daemon_config("0"))
        self.addCleanup(d.stop)

        # Some history to read back later, stored without a limit.
        d.start()
        for values in (("85.01", "96.01", "1.201"), ("85.02", "96.02", "1.202")):
            self.fixture.set_page(self.path, seed_page(*values))
            wait_for(lambda: str(d.get_json("/api/v1/latest")[1]["rates"]["RUB"]["rate"])
                     == values[2], what=f"{values} stored")
        before = {c: self.history(d, c) for c in CURRENCIES}
        d.stop()

        # Restarted with the limit at the size it has: the pages in use have a little
        # room left, and then nothing more fits.
        limit = database_bytes(d.db)
        self.rewrite_config(d, kib(limit))
        d.start()
        self.assertIn(f"database size limit: {kib(limit)} ([storage] max_size)", d.log())
        created, refused, answer = self.fill_with_rules(d, "fill")
        self.assertEqual(answer.status, 507, answer.text)
        error = answer.json()["error"]
        self.assertEqual(error["code"], "insufficient_storage")
        self.assertRegex(error["message"],
                         rf"^rule {refused} not stored: {FULL} \(the database may not grow "
                         rf"beyond \[storage\] max_size = {kib(limit)} and holds \d+KiB; or "
                         r"the disk is full\)$")

        # New rates keep coming; storing them fails, visibly, scrape after scrape.
        publisher = Publisher(self.fixture, self.path)
        publisher.start()
        self.addCleanup(publisher.stop)
        failing = wait_for(lambda: FULL in ((s := d.source("24kg"))["last_error"] or {})
                           .get("message", "") and s, timeout=60,
                           what="the scrape failure in /api/v1/sources")
        t0 = time.monotonic()
        served0 = len(self.fixture.log(self.path))
        self.assertIn(f"rates of 24kg not stored: {FULL} (the database may not grow beyond "
                      f"[storage] max_size = {kib(limit)}", failing["last_error"]["message"])
        self.assertTrue(failing["last_error"]["message"].startswith("storing rates failed: "),
                        failing)
        streak = failing["consecutive_failures"]
        self.assertGreaterEqual(streak, 1)
        # The streak goes on counting even once the scrape log itself is full.
        later = wait_for(lambda: (s := d.source("24kg"))["consecutive_failures"] >= streak + 2
                         and s, timeout=60, what="two more failed scrapes")
        self.assertIn(FULL, later["last_error"]["message"])
        self.assertGreater(later["last_error"]["at"], failing["last_error"]["at"])

        # Test notifications are refused too once their tables are full.
        accepted = []
        for _ in range(2000):
            r = d.request(f"/api/v1/alerts/{RULE}/test", method="POST", headers=auth())
            if r.status != 202:
                break
            accepted.append(r.json()["event_id"])
        self.assertEqual(r.status, 507, r.text)
        self.assertEqual(r.json()["error"]["code"], "insufficient_storage")

        # Reads answer from what is stored.
        status, latest = d.get_json("/api/v1/latest")
        self.assertEqual(status, 200)
        sinces = {latest["rates"][c]["since"] for c in CURRENCIES}
        self.assertEqual(len(sinces), 1, f"one scrape's rates are half stored: {latest}")
        for c in CURRENCIES:
            points = self.history(d, c)
            self.assertEqual(points[:len(before[c])], before[c])
        status, alerts = d.get_json("/api/v1/alerts")
        self.assertEqual(status, 200)
        names = {a["name"] for a in alerts["alerts"]}
        self.assertTrue(set(created) <= names)
        self.assertNotIn(refused, names)
        self.assertEqual(d.get("/healthz").status, 200)
        metrics = d.get("/metrics")
        self.assertEqual(metrics.status, 200)
        m = re.search(r'^somrated_scrapes_total\{source="24kg",outcome="error"\} (\d+)$',
                      metrics.text, re.M)
        self.assertTrue(m and int(m.group(1)) >= streak + 2, metrics.text[:2000])
        self.assertIn(f"24kg: scrape failed: storing rates failed: rates of 24kg not stored: "
                      f"{FULL}", d.log())

        # No hot loop: failures back off (never more than one fetch a second per source),
        # and the daemon is alive and answering.
        wait_for(lambda: d.source("24kg")["consecutive_failures"] >= later["consecutive_failures"]
                 + 1, timeout=60, what="one more failed scrape")
        elapsed = time.monotonic() - t0
        served = len(self.fixture.log(self.path)) - served0
        self.assertLessEqual(served, (EXTRA_SOURCES + 1) * (elapsed + 2),
                             f"{served} fetches in {elapsed:.1f}s")
        self.assertIsNone(d.proc.poll())

        # Room again: the refused writes go through, scrapes store, notifications flow.
        self.reload(d, "0")
        self.assertIn(f"reload: [storage] max_size {kib(limit)} -> 0", d.log())
        recovered = wait_for(lambda: (s := d.source("24kg"))["consecutive_failures"] == 0
                             and s["last_success"] > failing["last_error"]["at"] and s,
                             timeout=60, what="a successful scrape after the limit was raised")
        self.assertIn(FULL, recovered["last_error"]["message"])
        r = d.request("/api/v1/alerts", method="POST", headers=auth(),
                      body={"name": refused, "currency": "EUR", "below": 50, "notify": ["hook"]})
        self.assertEqual(r.status, 201, r.text)
        r = d.request(f"/api/v1/alerts/{RULE}/test", method="POST", headers=auth())
        self.assertEqual(r.status, 202, r.text)
        accepted.append(r.json()["event_id"])
        status, latest = d.get_json("/api/v1/latest")
        self.assertGreater(latest["rates"]["USD"]["since"], failing["last_error"]["at"])
        self.hook.wait_for(lambda reqs: set(accepted) <= {q.header("X-Somrated-Event-Id")
                                                          for q in reqs if q.status == 200},
                           timeout=120, what="every accepted test notification")
        # USD is above 90 now: the rule fired once its state could be written.
        self.hook.wait_for(lambda reqs: any(q.json and q.json.get("status") == "firing"
                                            and q.json["alerts"][0]["labels"]["alertname"] == RULE
                                            for q in reqs),
                           timeout=120, what=f"{RULE} firing")

        # A lower limit applied live refuses writes again.
        self.reload(d, kib(database_bytes(d.db)))
        _, _, answer = self.fill_with_rules(d, "again")
        self.assertEqual(answer.status, 507, answer.text)
        publisher.stop()
        d.stop()

        con = connect_ro(d.db)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            self.assertEqual(con.execute("PRAGMA foreign_key_check").fetchall(), [])
            # Every scrape stored all three currencies or none of them.
            self.assertEqual(con.execute(
                "SELECT source_id, since, count(*) FROM rate_change GROUP BY source_id, since "
                "HAVING count(*) <> 3").fetchall(), [])
            # Every event has its delivery (all rules notify the hook).
            self.assertEqual(con.execute(
                "SELECT event_id FROM alert_event e WHERE NOT EXISTS "
                "(SELECT 1 FROM alert_delivery WHERE event = e.id)").fetchall(), [])
        finally:
            con.close()


if __name__ == "__main__":
    unittest.main()
