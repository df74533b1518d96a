"""Crash safety: SIGKILL the daemon at random moments, again and again, while it scrapes
a page whose rates change all the time, evaluates alert rules that fire and resolve with
them, takes API writes, and delivers notifications to a slow, sometimes failing receiver.

After every kill the database passes PRAGMA integrity_check and foreign_key_check; after
every restart each write that was acknowledged before a kill is there: every rate the API
showed, every rule created (201) and not deleted (204), no rule deleted, every test event
(202). At the end every event in the database has reached the receiver, and the sends the
daemon has no record of (the one in flight when it was killed, sent again after the
restart) number at most one per kill.

The kill moments come from a seeded generator; the seed is printed, and
SOMRATED_CRASH_SEED=<seed> replays a run's choices (thread timing still varies).
SOMRATED_CRASH_ITERATIONS sets the number of rounds, 50 by default. A round kills the
daemon at a random moment up to 1.5 s after it listens, or (about one round in seven)
kills it at once and then kills its next start at a random moment before it listens. The
whole test takes about 40 s.
"""

import collections
import http.client
import json
import os
import random
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

SEED = int(os.environ.get("SOMRATED_CRASH_SEED") or random.SystemRandom().randrange(2**32))
ITERATIONS = int(os.environ.get("SOMRATED_CRASH_ITERATIONS") or 50)
# After it listens, the daemon runs this long at most before the kill.
MAX_RUN = 1.5
# Some kills come while the daemon starts (before it listens), this long after the exec.
EARLY_SHARE = 0.15
MAX_EARLY = 0.3
RULE = "usd-above-90"
CURRENCIES = ("USD", "EUR", "RUB")
FAR = "2100-01-01"


def crash_config(source_url, hook_url):
    """One 24kg source scraped every second with the plausibility hold off (every
    value is a change point at once), a webhook, and a rule that fires above 90."""
    text = toml_table("[storage]", {"path": "@DB@"})
    text += toml_table("[server]", {"token": TOKEN})
    text += toml_table("[log]", {"level": "info"})
    text += toml_table("[alerting]", {"evaluate_every": "1s"})
    text += toml_table("[[source]]", {"name": "24kg", "kind": "24kg", "url": source_url,
                                      "interval": "1s", "timeout": "2s", "max_jump": 0.0})
    text += toml_table("[[notifier]]", webhook("hook", hook_url, give_up="1h"))
    text += toml_table("[[alert]]", {"name": RULE, "currency": "USD", "above": 90,
                                     "notify": ["hook"]})
    return text


def read_json(response):
    """The body as JSON with numbers kept as their text ("1.10" stays "1.10")."""
    return json.loads(response.body, parse_float=str, parse_int=str)


def check_database(path):
    """(integrity_check, foreign_key_check rows) of the database at path, read-only."""
    con = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=10)
    try:
        integrity = "\n".join(r[0] for r in con.execute("PRAGMA integrity_check"))
        foreign = con.execute("PRAGMA foreign_key_check").fetchall()
        return integrity, foreign
    finally:
        con.close()


class Publisher(threading.Thread):
    """Changes the fixture page every few tens of milliseconds: all three rates move,
    and USD swings across 90 with every change, so each scrape stores three change
    points and flips the rule."""

    def __init__(self, fixture, path):
        super().__init__(daemon=True, name="publisher")
        self.fixture, self.path = fixture, path
        self.stop_event = threading.Event()
        self.error = None

    def run(self):
        n = 0
        try:
            while not self.stop_event.wait(0.05):
                n += 1
                k = n % 900
                usd = f"{(91 if n % 2 else 84) + k / 100:.2f}"
                self.fixture.set_page(self.path, seed_page(usd=usd, eur=f"{95 + k / 100:.2f}",
                                                           rub=f"{1 + k / 1000:.3f}"))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self):
        self.stop_event.set()
        self.join(10)


