"""Fault injection: the real somrated against misbehaving source servers (issue 6).

One daemon scrapes one source per fault in FAULTS, every second with a one-second timeout.
Each source first stores the same strip; then every fault is switched on at once, and while
they last the suite checks, for each source, that nothing stored changed, that
/api/v1/sources and /metrics name the failure, and that the daemon answers promptly. Then
every server heals with a new strip, which each source must store by itself.

Two smaller tests follow: an absurd jump seen once is held and never stored, and pages that
look unusual but are sound (other encodings, a strip that moved) are read exactly.
"""

import calendar
import http.client
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import unittest
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(__file__))
from daemon import TEST_DATA, Daemon, metric, wait_for  # noqa: E402
from fixture import FixtureServer, issue_cert, make_ca  # noqa: E402
from test_daemon import seed_page  # noqa: E402

VARIANTS = os.path.join(TEST_DATA, "24kg", "variants")
SEED = {"USD": "87.45", "EUR": "99.56", "RUB": "1.10"}
HEALED = {"USD": "87.46", "EUR": "99.57", "RUB": "1.11"}
MAX_BODY = 8 * 1024 * 1024  # the daemon's default max_body
API_TIME = "%Y-%m-%dT%H:%M:%SZ"


def variant(name):
    """The bytes of a page variant from tests/data/24kg/variants."""
    with open(os.path.join(VARIANTS, name), "rb") as f:
        return f.read()


def strip_page(rates):
    """seed_page() with the strip showing rates ({"USD": "87.45", ...})."""
    return seed_page(usd=rates["USD"], eur=rates["EUR"], rub=rates["RUB"])


def windows1251_undeclared():
    """windows1251.html without its http-equiv: 0xA0 no-break spaces, and nothing says so."""
    page = variant("windows1251.html")
    meta = b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
    assert meta in page
    return page.replace(meta, b"")


def utf16(rates, bom):
    """A strip page in UTF-16 (little-endian), with or without a byte-order mark."""
    text = strip_page(rates).decode("utf-8").replace("charset='utf-8'", "charset='utf-16'")
    return text.encode("utf-16" if bom else "utf-16-le")


def moved_strip(rates):
    """The strip moved below an article whose own figures look like the start of one."""
    strip = " ".join(f"<b>{c}</b> <span>{v}</span>" for c, v in rates.items())
    return (b"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
            b"<h1>National Bank sells USD 90 million</h1><p>It sold USD 90 million and EUR 5 "
            b"million this week.</p><footer><div class='currency'>" + strip.encode()
            + b"</div></footer></body></html>")


