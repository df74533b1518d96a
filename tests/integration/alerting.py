"""Shared pieces of the alert integration tests: config text, the alert API, and waits
that count scrape cycles instead of sleeping.

All of it runs against 127.0.0.1: the daemon scrapes the fixture server and notifies
receiver.Receiver instances (or a local Alertmanager).
"""

import datetime
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import wait_for  # noqa: E402
from test_daemon import seed_page  # noqa: E402

# What Alertmanager (Go) prints for a zero time: a firing alert's endsAt.
ZERO_TIME = "0001-01-01T00:00:00Z"
TOKEN = "s3cret-token-for-tests"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SEED_USD = "87.45"


# -- config ---------------------------------------------------------------------------

def toml_value(v):
    """v as a TOML value: str, bool, int, float, list, or dict (an inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def toml_key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_table(header, items):
    """[[header]] (or [header] when header has no brackets) with items, in order."""
    lines = [header]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in items.items()]
    return "\n".join(lines) + "\n"


def alert_config(source_url, notifiers=(), alerts=(), token=None, evaluate_every="1s",
                 interval="1s", source_timeout="2s", log_level="debug"):
    """A daemon config: one 24kg source at source_url (scraped every interval), the
    given [[notifier]] and [[alert]] tables (dicts, keys as in the config), and
    [server] token when given. @DB@ is replaced by daemon.Daemon."""
    text = toml_table("[storage]", {"path": "@DB@"})
    text += toml_table("[log]", {"level": log_level})
    if token is not None:
        text += toml_table("[server]", {"token": token})
    text += toml_table("[alerting]", {"evaluate_every": evaluate_every})
    text += toml_table("[[source]]", {"name": "24kg", "kind": "24kg", "url": source_url,
                                      "interval": interval, "timeout": source_timeout})
    for n in notifiers:
        text += toml_table("[[notifier]]", n)
    for a in alerts:
        text += toml_table("[[alert]]", a)
    return text


def webhook(name, url, **extra):
    """A webhook [[notifier]] with short timeouts for tests."""
    return {"name": name, "kind": "webhook", "url": url, "timeout": "2s", **extra}


# -- Alertmanager's fingerprint -------------------------------------------------------

def fingerprint(labels):
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over the names in sorted
    order, each as name 0xFF value 0xFF, as 16 lowercase hex digits."""
    h = 14695981039346656037
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h ^= byte
                h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def parse_time(text):
    """An RFC 3339 time ("...Z", "...+00:00", with or without fractions) as an aware
    datetime."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    micro = int((m.group(2) or ".0")[1:7].ljust(6, "0"))
    zone = m.group(3)
    offset = datetime.timedelta(0) if zone == "Z" else (
        (1 if zone[0] == "+" else -1) * datetime.timedelta(hours=int(zone[1:3]),
                                                          minutes=int(zone[4:6])))
    return base.replace(microsecond=micro, tzinfo=datetime.timezone(offset))


# -- the daemon's alert API -----------------------------------------------------------

def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def rules(d):
    """GET /api/v1/alerts as {name: entry}."""
    status, body = d.get_json("/api/v1/alerts")
    if status != 200:
        raise AssertionError(f"GET /api/v1/alerts answered {status}: {body}")
    return {a["name"]: a for a in body["alerts"]}


def rule(d, name):
    return rules(d)[name]


def events(d, rule_name=None, limit=None):
    """GET /api/v1/alerts/events (of rule_name, when given), oldest first."""
    query = []
    if rule_name:
        query.append(f"rule={rule_name}")
    if limit:
        query.append(f"limit={limit}")
    status, body = d.get_json("/api/v1/alerts/events" + ("?" + "&".join(query) if query else ""))
    if status != 200:
        raise AssertionError(f"GET /api/v1/alerts/events answered {status}: {body}")
    return body["events"]


def wait_state(d, name, state, timeout=30):
    """Waits until rule name is in state; returns its entry."""
    return wait_for(lambda: (a := rule(d, name))["state"] == state and a, timeout=timeout,
                    what=f"rule {name} to be {state}")


def outbox_idle(d):
    """True when no delivery of any event is pending."""
    return all(dl["status"] != "pending" for e in events(d, limit=1000) for dl in e["deliveries"])


def set_usd(fixture, path, usd):
    """Makes the fixture page at path publish usd (a string) as the USD rate."""
    fixture.set_page(path, seed_page(usd=usd))


def wait_scrapes(fixture, path, n, timeout=30):
    """Waits until the fixture has served path n more times than now: n scrape cycles."""
    start = len(fixture.log(path))
    wait_for(lambda: len(fixture.log(path)) >= start + n, timeout=timeout,
             what=f"{n} more scrapes of {path}")


def quiet_period(d, fixture, path, names, scrapes=3, timeout=60):
    """Lets `scrapes` scrape cycles pass, then waits until every rule in names was
    evaluated after the last of them and the outbox has nothing pending: anything those
    cycles would have sent has been sent by then."""
    wait_scrapes(fixture, path, scrapes, timeout)
    last = fixture.log(path)[-1]["time"]
    # evaluated_at has whole seconds: only a later second is surely after the last scrape.
    cutoff = datetime.datetime.fromtimestamp(int(last) + 1, datetime.timezone.utc)
    for name in names:
        wait_for(lambda: (t := rule(d, name)["evaluated_at"]) and parse_time(t) >= cutoff,
                 timeout=timeout, what=f"rule {name} evaluated after the last scrape")
    wait_for(lambda: outbox_idle(d), timeout=timeout, what="the outbox to drain")


class FixtureCase(unittest.TestCase):
    """A test case with one fixture server for the class and a page per test."""

    fixture = None

    @classmethod
    def setUpClass(cls):
        from fixture import FixtureServer
        cls.fixture = FixtureServer()
        cls.fixture.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.fixture.__exit__(None, None, None)

    def setUp(self):
        self.path = f"/english/{self.id().rsplit('.', 1)[-1]}/"
        self.fixture.set_page(self.path, seed_page())
        self.fixture.set_mode(self.path, "ok")

    def source_url(self):
        return self.fixture.url(self.path)

    def set_usd(self, usd):
        set_usd(self.fixture, self.path, usd)

    def receiver(self, **kw):
        """A Receiver stopped when the test ends."""
        from receiver import Receiver
        r = Receiver(**kw).start()
        self.addCleanup(r.stop)
        return r

    def wait_first_scrape(self, d):
        return wait_for(lambda: d.get_json("/api/v1/latest?source=24kg")[1]
                        .get("rates", {}).get("USD", {}).get("rate") is not None,
                        what="the first scrape")

    def assert_event_id(self, req):
        """The X-Somrated-Event-Id header is a UUID; returns it."""
        event_id = req.header("X-Somrated-Event-Id")
        self.assertIsNotNone(event_id, f"no X-Somrated-Event-Id on {req!r}")
        self.assertRegex(event_id.lower(), UUID_RE)
        return event_id