class Ledger:
    """What the daemon acknowledged, and what it may or may not have done (the answer
    was lost to the kill)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rates = set()  # (currency, since, rate text) as /api/v1/latest showed them
        self.rules = set()  # created (201), not deleted
        self.maybe_rules = set()  # created, answer lost
        self.deleted = set()  # deleted (204)
        self.maybe_deleted = set()  # deleted, answer lost
        self.tests = set()  # event ids of test notifications (202)
        self.writes = collections.Counter()  # what happened to the writes, for the report


class Writer(threading.Thread):
    """Writes through the API while the daemon runs: creates rules (EUR above 1, so each
    fires at once and notifies), deletes some, asks for test notifications, and reads
    /api/v1/latest; records every acknowledged write in the ledger."""

    def __init__(self, daemon, ledger, rng, first_name):
        super().__init__(daemon=True, name="writer")
        self.d, self.ledger, self.rng = daemon, ledger, rng
        self.next_name = first_name
        self.stop_event = threading.Event()
        self.error = None

    def run(self):
        try:
            # A pause between writes keeps the backlog to a few hundred events a run.
            while not self.stop_event.wait(self.rng.uniform(0, 0.15)):
                self.step()
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the daemon was killed under the request
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def step(self):
        led = self.ledger
        choice = self.rng.random()
        if choice < 0.35:
            self.read_latest()
        elif choice < 0.65:
            name = f"api-{self.next_name:05d}"
            self.next_name += 1
            body = {"name": name, "currency": "EUR", "above": 1, "notify": ["hook"]}
            with led.lock:
                led.maybe_rules.add(name)
            r = self.d.request("/api/v1/alerts", method="POST", headers=auth(), body=body,
                               timeout=5)
            if r.status != 201:
                raise AssertionError(f"POST {name} answered {r.status}: {r.text}")
            with led.lock:
                led.maybe_rules.discard(name)
                led.rules.add(name)
                led.writes["created"] += 1
        elif choice < 0.8:
            with led.lock:
                candidates = sorted(led.rules)
            if not candidates:
                return
            name = self.rng.choice(candidates)
            with led.lock:
                led.rules.discard(name)
                led.maybe_deleted.add(name)
            r = self.d.request(f"/api/v1/alerts/{name}", method="DELETE", headers=auth(),
                               timeout=5)
            if r.status != 204:
                raise AssertionError(f"DELETE {name} answered {r.status}: {r.text}")
            with led.lock:
                led.maybe_deleted.discard(name)
                led.deleted.add(name)
                led.writes["deleted"] += 1
        else:
            r = self.d.request(f"/api/v1/alerts/{RULE}/test", method="POST", headers=auth(),
                               timeout=5)
            if r.status != 202:
                raise AssertionError(f"POST test answered {r.status}: {r.text}")
            with led.lock:
                led.tests.add(read_json(r)["event_id"])
                led.writes["tests"] += 1

    def read_latest(self):
        r = self.d.request("/api/v1/latest?source=24kg", timeout=5)
        if r.status != 200:
            raise AssertionError(f"latest answered {r.status}: {r.text}")
        with self.ledger.lock:
            for currency, v in read_json(r)["rates"].items():
                self.ledger.rates.add((currency, v["since"], v["rate"]))

    def stop(self):
        self.stop_event.set()
        self.join(15)


def all_events(d):
    """Every event with its deliveries, oldest first, fetched page by page."""
    out, seen, since = [], set(), None
    while True:
        query = "limit=1000" + (f"&since={urllib.parse.quote(since)}" if since else "")
        r = d.get(f"/api/v1/alerts/events?{query}")
        if r.status != 200:
            raise AssertionError(f"events answered {r.status}: {r.text}")
        page = read_json(r)["events"]
        fresh = [e for e in page if e["event_id"] not in seen]
        out += fresh
        seen.update(e["event_id"] for e in fresh)
        if len(page) < 1000 or not fresh:
            return out
        since = page[-1]["at"]


class CrashLoop(FixtureCase):
    def test_sigkill_at_random_moments_loses_no_acknowledged_write_and_no_notification(self):
        print(f"\ncrash loop: seed {SEED}, {ITERATIONS} rounds "
              f"(replay with SOMRATED_CRASH_SEED={SEED})", file=sys.stderr, flush=True)
        rng = random.Random(SEED)
        hook = self.receiver()
        hook.set_mode("ok", delay=0.05)
        d = Daemon(crash_config(self.source_url(), hook.url("/hook")))
        self.addCleanup(d.stop, check=False)
        publisher = Publisher(self.fixture, self.path)
        publisher.start()
        self.addCleanup(publisher.stop)
        ledger = Ledger()
        started = time.monotonic()
        kills = early_kills = 0

        def kill():
            nonlocal kills
            d.kill()
            kills += 1
            self.assertIsNone(d.sanitizer_report(), d.log_tail())

        d.start()
        for i in range(ITERATIONS):
            # A slow answer now and then keeps a send in flight for longer, and a rare 503
            # holds the queue in a backoff (5 s, doubling) while a backlog builds; none
            # in the last tenth, so the final drain does not wait on a long backoff.
            if i < ITERATIONS * 0.9:
                if rng.random() < 0.3:
                    hook.queue(("ok", {"delay": 0.4}))
                if rng.random() < 0.06:
                    hook.queue("status 503")
            early = i > 0 and rng.random() < EARLY_SHARE
            writer = None
            if early:
                # Started without waiting for it to listen: killed while it opens the
                # database, recovers the WAL, or sends its first requests.
                kill()
                d.start(wait=False)
                time.sleep(rng.uniform(0, MAX_EARLY))
                early_kills += 1
            else:
                writer = Writer(d, ledger, random.Random(rng.random()), first_name=i * 1000)
                writer.start()
                time.sleep(rng.uniform(0, MAX_RUN))
            kill()
            if writer:
                writer.stop()
                self.assertIsNone(writer.error, f"iteration {i} (seed {SEED}): {writer.error}")

            integrity, foreign = check_database(d.db)
            self.assertEqual(integrity, "ok", f"iteration {i} (seed {SEED})")
            self.assertEqual(foreign, [], f"iteration {i} (seed {SEED}): rows without their "
                                          "parent row")
            d.start()
            self.check_acknowledged(d, ledger, i)
        run_time = time.monotonic() - started

        # Let it run to the end: every event recorded gets to the receiver.
        publisher.stop()
        hook.unqueue()
        hook.set_mode("ok")
        wait_for(lambda: all(dl["status"] == "delivered" for e in all_events(d)
                             for dl in e["deliveries"]),
                 timeout=180, interval=0.5, what="every delivery to be made")
        events = all_events(d)
        d.stop()
        self.assertIsNone(publisher.error)
        self.assertEqual(check_database(d.db), ("ok", []))

        ids = [e["event_id"] for e in events]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(ledger.tests <= set(ids), "an acknowledged test event is missing")
        unrecorded = self.check_deliveries(hook.requests(), events, kills)
        kinds = collections.Counter(e["kind"] for e in events)
        print(f"crash loop: {kills} kills ({early_kills} while starting) in {run_time:.0f}s; "
              f"{len(ledger.rates)} rates seen, {dict(ledger.writes)} acknowledged writes, "
              f"{len(events)} events {dict(kinds)}, {len(hook.requests())} requests received, "
              f"{unrecorded} sent again after a kill", 
              file=sys.stderr, flush=True)

    def check_acknowledged(self, d, ledger, i):
        """Everything acknowledged before the kill is in the restarted daemon."""
        with ledger.lock:
            rates = set(ledger.rates)
            rules, maybe = set(ledger.rules), set(ledger.maybe_rules)
            deleted, maybe_deleted = set(ledger.deleted), set(ledger.maybe_deleted)
            tests = set(ledger.tests)
        for currency in CURRENCIES:
            r = d.get(f"/api/v1/history?currency={currency}&source=24kg&from=2000-01-01&to={FAR}")
            self.assertEqual(r.status, 200, r.text)
            # Times have whole seconds: two change points may share one.
            points = {(p["time"], p["rate"]) for p in read_json(r)["points"]}
            for c, since, rate in rates:
                if c == currency:
                    self.assertIn((since, rate), points,
                                     f"iteration {i} (seed {SEED}): {currency} {rate} since "
                                     f"{since} was shown before the kill and is gone")
        r = d.get("/api/v1/alerts")
        self.assertEqual(r.status, 200, r.text)
        listed = {a["name"] for a in read_json(r)["alerts"] if a["origin"] == "api"}
        self.assertTrue(rules <= listed, f"iteration {i} (seed {SEED}): acknowledged rules "
                                         f"missing: {sorted(rules - listed)}")
        self.assertFalse(deleted & listed, f"iteration {i} (seed {SEED}): deleted rules are "
                                           f"back: {sorted(deleted & listed)}")
        # Writes whose answer the kill took are settled by what the database says: from
        # now on they count as done (or as never done).
        with ledger.lock:
            for name in maybe:
                ledger.maybe_rules.discard(name)
                if name in listed:
                    ledger.rules.add(name)
            for name in maybe_deleted:
                ledger.maybe_deleted.discard(name)
                (ledger.rules if name in listed else ledger.deleted).add(name)
        stored = {e["event_id"] for e in all_events(d)}
        self.assertTrue(tests <= stored, f"iteration {i} (seed {SEED}): acknowledged test "
                                         f"events missing: {sorted(tests - stored)}")

    def check_deliveries(self, requests, events, kills):
        """Every stored event arrived with a 200, nothing arrived that is not stored, and
        the arrivals the daemon has no attempt recorded for (sent, then killed before the
        answer was written down) are at most one per kill: with one notifier, one send is
        in flight at a time. Returns how many there were."""
        arrivals = collections.Counter(q.header("X-Somrated-Event-Id") for q in requests)
        answered = {q.header("X-Somrated-Event-Id") for q in requests if q.status == 200}
        ids = {e["event_id"] for e in events}
        self.assertEqual(set(arrivals) - ids, set(), "an event arrived that is not stored")
        self.assertEqual(sorted(ids - answered), [], "events that never reached the receiver")
        unrecorded = 0
        for e in events:
            (dl,) = e["deliveries"]
            recorded = len(dl["attempts"])
            self.assertEqual(dl["attempts"][-1]["outcome"], "delivered", e)
            self.assertGreaterEqual(arrivals[e["event_id"]], recorded,
                                    f"attempts recorded that never arrived: {e}")
            unrecorded += arrivals[e["event_id"]] - recorded
        self.assertLessEqual(unrecorded, kills,
                             "more sends without a recorded attempt than kills: a delivery was "
                             "repeated that was not in flight")
        return unrecorded

if __name__ == "__main__":
    unittest.main()
