"""The page in a real browser: headless Chromium against the real daemon on loopback.

The daemon scrapes a local fixture server (24.kg), a file (NBKR) and a source that
always fails; past rates are written into its database as a backfill would, so the
page shows changes against 24 hours ago and charts with history. Chromium may reach
127.0.0.1 only (see chromium.py); the tests check that it did, that the page loads
without console errors, shows the fixture's rates as published and refreshes them in
place, and keep screenshots under the build tree (test-artifacts/).

The test methods share one browser and run in name order; the last one closes the
browser and reads its net log.
"""

import base64
import datetime
import os
import random
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from daemon import BINARY, Daemon, wait_for  # noqa: E402
from fixture import FixtureServer  # noqa: E402
from test_daemon import NBKR, seed_page  # noqa: E402

ARTIFACTS = os.environ.get("SOMRATED_ARTIFACTS") or os.path.join(
    os.path.dirname(os.path.abspath(BINARY)), "test-artifacts")

# What the fixture publishes, and what NBKR's fixture file holds.
RATES_24KG = {"USD": "87.45", "EUR": "99.56", "RUB": "1.10"}
RATES_NBKR = {"USD": "80.9694", "EUR": "81.2164", "RUB": "1.3612", "KZT": "0.1686"}
# The backfilled values in force 30 hours ago: USD was lower, EUR higher, RUB the same.
EARLIER = {"USD": "87.10", "EUR": "99.80", "RUB": "1.10"}

RULE = "usd-above-80"

# Evaluated in the page: {source name: {currency: rate text}}.
RATES_JS = """Object.fromEntries([...document.querySelectorAll('section.source')].map(s =>
  [s.querySelector('h2').textContent, Object.fromEntries([...s.querySelectorAll('tr[data-currency]')]
    .map(r => [r.dataset.currency, r.querySelector('td.rate').textContent]))]))"""
IMAGES_LOADED_JS = """(() => { const imgs = [...document.querySelectorAll('figure img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); })()"""


def config(url_24kg, url_failing):
    return f"""
[storage]
path = "@DB@"

[log]
level = "info"

[alerting]
evaluate_every = "1s"

[[source]]
name = "24kg"
kind = "24kg"
url = "{url_24kg}"
interval = "1s"
timeout = "2s"

[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{os.path.abspath(NBKR)}"
interval = "1h"

[[source]]
name = "backup"
kind = "24kg"
url = "{url_failing}"
interval = "1s"
timeout = "2s"

[[alert]]
name = "{RULE}"
currency = "USD"
source = "24kg"
above = 80
"""


