"""GET /metrics against Prometheus' own tools (Debian's prometheus, 2.42): after real
traffic `promtool check metrics` finds nothing to complain about, and a real Prometheus
on 127.0.0.1, scraping the daemon every second, answers queries for our series.

Prometheus runs with its own config and storage in a temp dir and listens on an
ephemeral loopback port (found through /proc, like alertmanager.py does)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import FixtureCase, alert_config, wait_state, webhook  # noqa: E402
from daemon import Daemon, _proc_listening_port, wait_for  # noqa: E402

PROMETHEUS = os.environ.get("SOMRATED_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("SOMRATED_PROMTOOL", "/usr/bin/promtool")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RULE = "usd-below-90"

# Loopback only: an empty ProxyHandler keeps *_proxy variables from rerouting requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# One sample line of the text format: name, optional {labels}, value (no timestamps).
SAMPLE_RE = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text):
    """{(name, frozenset of (label, value)): value text} for every sample line; raises
    AssertionError on a line that is neither a sample nor a HELP/TYPE comment."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError(f"not a sample line: {line!r}")
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        if key in samples:
            raise AssertionError(f"series written twice: {line!r}")
        samples[key] = m.group(3)
    return samples


def value(samples, name, **labels):
    """The value text of name{labels}, or None."""
    return samples.get((name, frozenset(labels.items())))


def available():
    """True when Debian's prometheus (which brings promtool) is installed."""
    return os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)