# Every fault, as (source name, how its server misbehaves, what last_error must say):
#   ("mode", M[, retry_after])  the fixture serves the path in mode M
#   ("page", body[, type])      the fixture serves that page (with that Content-Type)
#   ("cert", kind)              the HTTPS server presents a bad certificate
#   ("down",)                   nothing listens on the source's port any more
FAULTS = [
    ("refused", ("down",), r"^connect 127\.0\.0\.1:\d+: Connection refused$"),
    ("reset", ("mode", "reset"),
     r"^read body from .*: (Connection reset by peer|end of stream|partial message)$"),
    ("http_500", ("mode", "500"), r"^HTTP 500 Internal Server Error$"),
    ("http_503", ("mode", "503"), r"^HTTP 503 Service Unavailable \(Retry-After: 5\)$"),
    ("http_429", ("mode", "429", "3600"), r"^HTTP 429 Too Many Requests \(Retry-After: 3600\)$"),
    ("http_404", ("mode", "404"), r"^HTTP 404 Not Found$"),
    ("hang", ("mode", "hang"), r"^read response header from .*: timed out after 1000 ms$"),
    # A byte a second beats the per-read timeout of one second now and then; the total
    # deadline (four timeouts) ends it either way.
    ("trickle", ("mode", "trickle"),
     r"^read body from .*: (timed out after 1000 ms|total deadline of 4000 ms exceeded)$"),
    ("huge", ("mode", "huge"), rf"^body exceeds {MAX_BODY} bytes$"),
    ("huge_stream", ("mode", "huge_stream"), rf"^body exceeds {MAX_BODY} bytes$"),
    ("redirect_loop", ("mode", "redirect_loop"), r"^too many redirects \(5\)$"),
    ("tls_wrong_host", ("cert", "wrong_host"),
     r"^TLS handshake with 127\.0\.0\.1:\d+: .*\(certificate is not valid for '127\.0\.0\.1'\)$"),
    ("tls_expired", ("cert", "expired"),
     r"^TLS handshake with 127\.0\.0\.1:\d+: .*\(certificate has expired\)$"),
    ("tls_unknown_ca", ("cert", "unknown_ca"),
     r"^TLS handshake with 127\.0\.0\.1:\d+: .*\(unable to get local issuer certificate\)$"),
    ("strip_vanished", ("page", variant("missing_strip.html")),
     r"^currency strip not found: no 'USD <rate>' in page text$"),
    ("strip_in_script", ("page", variant("script_only.html")),
     r"^currency strip not found: no 'USD <rate>' in page text$"),
    ("strip_partial", ("page", variant("two_of_three.html")),
     r"^currency strip incomplete: found USD 87\.45, EUR 99\.56 but no RUB$"),
    ("value_zero", ("page", variant("zero_value.html")),
     r"^currency strip garbled: RUB value '0\.00' is zero$"),
    ("value_negative", ("page", variant("negative_value.html")),
     r"^currency strip garbled: USD value '-1' is not a decimal$"),
    ("value_exponent", ("page", strip_page({**SEED, "USD": "1e9"})),
     r"^currency strip garbled: USD value '1e9' is not a decimal$"),
    ("value_text", ("page", strip_page({**SEED, "EUR": "n/a"})),
     r"^currency strip garbled: EUR value 'n/a' is not a decimal$"),
    ("value_split", ("page", variant("split_value.html")),
     r"^currency strip garbled: USD value '8 7\.45' is not a decimal$"),
    ("cp1251_undeclared", ("page", windows1251_undeclared(), "text/html"),
     r"^currency strip not found: .* \(the page declares no encoding and is not UTF-8 text\)$"),
    ("cp1251_said_utf8", ("page", windows1251_undeclared(), "text/html; charset=utf-8"),
     r"^currency strip not found: .* \(the page is declared UTF-8 but is not UTF-8 text\)$"),
    ("utf16_undeclared", ("page", utf16(SEED, bom=False), "text/html"),
     r"^currency strip not found: .* \(the page declares no encoding and is not UTF-8 text\)$"),
]

# Pages that look unusual but are right, as (source name, page, Content-Type): each must be
# read exactly as 88.84 / 95.29 / 0.96.
UNUSUAL = {"USD": "88.84", "EUR": "95.29", "RUB": "0.96"}
READABLE = [
    ("cp1251_meta", variant("windows1251.html"), "text/html"),
    ("cp1251_header", windows1251_undeclared(), "text/html; charset=windows-1251"),
    ("utf16_bom", utf16(UNUSUAL, bom=True), "text/html"),
    ("utf16_header", utf16(UNUSUAL, bom=False), "text/html; charset=utf-16le"),
    ("strip_moved", moved_strip(UNUSUAL), None),
]


