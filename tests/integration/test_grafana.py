"""Grafana's JSON datasource (simpod-json-datasource) against the real daemon.

The daemon scrapes a fixture page whose USD rate the test moves (firing and resolving an
alert rule on the way) and NBKR's daily.xml from a file. Then every /grafana endpoint is
called with the request bodies Grafana sends, and every request and response body is
validated against simPod's OpenAPI document (tests/data/integrations/
simpod-grafana-json-datasource.openapi.yaml, verbatim from simPod/GrafanaJsonDatasource
openapi.yaml@5624c447) by validate_openapi.js with Debian's node-ajv and node-js-yaml.

The shipped contrib/grafana files are checked too: the dashboards are well-formed, their
datasource references match the provisioning files, every simpod target names a metric
/grafana/metrics offers and answers with data, and every Infinity URL answers.

node, node-ajv and node-js-yaml come from scripts/install-deps; without them this test
fails rather than skips.
"""

import calendar
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import events, set_usd, toml_table, wait_state  # noqa: E402
from daemon import TEST_DATA, Daemon, wait_for  # noqa: E402
from fixture import FixtureServer  # noqa: E402
from test_daemon import NBKR, seed_page  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CONTRIB = os.path.join(REPO, "contrib", "grafana")
SPEC = os.path.join(TEST_DATA, "integrations", "simpod-grafana-json-datasource.openapi.yaml")
VALIDATOR = os.path.join(HERE, "validate_openapi.js")
NODE = "/usr/bin/node"
# Debian installs node modules here; a node from elsewhere does not search it by itself.
NODE_PATH = "/usr/share/nodejs"
RULE = "usd-above-88"
SIMPOD = "simpod-json-datasource"
INFINITY = "yesoreyeram-infinity-datasource"


def node(*args, stdin=None):
    """Runs validate_openapi.js; returns (exit code, stdout, stderr)."""
    if not os.access(NODE, os.X_OK):
        raise AssertionError(f"{NODE} is missing: run scripts/install-deps (nodejs, node-ajv, "
                             "node-js-yaml)")
    env = dict(os.environ)
    env["NODE_PATH"] = NODE_PATH + (":" + env["NODE_PATH"] if env.get("NODE_PATH") else "")
    r = subprocess.run([NODE, VALIDATOR, *args], input=stdin, capture_output=True, text=True,
                       env=env, timeout=60)
    if "Cannot find module" in r.stderr:
        raise AssertionError("node-ajv or node-js-yaml is missing: run scripts/install-deps\n"
                             + r.stderr)
    return r.returncode, r.stdout, r.stderr


def load_yaml(path):
    """A YAML file, parsed by js-yaml (Python's standard library has no YAML parser)."""
    code, out, err = node("yaml2json", path)
    if code != 0:
        raise AssertionError(f"{path}: not valid YAML: {err}")
    return json.loads(out)


def iso_ms(ms):
    """Unix milliseconds as Grafana writes range times: 2025-06-10T00:00:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_ms(text):
    """An RFC 3339 UTC time with whole seconds ("2025-06-10T00:00:00Z") as Unix ms."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1000


# The documented steps /grafana/query picks from, in ms; beyond them the last doubles.
STEPS = [s * 1000 for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                            10800, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000)]