def backfill(db_path, before_ms):
    """Writes daily change points for 24kg over 400 days, all before before_ms (the first
    scrape), ending with EARLIER 30 hours ago. A seeded random walk, so the charts have
    a shape."""
    now_ms = int(time.time() * 1000)
    last = now_ms - 30 * 3600 * 1000
    if last >= before_ms:
        raise AssertionError("the first scrape is too old to backfill before it")
    walk = random.Random(4)
    con = sqlite3.connect(db_path)
    try:
        (source_id,) = con.execute("SELECT id FROM source WHERE name = '24kg'").fetchone()
        for currency, final in EARLIER.items():
            places = len(final.split(".")[1])
            value = float(final)
            rows = [(last, final)]
            for day in range(1, 400):
                value *= 1 + walk.uniform(-0.004, 0.004)
                rows.append((last - day * 86400 * 1000, f"{value:.{places}f}"))
            con.executemany(
                "INSERT INTO rate_change (source_id, currency, since, rate, rate_num, observed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(source_id, currency, t, r, float(r), t) for t, r in rows])
        con.commit()
    finally:
        con.close()


def first_scrape_ms(db_path):
    con = sqlite3.connect(db_path)
    try:
        (ms,) = con.execute("SELECT min(since) FROM rate_change").fetchone()
        return ms
    finally:
        con.close()


def latest_24kg(d):
    status, body = d.get_json("/api/v1/latest?source=24kg")
    return {k: v["rate"] for k, v in body["rates"].items()} if status == 200 else None


def rule_state(d, name):
    status, body = d.get_json("/api/v1/alerts")
    for a in body.get("alerts", []):
        if a["name"] == name:
            return a["state"]
    return None


@unittest.skipUnless(chromium.available(), "chromium is not installed (scripts/install-deps)")
class PageInChromium(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(ARTIFACTS, exist_ok=True)
        cls.fixture = FixtureServer()
        cls.fixture.__enter__()
        cls.daemon = None
        cls.browser = None
        try:
            cls.fixture.set_page("/english/", seed_page())
            cls.fixture.set_mode("/english/", "ok")
            cls.fixture.set_mode("/down/", "404")
            cls.daemon = Daemon(config(cls.fixture.url("/english/"), cls.fixture.url("/down/")))
            d = cls.daemon.start()
            wait_for(lambda: latest_24kg(d) == {"USD": 87.45, "EUR": 99.56, "RUB": 1.10},
                     what="the first scrape of the fixture")
            d.stop()
            backfill(d.db, first_scrape_ms(d.db))
            d.start()
            wait_for(lambda: rule_state(d, RULE) == "firing", what=f"{RULE} to fire")
            cls.origin = f"http://127.0.0.1:{d.port}"
            cls.browser = chromium.Chromium().__enter__()
            cls.devtools = cls.browser.devtools
            for domain in ("Page", "Runtime", "Log", "Network"):
                cls.devtools.call(f"{domain}.enable")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.__exit__(None, None, None)
            cls.browser.cleanup()
            cls.browser = None
        if cls.daemon:
            cls.daemon.stop()
            cls.daemon = None
        cls.fixture.__exit__(None, None, None)

    # -- helpers ------------------------------------------------------------------------

    def open(self, path="/", width=1280, height=900, mobile=False, dark=False):
        """Loads path at a viewport size and colour scheme, with fresh event lists, and
        checks it loaded cleanly from this origin only."""
        d = self.devtools
        d.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
               deviceScaleFactor=2 if mobile else 1, mobile=mobile)
        d.call("Emulation.setEmulatedMedia", media="", features=[
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}])
        d.events.clear()
        d.call("Page.navigate", url=self.origin + path)
        d.wait_event("Page.loadEventFired")
        # The page's script has run once the times read in local time.
        d.poll("document.querySelector('time.instant') !== null && "
               "[...document.querySelectorAll('time.instant')].every(t => t.title !== '')",
               what="the page script to localise times")
        self.assert_clean()

    def assert_clean(self):
        """No console errors so far, and every request went to the daemon."""
        d = self.devtools
        d.drain(0.3)
        self.assertEqual(d.problems(), [])
        for url in d.requested_urls():
            self.assertTrue(url.startswith(self.origin + "/"), f"outside request: {url}")

    def screenshot(self, name, width, mobile=False, dark=False, path="/"):
        """Saves the whole page at width as test-artifacts/page-NAME.png."""
        d = self.devtools
        self.open(path, width=width, height=844 if mobile else 900, mobile=mobile, dark=dark)
        full = d.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        d.call("Emulation.setDeviceMetricsOverride", width=width, height=full,
               deviceScaleFactor=2 if mobile else 1, mobile=mobile)
        d.poll(IMAGES_LOADED_JS, what="the charts to load")
        self.assert_clean()
        data = d.call("Page.captureScreenshot", format="png")["data"]
        out = os.path.join(ARTIFACTS, f"page-{name}.png")
        with open(out, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot: {out}", file=sys.stderr)
        return out

    # -- tests, in name order -------------------------------------------------------------

    def test_1_desktop(self):
        d = self.devtools
        self.open()
        rates = d.evaluate(RATES_JS)
        self.assertEqual(rates["24kg"], RATES_24KG)  # 1.10 stays 1.10
        self.assertEqual(rates["nbkr"], RATES_NBKR)
        self.assertEqual(rates["backup"], {})

        change = "document.querySelector('section.source tr[data-currency={}] td.change').textContent"
        self.assertIn("▲", d.evaluate(change.format("USD")))
        self.assertIn("+0.35", d.evaluate(change.format("USD")))
        self.assertIn("▼", d.evaluate(change.format("EUR")))
        self.assertIn("-0.24", d.evaluate(change.format("EUR")))
        self.assertIn("=", d.evaluate(change.format("RUB")))

        badges = d.evaluate("Object.fromEntries([...document.querySelectorAll('section.source')]"
                            ".map(s => [s.querySelector('h2').textContent, "
                            "s.querySelector('.badge').textContent]))")
        self.assertEqual(badges, {"24kg": "✓ Up to date", "nbkr": "✓ Up to date",
                                  "backup": "⚠ Stale"})
        self.assertIn(RULE, d.evaluate("document.querySelector('section.alerts').textContent"))
        self.assertEqual(d.evaluate("document.documentElement.lang"), "en")
        self.assertEqual(d.evaluate("getComputedStyle(document.body).backgroundColor"),
                         "rgb(246, 248, 250)")
        self.screenshot("desktop-light", 1280)

    def test_2_desktop_dark(self):
        self.open(dark=True)
        self.assertEqual(self.devtools.evaluate("getComputedStyle(document.body).backgroundColor"),
                         "rgb(13, 17, 23)")
        self.screenshot("desktop-dark", 1280, dark=True)

    def test_3_phone(self):
        d = self.devtools
        self.open(width=390, height=844, mobile=True)
        self.assertEqual(d.evaluate("window.innerWidth"), 390)
        # Nothing sticks out sideways at phone width.
        self.assertLessEqual(d.evaluate("document.documentElement.scrollWidth"), 390)
        self.assertEqual(d.evaluate(RATES_JS)["24kg"], RATES_24KG)
        self.screenshot("phone-light", 390, mobile=True)
        self.screenshot("phone-dark", 390, mobile=True, dark=True)

    def test_4_languages(self):
        d = self.devtools
        for lang, title, stale in (("ru", "Курсы валют к сому", "Устарело"),
                                   ("ky", "Сомго карата валюта курстары", "Эскирген")):
            with self.subTest(lang=lang):
                self.open(f"/?lang={lang}", width=390, height=844, mobile=True)
                self.assertEqual(d.evaluate("document.documentElement.lang"), lang)
                self.assertEqual(d.evaluate("document.title"), title)
                self.assertIn(stale, d.evaluate("document.body.textContent"))
                self.assertEqual(d.evaluate(RATES_JS)["24kg"], RATES_24KG)
                self.assertIn(f"lang={lang}",
                              d.evaluate("document.querySelector('figure img').src"))
                # Times read in the page's language or in digits, never in English.
                times = d.evaluate("[...document.querySelectorAll('time.instant')]"
                                   ".map(t => t.textContent)")
                self.assertTrue(times)
                for t in times:
                    self.assertNotRegex(t, "[A-Za-z]")
        self.screenshot("phone-ky", 390, mobile=True, path="/?lang=ky")

    def test_5_chart_period_switch(self):
        d = self.devtools
        self.open()
        d.evaluate("window.kept = 'same document'")
        d.evaluate("document.querySelector('figure a[data-range=\"1y\"]').click()")
        src = d.poll("(() => { const i = document.querySelector('figure img');"
                     " return i.complete && i.naturalWidth > 0 && i.src.includes('range=1y')"
                     " ? i.src : null; })()", what="the 1-year chart")
        self.assertEqual(src, self.origin + "/chart/USD.svg?range=1y&source=24kg")
        self.assertEqual(d.evaluate("location.href"), self.origin + "/")
        self.assertEqual(d.evaluate("window.kept"), "same document")
        self.assertEqual(d.evaluate("document.querySelector('figure a[aria-current]').dataset.range"),
                         "1y")
        self.assert_clean()

    def test_6_refresh_in_place(self):
        d = self.devtools
        self.open()
        d.evaluate("window.kept = 'same document'")
        usd = "document.querySelector('section.source tr[data-currency=USD] td.rate').textContent"

        # Coming back to the window refreshes at once.
        self.fixture.set_page("/english/", seed_page(usd="87.50"))
        wait_for(lambda: latest_24kg(self.daemon)["USD"] == 87.50, what="the daemon to read 87.50")
        d.evaluate("window.dispatchEvent(new Event('focus'))")
        d.poll(f"{usd} === '87.50'", what="87.50 on the page after focus")
        self.assertIn("+0.40", d.evaluate(usd.replace("td.rate", "td.change")))

        # And so does the timer, every minute, without help.
        self.fixture.set_page("/english/", seed_page(usd="87.55"))
        wait_for(lambda: latest_24kg(self.daemon)["USD"] == 87.55, what="the daemon to read 87.55")
        d.poll(f"{usd} === '87.55'", timeout=90, interval=1, what="87.55 on the page by the timer")

        self.assertEqual(d.evaluate("window.kept"), "same document")
        self.assertEqual(len([e for e in d.events if e["method"] == "Page.frameNavigated"]), 1)
        # Each refresh asked for the page itself, as HTML.
        refreshes = [e for e in d.events if e["method"] == "Network.requestWillBeSent"
                     and e["params"]["type"] == "Fetch"]
        self.assertGreaterEqual(len(refreshes), 2)
        for e in refreshes:
            self.assertEqual(e["params"]["request"]["url"], self.origin + "/")
            self.assertEqual(e["params"]["request"]["headers"].get("Accept"), "text/html")
        self.assert_clean()

    def test_7_csp_blocks_injected_script(self):
        """The console check sees what the CSP blocks: an injected inline script."""
        d = self.devtools
        self.open()
        d.evaluate("(() => { const s = document.createElement('script');"
                   " s.textContent = 'window.injected = true'; document.body.append(s); })()")
        d.drain(0.5)
        self.assertIsNone(d.evaluate("window.injected"))
        problems = d.problems()
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("Content Security Policy", problems[0])

    def test_9_only_loopback_on_the_wire(self):
        browser = type(self).browser
        browser.__exit__(None, None, None)
        seen = browser.net_log_urls()
        self.assertTrue(any(u.startswith(self.origin + "/chart/") for u in seen), sorted(seen))
        for item in seen:
            if item.startswith("host:"):
                host = item[len("host:"):]
                self.assertIn(host.split("//")[-1].split(":")[0], ("127.0.0.1",), item)
            elif not item.startswith(("data:", "about:")):
                self.assertTrue(item.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")), item)
        browser.cleanup()
        type(self).browser = None


if __name__ == "__main__":
    unittest.main()