class Prometheus:
    """A Prometheus server scraping one target every second, for a with-block."""

    def __init__(self, target, start_timeout=60.0):
        self.target = target
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.dir = None
        self._log = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-prom-")
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: somrated\n"
                    "    static_configs:\n"
                    f"      - targets: [{json.dumps(self.target)}]\n")
        storage = os.path.join(self.dir, "data")
        os.mkdir(storage)
        self._log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        env["NO_PROXY"] = env["no_proxy"] = "*"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={storage}",
             "--web.listen-address=127.0.0.1:0", "--log.level=debug"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            cwd=self.dir)
        try:
            self.port = int(self._wait(self._listening, "Prometheus to listen"))
            self._wait(self._ready, "Prometheus GET /-/ready to answer 200")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, predicate, what):
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Prometheus exited with {self.proc.returncode}:\n{self.log()}")
            found = predicate()
            if found:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {self.start_timeout}s waiting for {what}; "
                                     f"log:\n{self.log()}")
            time.sleep(0.1)

    def _listening(self):
        try:
            return _proc_listening_port(self.proc.pid)
        except OSError:
            return None

    def _ready(self):
        try:
            return self.request("/-/ready")[0] == 200
        except OSError:
            return False

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def request(self, path, timeout=10):
        """(status, body bytes); HTTP errors are results."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        try:
            with _opener.open(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    def query(self, expr):
        """The result vector of an instant query: [{"metric": {...}, "value": [t, "v"]}]."""
        status, body = self.request("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if status != 200:
            raise AssertionError(f"query {expr!r} answered {status}: {body[:300]!r}")
        answer = json.loads(body)
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            raise AssertionError(f"query {expr!r} answered {answer!r}")
        return answer["data"]["result"]

    def target_health(self):
        """(health, lastError) of our one target, or None before it is listed."""
        status, body = self.request("/api/v1/targets")
        if status != 200:
            return None
        for t in json.loads(body)["data"]["activeTargets"]:
            if t["labels"].get("instance") == self.target:
                return t["health"], t["lastError"]
        return None


@unittest.skipUnless(available(), "prometheus is not installed (scripts/install-deps installs it)")
class PrometheusTest(FixtureCase):
    def start_daemon(self):
        """A daemon scraping the fixture every second, with a rule that fires at once (USD
        87.45 is below 90) and a webhook that takes its notification."""
        hook = self.receiver()
        cfg = alert_config(self.source_url(),
                           notifiers=[webhook("hook", hook.url("/hook"))],
                           alerts=[{"name": RULE, "currency": "USD", "source": "24kg",
                                    "notify": ["hook"], "below": 90}])
        d = Daemon(cfg).start()
        self.addCleanup(d.stop)
        self.wait_first_scrape(d)
        wait_state(d, RULE, "firing")
        hook.wait_count(1, path="/hook", what="the firing notification")
        return d

    def metrics(self, d):
        r = d.get("/metrics")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.headers["Content-Type"], CONTENT_TYPE)
        self.assertTrue(r.text.endswith("\n"))
        return r.text

    def test_promtool_finds_nothing_wrong_after_real_traffic(self):
        d = self.start_daemon()
        # A failed scrape, then good ones again.
        self.fixture.set_mode(self.path, "503")
        wait_for(lambda: value(parse_samples(self.metrics(d)), "somrated_scrapes_total",
                               source="24kg", outcome="error") not in (None, "0"),
                 what="a failed scrape to be counted")
        self.fixture.set_mode(self.path, "ok")
        wait_for(lambda: value(parse_samples(self.metrics(d)), "somrated_source_up",
                               source="24kg") == "1", what="the source to recover")
        before = parse_samples(self.metrics(d))
        # Requests of every kind: reads, errors, HEAD, a preflight, an unknown path.
        self.assertEqual(d.get("/api/v1/latest").status, 200)
        self.assertEqual(d.get("/api/v1/latest?source=24kg&symbols=USD").status, 200)
        self.assertEqual(d.get("/api/v1/history?currency=USD").status, 200)
        self.assertEqual(d.get("/api/v1/sources").status, 200)
        self.assertEqual(d.get("/api/v1/alerts").status, 200)
        self.assertEqual(d.get("/api/v1/latest?bogus=1").status, 400)
        self.assertEqual(d.get("/no/such/path").status, 404)
        self.assertEqual(d.get("/healthz").status, 200)
        self.assertEqual(d.request("/metrics", method="HEAD").status, 200)
        self.assertEqual(d.request("/api/v1/latest", method="OPTIONS",
                                   headers={"Origin": "http://example.test",
                                            "Access-Control-Request-Method": "GET"}).status, 204)
        text = self.metrics(d)

        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual((check.returncode, check.stdout.decode(), check.stderr.decode()),
                         (0, "", ""), f"promtool check metrics on:\n{text}")

        s = parse_samples(text)
        self.assertEqual(value(s, "somrated_rate", currency="USD", source="24kg"), "87.45")
        self.assertEqual(value(s, "somrated_source_up", source="24kg"), "1")
        self.assertEqual(value(s, "somrated_alert_state", alert=RULE, state="firing"), "1")
        self.assertEqual(value(s, "somrated_alert_state", alert=RULE, state="inactive"), "0")
        self.assertGreaterEqual(int(value(s, "somrated_notifications_total", notifier="hook",
                                          outcome="delivered")), 1)
        self.assertGreaterEqual(int(value(s, "somrated_scrapes_total", source="24kg",
                                          outcome="ok")), 1)
        self.assertGreaterEqual(int(value(s, "somrated_scrapes_total", source="24kg",
                                          outcome="error")), 1)
        for route, code in (("/api/v1/latest", "200"), ("/api/v1/latest", "400"),
                            ("/api/v1/history", "200"), ("other", "404"), ("/metrics", "200"),
                            ("/healthz", "200")):
            with self.subTest(route=route, code=code):
                self.assertGreaterEqual(int(value(s, "somrated_http_requests_total",
                                                  route=route, code=code) or 0), 1)
        # Exactly this test's two good reads were added to what was counted before them.
        self.assertEqual(int(value(s, "somrated_http_requests_total", route="/api/v1/latest",
                                   code="200")),
                         int(value(before, "somrated_http_requests_total",
                                   route="/api/v1/latest", code="200")) + 2)
        # The duration histogram counts the same requests, over every status.
        answered = sum(int(v) for (name, labels), v in s.items()
                       if name == "somrated_http_requests_total"
                       and ("route", "/api/v1/latest") in labels)
        self.assertEqual(value(s, "somrated_http_request_duration_seconds_count",
                               route="/api/v1/latest"), str(answered))
        self.assertEqual(value(s, "somrated_http_request_duration_seconds_bucket",
                               route="/api/v1/latest", le="+Inf"), str(answered))

    def test_a_real_prometheus_scrapes_our_rates(self):
        d = self.start_daemon()
        target = f"127.0.0.1:{d.port}"
        with Prometheus(target) as prom:
            wait_for(lambda: prom.target_health() == ("up", ""), timeout=60,
                     what="Prometheus to scrape the daemon successfully")
            result = wait_for(lambda: prom.query('somrated_rate{currency="USD"}'), timeout=60,
                              what="Prometheus to hold somrated_rate")
            self.assertEqual(len(result), 1, result)
            self.assertEqual(result[0]["metric"],
                             {"__name__": "somrated_rate", "currency": "USD", "source": "24kg",
                              "job": "somrated", "instance": target})
            self.assertEqual(result[0]["value"][1], "87.45")
            rates = {(r["metric"]["currency"], r["metric"]["source"]): r["value"][1]
                     for r in prom.query("somrated_rate")}
            self.assertEqual(rates, {("USD", "24kg"): "87.45", ("EUR", "24kg"): "99.56",
                                     ("RUB", "24kg"): "1.1"})
            # The in-process families arrive too: Prometheus' own scrapes are counted.
            scrapes = wait_for(lambda: prom.query(
                'somrated_http_requests_total{route="/metrics",code="200"} > 1'), timeout=60,
                what="Prometheus to see its own scrapes counted")
            self.assertEqual(len(scrapes), 1, scrapes)
            firing = prom.query(f'somrated_alert_state{{alert="{RULE}",state="firing"}}')
            self.assertEqual([r["value"][1] for r in firing], ["1"])
            up = prom.query('up{job="somrated"}')
            self.assertEqual([r["value"][1] for r in up], ["1"])
            self.assertEqual(prom.stop(), 0, prom.log())


if __name__ == "__main__":
    unittest.main()