def expected_buckets(changes, from_ms, to_ms, interval_ms, max_points):
    """What /grafana/query should answer for a series with change points changes
    [(ms, rate)]: the smallest listed step of at least max(1s, intervalMs, range /
    maxDataPoints) whose buckets, aligned to multiples of the step, number at most
    maxDataPoints; one point per bucket at its start with the rate in force at its end,
    buckets before the first change left out."""
    want = max(1000, interval_ms, -(-(to_ms - from_ms) // max_points))

    def buckets(step):
        start = from_ms // step * step
        return max(1, -(-(to_ms - start) // step))

    step = next((s for s in STEPS if s >= want and buckets(s) <= max_points), None)
    if step is None:
        step = STEPS[-1]
        while step < want or buckets(step) > max_points:
            step *= 2
    out = []
    start = from_ms // step * step
    for k in range(buckets(step)):
        s = start + k * step
        end = to_ms if to_ms - s <= step else s + step - 1
        in_force = [rate for t, rate in changes if t <= end]
        if in_force:
            out.append([in_force[-1], s])
    return out


def daemon_config(source_url):
    text = toml_table("[storage]", {"path": "@DB@"})
    text += toml_table("[log]", {"level": "debug"})
    text += toml_table("[alerting]", {"evaluate_every": "1s"})
    text += toml_table("[[source]]", {"name": "24kg", "kind": "24kg", "url": source_url,
                                      "interval": "1s", "timeout": "2s"})
    text += toml_table("[[source]]", {"name": "nbkr", "kind": "nbkr",
                                      "url": "file://" + os.path.abspath(NBKR), "interval": "1h"})
    text += toml_table("[[alert]]", {"name": RULE, "currency": "USD", "source": "24kg",
                                     "above": 88.0})
    return text


class Grafana(unittest.TestCase):
    """One daemon for the class, with USD at 24kg moved 87.45 -> 88.50 -> 87.10 (the
    rule fires and resolves) and NBKR's rates."""

    @classmethod
    def setUpClass(cls):
        cls.fixture = FixtureServer()
        cls.fixture.__enter__()
        try:
            cls.path = "/english/grafana/"
            cls.fixture.set_page(cls.path, seed_page(usd="87.45"))
            cls.d = Daemon(daemon_config(cls.fixture.url(cls.path))).start()
        except BaseException:
            cls.fixture.__exit__(None, None, None)
            raise
        try:
            cls._make_history()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _make_history(cls):
        d = cls.d
        cls.start_ms = int(time.time() * 1000) - 1000

        def usd_is(rate):
            return wait_for(lambda: d.get_json("/api/v1/latest?source=24kg")[1]["rates"]
                            .get("USD", {}).get("rate") == float(rate), what=f"USD at {rate}")

        usd_is("87.45")
        wait_for(lambda: d.get_json("/api/v1/latest?source=nbkr")[1]["rates"], what="NBKR rates")
        set_usd(cls.fixture, cls.path, "88.50")
        usd_is("88.50")
        wait_state(d, RULE, "firing")
        set_usd(cls.fixture, cls.path, "87.10")
        usd_is("87.10")
        wait_for(lambda: any(e["kind"] == "resolved" for e in events(d, RULE)),
                 what="the resolved event")
        cls.end_ms = int(time.time() * 1000) + 1000

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.fixture.__exit__(None, None, None)

    # -- helpers ----------------------------------------------------------------------

    def post(self, endpoint, body, status=200):
        """POSTs body (an object, or text sent as is) to /grafana/endpoint; returns the
        parsed answer after checking its status and content type."""
        r = self.d.request(f"/grafana/{endpoint}", method="POST", body=body,
                           headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, status, r.text)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"), r.headers)
        return r.json()

    def query_body(self, targets, max_points=1000, interval_ms=1000, **extra):
        """A /query body as Grafana sends it for a panel over the test's time range."""
        body = {
            "app": "dashboard", "requestId": "Q1", "timezone": "browser", "panelId": 1,
            "dashboardUID": "somrated-rates",
            "range": {"from": iso_ms(self.start_ms), "to": iso_ms(self.end_ms),
                      "raw": {"from": "now-5m", "to": "now"}},
            "rangeRaw": {"from": "now-5m", "to": "now"},
            "interval": f"{interval_ms}ms", "intervalMs": interval_ms,
            "maxDataPoints": max_points,
            "targets": targets,
            "scopedVars": {"__interval": {"text": "1s", "value": "1s"},
                           "__interval_ms": {"text": "1000", "value": 1000}},
            "startTime": self.end_ms,
            "filters": [],
        }
        body.update(extra)
        return body

    def validate(self, cases):
        """Validates [{name, path, method, status, request?, response}] against the spec;
        fails with every error found."""
        code, out, err = node("validate", SPEC, stdin=json.dumps(cases))
        self.assertIn(code, (0, 1), err)
        results = json.loads(out)
        self.assertEqual(len(results), len(cases))
        failed = [r for r in results if not r["ok"]]
        self.assertEqual(failed, [], json.dumps(failed, indent=1))
        return results

    # -- the endpoints against the OpenAPI schema -------------------------------------

    def test_every_endpoint_matches_the_openapi_schema(self):
        cases = []

        def call(name, path, body, method="POST"):
            if method == "GET":
                r = self.d.request("/grafana")
                self.assertEqual(r.status, 200, r.text)
                response = r.json()
            else:
                response = self.post(path.lstrip("/"), body)
            case = {"name": name, "path": path, "method": method, "status": 200,
                    "response": response}
            if body is not None:
                case["request"] = body
            cases.append(case)
            return response

        call("health", "/", None, method="GET")
        metrics = call("metrics, empty", "/metrics", {})
        call("metrics, builder", "/metrics",
             {"metric": "USD@nbkr", "payload": {"aggregation": "last"}})
        values = [m["value"] for m in metrics]
        for v in ("USD@24kg", "EUR@24kg", "RUB@24kg", "USD@nbkr", "EUR@nbkr", "spread:USD@24kg",
                  "alerts", "health"):
            self.assertIn(v, values)
        for name in ("aggregation", "format", "against", "source", "rule"):
            options = call(f"payload options {name}", "/metric-payload-options",
                           {"metric": "spread:USD@24kg", "payload": {}, "name": name})
            self.assertTrue(options, name)

        series = call("query, time series", "/query", self.query_body(
            [{"refId": "A", "datasource": {"type": SIMPOD, "uid": "somrated"},
              "editorMode": "code", "target": "USD@24kg", "payload": {}},
             {"refId": "B", "target": "spread:USD@24kg", "payload": {"against": "nbkr"}},
             {"refId": "C", "target": "USD@24kg", "payload": {"aggregation": "ohlc"}}]))
        self.assertEqual([s["target"] for s in series], ["USD@24kg", "spread:USD@24kg"]
                         + ["USD@24kg"] * 4)
        for s in series:
            self.assertTrue(s["datapoints"], s)
            times = [p[1] for p in s["datapoints"]]
            self.assertEqual(times, sorted(times))
        tables = call("query, tables", "/query", self.query_body(
            [{"refId": "A", "target": "(USD|EUR)@(24kg|nbkr)", "payload": {"format": "table"}},
             {"refId": "B", "target": "health"}]))
        self.assertEqual([t["type"] for t in tables], ["table", "table"])
        self.assertEqual(len(tables[1]["rows"]), 2)
        annotations = call("query, annotations", "/query", self.query_body(
            [{"refId": "Anno", "target": "alerts", "payload": {"rule": RULE}}]))
        kinds = [row[2] for row in annotations[0]["rows"]]
        self.assertIn(f"{RULE} firing", kinds)
        self.assertIn(f"{RULE} resolved", kinds)
        call("query, scopedVars and filters", "/query", self.query_body(
            [{"refId": "A", "target": "$cur@*"}],
            scopedVars={"cur": {"selected": False, "text": "USD", "value": "USD"}},
            filters=[{"key": "source", "operator": "!=", "value": "nbkr"}]))
        call("query, adhocFilters", "/query", self.query_body(
            [{"refId": "A", "target": "*@*"}],
            adhocFilters=[{"key": "currency", "operator": "=", "value": "USD"}]))

        for target in ("currencies", "currencies@nbkr", "sources", "metrics", "rules"):
            items = call(f"variable {target}", "/variable", {
                "payload": {"target": target},
                "range": {"from": iso_ms(self.start_ms), "to": iso_ms(self.end_ms),
                          "raw": {"from": "now-5m", "to": "now"}}})
            self.assertTrue(items, target)
        keys = call("tag keys", "/tag-keys", {})
        self.assertEqual([k["text"] for k in keys], ["source", "currency"])
        sources = call("tag values source", "/tag-values", {"key": "source"})
        self.assertEqual([v["text"] for v in sources], ["24kg", "nbkr"])
        call("tag values currency", "/tag-values", {"key": "currency", "filters": [
            {"key": "source", "operator": "=", "value": "24kg"}]})

        results = self.validate(cases)
        # Everything the document describes was checked.
        checked = {r["name"]: r["checked"] for r in results}
        self.assertEqual(checked["query, time series"], ["request", "response"])
        self.assertEqual(checked["variable currencies"], ["request", "response"])
        self.assertEqual(checked["metrics, empty"], ["request", "response"])

    def test_the_validator_rejects_what_the_schema_forbids(self):
        # The check is real: a datapoint with the time first as a string, a table without
        # columns, a variable item without text.
        results = json.loads(node("validate", SPEC, stdin=json.dumps([
            {"name": "bad series", "path": "/query", "method": "POST", "status": 200,
             "response": [{"target": "USD", "datapoints": [["x", 1]]}]},
            {"name": "bad table", "path": "/query", "method": "POST", "status": 200,
             "response": [{"type": "table", "rows": []}]},
            {"name": "bad variable", "path": "/variable", "method": "POST", "status": 200,
             "response": [{"__text": "USD", "__value": "USD"}]},
            {"name": "no such path", "path": "/annotations", "method": "POST", "status": 200,
             "response": []},
        ]))[1])
        self.assertEqual([r["ok"] for r in results], [False] * 4)

    # -- behaviour Grafana relies on -------------------------------------------------

    def test_max_data_points_downsamples_in_the_store(self):
        raw = self.d.get_json(f"/api/v1/history?currency=USD&source=24kg"
                              f"&from={self.start_ms // 1000}&to={self.end_ms // 1000 + 1}")[1]
        changes = [(parse_ms(p["time"]), p["rate"]) for p in raw["points"]]
        self.assertEqual([rate for _, rate in changes], [87.45, 88.50, 87.10])
        # Fewer points than change points in the range: the store's buckets, not raw rows.
        for max_points in (2, 3):
            body = self.query_body([{"refId": "A", "target": "USD@24kg"}], max_points=max_points)
            r = self.d.request("/grafana/query", method="POST", body=body)
            self.assertEqual(r.status, 200, r.text)
            points = r.json()[0]["datapoints"]
            self.assertLessEqual(len(points), max_points)
            self.assertEqual(points, expected_buckets(changes, self.start_ms, self.end_ms, 1000,
                                                      max_points))
            # The values are the published digits, not 87.1.
            self.assertRegex(r.text, r"\[87\.10,\d+\]\]")

    def test_errors_name_the_field_and_cors_preflight(self):
        err = self.post("query", {"targets": [], "range": {"from": "now-6h", "to": "now"}},
                        status=400)
        self.assertEqual(err["error"]["code"], "invalid_field")
        self.assertTrue(err["error"]["message"].startswith("range.from:"), err)
        err = self.post("query", "{not json", status=400)
        self.assertEqual(err["error"]["code"], "invalid_body")
        r = self.d.request("/grafana/query", method="OPTIONS", headers={
            "Origin": "http://grafana.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "*")
        self.assertIn("POST", r.headers["Access-Control-Allow-Methods"])
        self.assertIn("content-type", r.headers["Access-Control-Allow-Headers"].lower())

    # -- the shipped contrib/grafana files --------------------------------------------

    def provisioned(self):
        """{datasource type: [(uid, url, jsonData)]} from the provisioning files."""
        out = {}
        directory = os.path.join(CONTRIB, "provisioning", "datasources")
        for name in sorted(os.listdir(directory)):
            doc = load_yaml(os.path.join(directory, name))
            self.assertEqual(doc["apiVersion"], 1, name)
            for ds in doc["datasources"]:
                out.setdefault(ds["type"], []).append((ds["uid"], ds.get("url"),
                                                       ds.get("jsonData", {})))
        return out

    def dashboard(self, name):
        with open(os.path.join(CONTRIB, "dashboards", name), encoding="utf-8") as f:
            dash = json.load(f)
        for key in ("uid", "title", "schemaVersion", "panels", "time"):
            self.assertIn(key, dash, name)
        self.assertIsInstance(dash["schemaVersion"], int)
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        occupied = set()
        ids = set()
        for p in dash["panels"]:
            self.assertNotIn(p["id"], ids, f"{name}: panel id {p['id']} twice")
            ids.add(p["id"])
            g = p["gridPos"]
            self.assertTrue(g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"])
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                     for y in range(g["y"], g["y"] + g["h"])}
            self.assertFalse(cells & occupied, f"{name}: panel {p['title']!r} overlaps another")
            occupied |= cells
        return dash, variables

    def datasource_uid(self, ref, variables, plugin, provisioned):
        """The uid ref selects (resolving a datasource variable), checked against the
        provisioned datasources of plugin."""
        self.assertEqual(ref["type"], plugin)
        uid = ref["uid"]
        m = re.fullmatch(r"\$\{?(\w+)\}?", uid)
        if m:
            var = variables[m.group(1)]
            self.assertEqual(var["type"], "datasource")
            self.assertEqual(var["query"], plugin)
            uid = var["current"]["value"]
        self.assertIn(uid, [u for u, _, _ in provisioned[plugin]])
        return uid

    def test_simpod_dashboard_targets_are_offered_metrics_with_data(self):
        provisioned = self.provisioned()
        self.assertEqual(provisioned[SIMPOD][0][1], "http://127.0.0.1:8080/grafana")
        dash, variables = self.dashboard("somrated.json")
        offered = {m["value"] for m in self.post("metrics", {})}
        currency = variables["currency"]
        values = {v["text"] for v in self.post("variable", {"payload": {
            "target": currency["query"]["query"]}})}
        self.assertIn(currency["current"]["value"], values)

        def resolve(target):
            return re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)]["current"]["value"],
                          target)

        def run(target, interval_ms=1000, max_points=1000):
            payload = target.get("payload") or "{}"
            payload = json.loads(payload) if isinstance(payload, str) else payload
            name = resolve(target["target"])
            self.assertIn(name, offered, f"{target['target']} is not a metric /metrics offers")
            answer = self.post("query", self.query_body(
                [{"refId": target["refId"], "target": name, "payload": payload}],
                max_points=max_points, interval_ms=interval_ms))
            self.assertTrue(answer, name)
            for item in answer:
                self.assertTrue(item.get("datapoints") or item.get("rows"), (name, item))
            return answer

        targets = 0
        for p in dash["panels"]:
            self.datasource_uid(p["datasource"], variables, SIMPOD, provisioned)
            interval = {"1d": 86400000}.get(p.get("interval"), 1000)
            for t in p["targets"]:
                self.datasource_uid(t["datasource"], variables, SIMPOD, provisioned)
                run(t, interval, p.get("maxDataPoints", 1000))
                targets += 1
        self.assertGreaterEqual(targets, 6)
        annotations = [a for a in dash["annotations"]["list"] if "target" in a]
        self.assertEqual(len(annotations), 1)
        self.datasource_uid(annotations[0]["datasource"], variables, SIMPOD, provisioned)
        table = run(annotations[0]["target"])[0]
        self.assertEqual([c["text"] for c in table["columns"]][:3], ["time", "timeEnd", "title"])

    def test_infinity_dashboard_urls_answer(self):
        provisioned = self.provisioned()
        dash, variables = self.dashboard("somrated-infinity.json")
        base = variables["somrated"]["current"]["value"]
        allowed = provisioned[INFINITY][0][2]["allowedHosts"]
        self.assertTrue(any(base.startswith(h) for h in allowed), (base, allowed))
        macros = {"${__from:date:seconds}": str(self.start_ms // 1000),
                  "${__to:date:seconds}": str(self.end_ms // 1000 + 1),
                  "${somrated}": f"http://127.0.0.1:{self.d.port}",
                  "${currency}": variables["currency"]["current"]["value"]}
        urls = 0
        for p in dash["panels"]:
            self.datasource_uid(p["datasource"], variables, INFINITY, provisioned)
            for t in p["targets"]:
                self.datasource_uid(t["datasource"], variables, INFINITY, provisioned)
                url = t["url"]
                for k, v in macros.items():
                    url = url.replace(k, v)
                self.assertNotIn("$", url)
                parts = urllib.parse.urlsplit(url)
                r = self.d.get(f"{parts.path}?{parts.query}")
                self.assertEqual(r.status, 200, (url, r.text))
                selectors = [c["selector"] for c in t["columns"]]
                if t["type"] == "csv":
                    lines = r.text.splitlines()
                    header = lines[0].split(",")
                    self.assertEqual(header, ["time", "currency", "source", "rate"])
                    self.assertGreater(len(lines), 1)
                    for s in selectors:
                        self.assertIn(s, header)
                else:
                    rows = r.json()[t["root_selector"]]
                    self.assertTrue(rows)
                    for s in selectors:
                        self.assertIn(s, rows[0])
                urls += 1
        self.assertGreaterEqual(urls, 3)


if __name__ == "__main__":
    unittest.main()