def config(sources, ca_file):
    """A daemon config scraping sources [(name, url)] every second; HTTPS ones trust ca_file."""
    text = '[storage]\npath = "@DB@"\n\n[log]\nlevel = "info"\n'
    for name, url in sources:
        text += (f'\n[[source]]\nname = "{name}"\nkind = "24kg"\nurl = "{url}"\n'
                 'interval = "1s"\ntimeout = "1s"\n')
        if url.startswith("https:"):
            text += f'ca_file = "{ca_file}"\n'
    return text


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds(rfc3339):
    """Unix seconds of an API time ("2026-11-28T05:34:22Z")."""
    return calendar.timegm(time.strptime(rfc3339, API_TIME))


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="somrated-faults-")
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        other = make_ca(os.path.join(cls.tmp, "other-ca"))
        cls.certs = {
            "good": issue_cert(cls.ca, os.path.join(cls.tmp, "good")),
            "wrong_host": issue_cert(cls.ca, os.path.join(cls.tmp, "wrong_host"),
                                     dns_names=("wrong.example",), ip_addresses=()),
            "expired": issue_cert(cls.ca, os.path.join(cls.tmp, "expired"),
                                  not_before="20200101000000Z", not_after="20200102000000Z"),
            "unknown_ca": issue_cert(other, os.path.join(cls.tmp, "unknown_ca")),
        }

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.stack = ExitStack()
        self.addCleanup(self.stack.close)
        self.fixture = self.stack.enter_context(FixtureServer())

    # -- the servers of FAULTS ----------------------------------------------

    def start_fault_servers(self):
        """Starts a server for every case of FAULTS, serving the seed strip at /<name>/;
        returns the daemon config that scrapes them."""
        self.servers = {}
        # The server that goes down comes back on the same port, so both bind it with
        # SO_REUSEADDR (which --http-port sets): its old connections may be in TIME_WAIT.
        self.down_port = free_port()
        self.down = self.stack.enter_context(ExitStack())
        sources = []
        for name, how, _ in FAULTS:
            if how[0] == "cert":
                live = os.path.join(self.tmp, f"live-{name}")
                self.present(live, "good")
                srv = self.stack.enter_context(FixtureServer(tls_dir=live))
            elif how[0] == "down":
                srv = self.down.enter_context(FixtureServer(http_port=self.down_port))
            else:
                srv = self.fixture
            self.servers[name] = srv
            srv.set_page(f"/{name}/", strip_page(SEED))
            sources.append((name, srv.url(f"/{name}/", tls=how[0] == "cert")))
        return config(sources, self.ca)

    def present(self, live_dir, cert, server=None):
        """Puts certificate `cert` where live_dir's server reads it (and makes it reread)."""
        os.makedirs(live_dir, exist_ok=True)
        for f in ("server.crt", "server.key"):
            shutil.copy(os.path.join(self.certs[cert], f), os.path.join(live_dir, f))
        if server is not None:
            server.reload_tls()

    def break_server(self, name, how):
        path = f"/{name}/"
        if how[0] == "mode":
            self.fixture.set_mode(path, how[1], *how[2:])
            self.fixture.clear_log(path)  # from here on, every request sees the fault
        elif how[0] == "page":
            self.fixture.set_page(path, how[1], *how[2:])
        elif how[0] == "cert":
            self.present(self.servers[name].tls_dir, how[1], self.servers[name])
        else:
            self.down.close()

    def heal_server(self, name, how):
        path = f"/{name}/"
        if how[0] == "down":
            self.servers[name] = self.stack.enter_context(FixtureServer(http_port=self.down_port))
        elif how[0] == "cert":
            self.present(self.servers[name].tls_dir, "good", self.servers[name])
        else:
            self.fixture.set_mode(path, "ok")
        self.servers[name].set_page(path, strip_page(HEALED))

    # -- asking the daemon --------------------------------------------------

    def get(self, d, path):
        """A GET that must be answered with 200 within 5 s, whatever the sources are doing."""
        try:
            r = d.get(path, timeout=5)
        except (OSError, http.client.HTTPException) as e:
            self.fail(f"GET {path} was not answered: {e!r}")
        self.assertEqual(r.status, 200, f"{path}: {r.text}")
        return r

    def stored(self, d, source):
        """What source has stored: the exact bytes of its history per currency, and its
        latest rates with their since."""
        latest = self.get(d, f"/api/v1/latest?source={source}").json()
        history = {c: self.get(d, f"/api/v1/history?currency={c}&source={source}"
                                  "&from=2020-01-01&format=csv").text for c in SEED}
        return {"history": history,
                "latest": {c: (v["rate"], v["since"]) for c, v in latest["rates"].items()}}

    def assert_latest(self, d, source, rates):
        """/api/v1/latest for source shows exactly these rate texts."""
        text = self.get(d, f"/api/v1/latest?source={source}").text.replace(" ", "")
        for currency, rate in rates.items():
            self.assertRegex(text, rf'"{currency}":\{{"rate":{re.escape(rate)},',
                             f"{source}: {currency} is not {rate}")

    def latest_is(self, d, source, rates):
        """True when source's latest rates are these."""
        body = self.get(d, f"/api/v1/latest?source={source}").json()
        return {c: v["rate"] for c, v in body["rates"].items()} == {
            c: float(v) for c, v in rates.items()}

    def wait_sources(self, d, names, done, what, timeout=40):
        """Polls /api/v1/sources (and /healthz, which must answer meanwhile) until done(s)
        holds for the source s of every name; returns them by name."""
        pending = {}

        def check():
            self.get(d, "/healthz")
            by_name = {s["name"]: s for s in self.get(d, "/api/v1/sources").json()["sources"]}
            pending.clear()
            pending.update({n: by_name[n] for n in names if not done(by_name[n])})
            return not pending and by_name

        try:
            return wait_for(check, timeout=timeout, interval=0.1, what=what)
        except AssertionError as e:
            if not str(e).startswith("timed out after"):
                raise  # an answer that was wrong, not the wait
            self.fail(f"timed out waiting for {what}; not there yet:\n"
                      + "\n".join(f"  {n}: failures={s['consecutive_failures']} "
                                  f"last_error={s['last_error']}" for n, s in pending.items()))

    def next_gap(self, d, name):
        """Seconds from the source's last attempt to its next scrape, once planned."""
        s = wait_for(lambda: (s := d.source(name))["next_scrape"]
                     and seconds(s["next_scrape"]) > seconds(s["last_attempt"]) and s,
                     what=f"{name} to be scheduled again")
        return seconds(s["next_scrape"]) - seconds(s["last_attempt"])

    # -- tests --------------------------------------------------------------

    def test_every_fault_is_contained_reported_and_healed(self):
        names = [name for name, _, _ in FAULTS]
        with Daemon(self.start_fault_servers()) as d:
            self.wait_sources(d, names, lambda s: s["consecutive_failures"] == 0
                              and self.latest_is(d, s["name"], SEED), "every first scrape")
            before = {n: self.stored(d, n) for n in names}
            metrics = self.get(d, "/metrics").text
            errors_before = {n: metric(metrics, "somrated_scrapes_total", source=n, outcome="error")
                             for n in names}

            for name, how, _ in FAULTS:
                self.break_server(name, how)
            expected = {name: error for name, _, error in FAULTS}
            failing = self.wait_sources(
                d, names, lambda s: s["consecutive_failures"] > 0 and s["last_error"]
                and re.search(expected[s["name"]], s["last_error"]["message"]),
                "every fault to show in /api/v1/sources")

            # While the faults last: nothing stored changed, /metrics shows every failure,
            # and the daemon answers (every get() must be answered within 5 s).
            metrics = self.get(d, "/metrics").text
            for n in names:
                with self.subTest(source=n):
                    self.assertEqual(self.stored(d, n), before[n])
                    self.assert_latest(d, n, SEED)
                    self.assertEqual(failing[n]["held"], [])
                    self.assertEqual(metric(metrics, "somrated_source_up", source=n), 0)
                    self.assertGreater(
                        metric(metrics, "somrated_scrapes_total", source=n, outcome="error"),
                        errors_before[n])
            # Once every source's last success is 3 intervals old, readiness says so.
            ready = wait_for(lambda: (r := d.get("/readyz", timeout=5)).status == 503 and r,
                             what="/readyz to report that no source is scraped")
            self.assertIn("no source scraped successfully within 3 intervals", ready.text)

            # Retry-After: the 503's five seconds are waited out; the 429's hour is capped
            # at the longest backoff (5 s for a 1 s interval, plus jitter).
            wait_for(lambda: len(self.fixture.log("/http_503/")) >= 2, timeout=30,
                     what="a second request answered 503")
            self.assertGreaterEqual(self.next_gap(d, "http_503"), 5, "Retry-After: 5 not waited")
            self.assertLess(self.next_gap(d, "http_429"), 60, "Retry-After: 3600 not capped")
            times = [e["time"] for e in self.fixture.log("/http_503/")]
            self.assertGreaterEqual(min(b - a for a, b in zip(times, times[1:])), 4.9, times)

            # Every server heals with a new strip, and every source stores it by itself.
            for name, how, _ in FAULTS:
                self.heal_server(name, how)
            self.wait_sources(d, names, lambda s: s["consecutive_failures"] == 0
                              and self.latest_is(d, s["name"], HEALED), "every source to heal")
            metrics = self.get(d, "/metrics").text
            for n in names:
                with self.subTest(source=n):
                    self.assert_latest(d, n, HEALED)
                    after = self.stored(d, n)["history"]
                    for c in SEED:
                        old = before[n]["history"][c]
                        self.assertTrue(after[c].startswith(old), after[c])
                        added = after[c][len(old):].splitlines()
                        self.assertEqual(len(added), 1, added)
                        self.assertTrue(added[0].endswith(f",{c},{n},{HEALED[c]}"), added)
                    self.assertEqual(metric(metrics, "somrated_source_up", source=n), 1)

    def test_an_absurd_jump_seen_once_is_held_and_never_stored(self):
        path = "/jump/"
        self.fixture.set_page(path, strip_page(SEED))
        with Daemon(config([("jump", self.fixture.url(path))], self.ca)) as d:
            wait_for(lambda: d.source("jump")["last_success"], what="the first scrape")
            before = self.stored(d, "jump")
            held_before = metric(self.get(d, "/metrics").text, "somrated_scrapes_total",
                                 source="jump", outcome="held")

            # One answer says a dollar costs a billion som; every later one is sane again.
            seen = len(self.fixture.log(path))
            self.fixture.set_page(path, strip_page({**SEED, "USD": "1000000000.00"}), once=True)
            src = wait_for(lambda: (s := d.source("jump"))["held"] and s, what="USD to be held")
            self.assertEqual([(h["currency"], h["rate"]) for h in src["held"]],
                             [("USD", 1000000000.00)])
            self.assertRegex(self.get(d, "/api/v1/sources").text.replace(" ", ""),
                             r'"held":\[\{"currency":"USD","rate":1000000000\.00,')
            # Held is not a failure: the source is up, and /metrics counts the hold.
            self.assertEqual(src["consecutive_failures"], 0)
            metrics = self.get(d, "/metrics").text
            self.assertEqual(metric(metrics, "somrated_source_up", source="jump"), 1)
            self.assertGreater(metric(metrics, "somrated_scrapes_total", source="jump",
                                      outcome="held"), held_before)
            self.assertEqual(self.stored(d, "jump"), before)
            self.assert_latest(d, "jump", SEED)

            # The next scrape sees 87.45 again: the hold is dropped, nothing was stored.
            wait_for(lambda: len(self.fixture.log(path)) > seen + 1
                     and not d.source("jump")["held"], what="the next scrape to drop the hold")
            self.assertEqual(self.stored(d, "jump"), before)
            self.assertNotIn("1000000000", self.get(d, "/api/v1/history?currency=USD&source=jump"
                                                       "&from=2020-01-01&format=csv").text)

    def test_unusual_but_sound_pages_are_read_exactly(self):
        names = [name for name, _, _ in READABLE]
        for name in names:
            self.fixture.set_page(f"/{name}/", strip_page(SEED))
        with Daemon(config([(n, self.fixture.url(f"/{n}/")) for n in names], self.ca)) as d:
            self.wait_sources(d, names, lambda s: self.latest_is(d, s["name"], SEED),
                              "every first scrape")
            for name, page, content_type in READABLE:
                self.fixture.set_page(f"/{name}/", page, content_type)
            self.wait_sources(d, names, lambda s: self.latest_is(d, s["name"], UNUSUAL),
                              "every page to be read")
            for name in names:
                with self.subTest(source=name):
                    self.assert_latest(d, name, UNUSUAL)
                    self.assertEqual(d.source(name)["consecutive_failures"], 0)
                    rub = self.get(d, f"/api/v1/history?currency=RUB&source={name}"
                                      "&from=2020-01-01&format=csv").text.splitlines()
                    self.assertEqual([line.rsplit(",", 1)[1] for line in rub[1:]], ["1.10", "0.96"])


if __name__ == "__main__":
    unittest.main()
