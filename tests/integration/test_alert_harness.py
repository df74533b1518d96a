"""Self-test of the alert test harness: alertmanager.py against the real Alertmanager,
receiver.Receiver as Alertmanager's webhook, and alerting.py's config text and
fingerprint. Needs no somrated alert support; 127.0.0.1 only."""

import datetime
import os
import sys
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alertmanager  # noqa: E402
from alerting import ZERO_TIME, alert_config, fingerprint, parse_time, webhook  # noqa: E402
from daemon import check_local_config  # noqa: E402
from receiver import Receiver  # noqa: E402


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HelpersTest(unittest.TestCase):
    def test_fingerprint_matches_alertmanager_captures(self):
        # Labels and fingerprint of the webhook body Alertmanager 0.25 sent
        # (INTEGRATIONS.md 3.1).
        labels = {"alertname": "FxRateMoved", "pair": "EURUSD", "severity": "warning",
                  "source": "fxrated"}
        self.assertEqual(fingerprint(labels), "587e76018b335179")
        self.assertNotEqual(fingerprint({"a": "b"}), fingerprint({"a": "c"}))
        self.assertRegex(fingerprint({}), r"^[0-9a-f]{16}$")

    def test_config_text_is_valid_toml_with_local_urls_only(self):
        text = alert_config(
            "http://127.0.0.1:1/english/",
            notifiers=[webhook("hook", "http://127.0.0.1:2/hook",
                               headers={"Authorization": "Bearer abc", "X-Odd Name": "v"}),
                       {"name": "run", "kind": "exec", "command": ["/bin/true", "--x"]}],
            alerts=[{"name": "usd-above-90", "currency": "USD", "notify": ["hook"],
                     "above": 90.0, "for": "0s", "labels": {"severity": "warning"}},
                    {"name": "p", "currency": "USD", "change_pct": "2.5", "window": "24h"}],
            token="tok")
        check_local_config(text)
        parsed = tomllib.loads(text.replace("@DB@", "/tmp/x.db"))
        self.assertEqual(parsed["server"]["token"], "tok")
        self.assertEqual(parsed["alerting"]["evaluate_every"], "1s")
        self.assertEqual(parsed["source"][0]["interval"], "1s")
        self.assertEqual(parsed["notifier"][0]["headers"],
                         {"Authorization": "Bearer abc", "X-Odd Name": "v"})
        self.assertEqual(parsed["notifier"][1]["command"], ["/bin/true", "--x"])
        self.assertEqual(parsed["alert"][0]["above"], 90.0)
        self.assertEqual(parsed["alert"][0]["for"], "0s")
        self.assertEqual(parsed["alert"][0]["labels"], {"severity": "warning"})
        self.assertEqual(parsed["alert"][1]["change_pct"], "2.5")
        self.assertNotIn("token", tomllib.loads(alert_config("file:///x"))
                         .get("server", {}))

    def test_parse_time(self):
        utc = datetime.timezone.utc
        self.assertEqual(parse_time("2026-11-28T02:40:18Z"),
                         datetime.datetime(2026, 11, 28, 2, 40, 18, tzinfo=utc))
        self.assertEqual(parse_time("2026-11-28T02:40:18.5Z").microsecond, 500000)
        self.assertEqual(parse_time("2026-11-28T08:40:18+06:00"), parse_time("2026-11-28T02:40:18Z"))
        self.assertEqual(parse_time(ZERO_TIME).year, 1)
        with self.assertRaises(ValueError):
            parse_time("2026-11-28 02:40")


@unittest.skipUnless(alertmanager.available(), "prometheus-alertmanager is not installed")
class AlertmanagerTest(unittest.TestCase):
    def test_alerts_are_listed_filtered_and_gone_once_resolved(self):
        with alertmanager.Alertmanager() as am:
            self.assertEqual(am.request("/-/ready")[0], 200)
            self.assertTrue(am.url.startswith("http://127.0.0.1:"))
            # Clustering is off: the only port it listens on is the loopback web port.
            self.assertEqual(alertmanager._proc_listening_port(am.proc.pid), str(am.port))

            now = datetime.datetime.now(datetime.timezone.utc)
            labels = {"alertname": "usd-above-90", "currency": "USD", "source": "24kg",
                      "condition": "above"}
            am.post_alerts([{"labels": labels, "annotations": {"summary": "USD 91 > 90"},
                             "startsAt": iso(now - datetime.timedelta(seconds=5)),
                             "endsAt": iso(now + datetime.timedelta(minutes=4)),
                             "generatorURL": "http://127.0.0.1:1/api/v1/alerts"}])
            (alert,) = am.alerts(filters=['alertname="usd-above-90"'])
            self.assertEqual(alert["labels"], labels)
            self.assertEqual(alert["status"]["state"], "active")
            self.assertEqual(alert["fingerprint"], fingerprint(labels))
            self.assertEqual(alert["annotations"]["summary"], "USD 91 > 90")
            self.assertEqual(am.alerts(filters=['alertname="usd-above-90"', 'currency="EUR"']), [])
            self.assertEqual(len(am.alerts(active=True)), 1)

            # Bad input is refused (post_alerts raises on it).
            status, _ = am.request("/api/v2/alerts", "POST", [{"labels": {}}])
            self.assertEqual(status, 400)
            with self.assertRaises(AssertionError):
                am.post_alerts([{"labels": {}}])

            # The same alert with endsAt in the past: resolved, no longer listed.
            am.post_alerts([{"labels": labels,
                             "startsAt": iso(now - datetime.timedelta(seconds=5)),
                             "endsAt": iso(now - datetime.timedelta(seconds=1))}])
            self.assertEqual(am.alerts(filters=['alertname="usd-above-90"']), [])
            self.assertEqual(am.stop(), 0)

    def test_webhook_route_reaches_a_receiver(self):
        with Receiver() as r, alertmanager.Alertmanager(webhook_url=r.url("/am")) as am:
            labels = {"alertname": "harness", "currency": "USD"}
            now = datetime.datetime.now(datetime.timezone.utc)
            am.post_alerts([{"labels": labels, "startsAt": iso(now)}])
            firing = r.wait_for(lambda reqs: [q for q in reqs if q.json
                                              and q.json["status"] == "firing"],
                                timeout=30, what="Alertmanager's firing webhook")[0]
            body = firing.json
            self.assertEqual(firing.path, "/am")
            self.assertTrue(firing.header("User-Agent", "").startswith("Alertmanager/"))
            self.assertEqual(body["version"], "4")
            self.assertEqual(body["alerts"][0]["labels"], labels)
            self.assertEqual(body["alerts"][0]["endsAt"], ZERO_TIME)
            self.assertEqual(body["alerts"][0]["fingerprint"], fingerprint(labels))

            am.post_alerts([{"labels": labels, "startsAt": iso(now),
                             "endsAt": iso(now + datetime.timedelta(milliseconds=1))}])
            resolved = r.wait_for(lambda reqs: [q for q in reqs if q.json
                                                and q.json["status"] == "resolved"],
                                  timeout=30, what="Alertmanager's resolved webhook")[0]
            self.assertNotEqual(resolved.json["alerts"][0]["endsAt"], ZERO_TIME)


if __name__ == "__main__":
    unittest.main()
