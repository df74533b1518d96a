"""Alert rules end to end: the real somrated scrapes a fixture page whose USD rate the
test moves, evaluates its rules, and notifies a webhook receiver on 127.0.0.1.

Every wait is on a condition with a deadline; "nothing more arrives" is checked after a
bounded number of scrape cycles (alerting.quiet_period), never after a fixed sleep.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import (ZERO_TIME, FixtureCase, alert_config, events, fingerprint,  # noqa: E402
                      parse_time, quiet_period, rule, wait_state, webhook)
from daemon import Daemon, wait_for  # noqa: E402

RULE = "usd-above-90"


def above_90(**extra):
    return {"name": RULE, "currency": "USD", "source": "24kg", "notify": ["hook"],
            "above": 90.0, **extra}


class Alerts(FixtureCase):
    def daemon(self, cfg, workdir=None):
        """A started daemon, stopped (and checked) when the test ends."""
        d = Daemon(cfg, workdir=workdir).start()
        self.addCleanup(d.stop)
        return d

    def assert_webhook(self, req, status, labels):
        """req is an Alertmanager v4 webhook message with one alert in status, labelled
        labels, whose X-Somrated-Event-Id header equals the body's eventId; returns the
        alert."""
        self.assertEqual(req.method, "POST")
        self.assertTrue(req.header("Content-Type", "").startswith("application/json"), req)
        body = req.json
        self.assertIsInstance(body, dict, req)
        for key in ("version", "groupKey", "status", "receiver", "groupLabels", "commonLabels",
                    "commonAnnotations", "externalURL", "alerts", "eventId"):
            self.assertIn(key, body)
        self.assertEqual(body["version"], "4")
        self.assertEqual(body["status"], status)
        self.assertEqual(len(body["alerts"]), 1)
        alert = body["alerts"][0]
        self.assertEqual(alert["status"], status)
        self.assertEqual(alert["labels"], labels)
        self.assertEqual(alert["labels"]["alertname"], labels["alertname"])
        self.assertEqual(alert["fingerprint"], fingerprint(labels))
        parse_time(alert["startsAt"])
        if status == "firing":
            self.assertEqual(alert["endsAt"], ZERO_TIME)
        else:
            self.assertNotEqual(alert["endsAt"], ZERO_TIME)
            self.assertGreaterEqual(parse_time(alert["endsAt"]), parse_time(alert["startsAt"]))
        event_id = self.assert_event_id(req)
        self.assertEqual(body["eventId"], event_id)
        return alert

    # -- firing and resolving ---------------------------------------------------------

    def test_webhook_gets_one_firing_and_one_resolved_message(self):
        hook = self.receiver()
        cfg = alert_config(self.source_url(),
                           notifiers=[webhook("hook", hook.url("/hook"),
                                              headers={"Authorization": "Bearer abc"})],
                           alerts=[above_90(labels={"severity": "warning"})])
        labels = {"alertname": RULE, "currency": "USD", "source": "24kg", "condition": "above",
                  "severity": "warning"}
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        a = wait_for(lambda: (a := rule(d, RULE))["evaluated_at"] and a, what="a first evaluation")
        self.assertEqual(a["origin"], "config")
        self.assertIn(a["state"], ("inactive", "resolved"))
        self.assertEqual(a["value"], "87.45")
        self.assertEqual(a["rule"]["above"], "90")
        self.assertEqual(a["rule"]["currency"], "USD")
        self.assertEqual(a["rule"]["notify"], ["hook"])
        self.assertEqual(hook.requests(), [])

        self.set_usd("91.20")
        firing = hook.wait_count(1, what="the firing message")[0]
        alert = self.assert_webhook(firing, "firing", labels)
        self.assertEqual(firing.path, "/hook")
        self.assertEqual(firing.header("Authorization"), "Bearer abc")
        a = wait_state(d, RULE, "firing")
        self.assertEqual(a["value"], "91.20")
        self.assertIsNotNone(a["started_at"])
        self.assertEqual(parse_time(a["started_at"]), parse_time(alert["startsAt"]))

        # The condition keeps holding for several scrapes: no message per scrape.
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=4)
        self.assertEqual(len(hook.requests()), 1, hook.requests())
        self.assertEqual(rule(d, RULE)["state"], "firing")

        self.set_usd("87.45")
        resolved = hook.wait_count(2, what="the resolved message")[1]
        ended = self.assert_webhook(resolved, "resolved", labels)
        self.assertEqual(ended["startsAt"], alert["startsAt"])
        self.assertNotEqual(resolved.json["eventId"], firing.json["eventId"])
        wait_state(d, RULE, "resolved")

        quiet_period(d, self.fixture, self.path, [RULE], scrapes=3)
        self.assertEqual(len(hook.requests()), 2, hook.requests())
        evs = events(d, RULE)
        self.assertEqual([e["kind"] for e in evs], ["firing", "resolved"])
        self.assertEqual([e["event_id"] for e in evs],
                         [firing.json["eventId"], resolved.json["eventId"]])
        self.assertEqual(rule(d, RULE)["last_event"]["event_id"], resolved.json["eventId"])

    def test_hysteresis_holds_until_resolve_below(self):
        hook = self.receiver()
        cfg = alert_config(self.source_url(), notifiers=[webhook("hook", hook.url("/hook"))],
                           alerts=[above_90(resolve_below="89.5")])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        self.set_usd("91.20")
        hook.wait_count(1, what="the firing message")
        wait_state(d, RULE, "firing")

        # Below the threshold but above resolve_below: still firing, nothing sent.
        self.set_usd("89.80")
        wait_for(lambda: rule(d, RULE)["value"] == "89.80", what="the rule to see 89.80")
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=3)
        self.assertEqual(rule(d, RULE)["state"], "firing")
        self.assertEqual(len(hook.requests()), 1)

        self.set_usd("89.40")
        resolved = hook.wait_count(2, what="the resolved message")[1]
        self.assertEqual(resolved.json["status"], "resolved")
        wait_state(d, RULE, "resolved")

    def test_condition_shorter_than_for_sends_nothing(self):
        hook = self.receiver()
        cfg = alert_config(
            self.source_url(), notifiers=[webhook("hook", hook.url("/hook"))],
            alerts=[{"name": "slow", "currency": "USD", "notify": ["hook"], "above": 90,
                     "for": "1h"},
                    {"name": "quick", "currency": "USD", "notify": ["hook"], "above": 90,
                     "for": "2s"}])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        self.set_usd("91.20")
        # The same condition held for longer than "quick"'s `for` fires it ...
        firing = hook.wait_count(1, what="quick's firing message")[0]
        self.assertEqual(firing.json["alerts"][0]["labels"]["alertname"], "quick")
        # ... while "slow" waits in pending.
        slow = wait_state(d, "slow", "pending")
        self.assertEqual(slow["value"], "91.20")
        self.assertIsNone(slow["last_notified"])

        self.set_usd("87.45")
        hook.wait_for(lambda reqs: any((q.json or {}).get("status") == "resolved" for q in reqs),
                      what="quick's resolved message")
        wait_state(d, "slow", "inactive")
        quiet_period(d, self.fixture, self.path, ["slow", "quick"], scrapes=3)
        self.assertEqual([q.json["alerts"][0]["labels"]["alertname"] for q in hook.requests()],
                         ["quick", "quick"])
        self.assertEqual(events(d, "slow"), [])
        self.assertEqual([e["kind"] for e in events(d, "quick")], ["firing", "resolved"])

    def test_stale_rule_fires_on_failures_and_resolves_when_the_source_heals(self):
        hook = self.receiver()
        cfg = alert_config(self.source_url(), notifiers=[webhook("hook", hook.url("/hook"))],
                           alerts=[{"name": "24kg-stale", "source": "24kg", "notify": ["hook"],
                                    "stale": "3s"}])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        wait_for(lambda: rule(d, "24kg-stale")["evaluated_at"], what="a first evaluation")
        self.assertIn(rule(d, "24kg-stale")["state"], ("inactive", "resolved"))
        self.assertEqual(hook.requests(), [])

        self.fixture.set_mode(self.path, "500")
        firing = hook.wait_count(1, timeout=60, what="the stale firing message")[0]
        labels = {"alertname": "24kg-stale", "source": "24kg", "condition": "stale"}
        self.assert_webhook(firing, "firing", labels)
        self.assertGreater(d.source("24kg")["consecutive_failures"], 0)
        wait_state(d, "24kg-stale", "firing")

        self.fixture.set_mode(self.path, "ok")
        resolved = hook.wait_count(2, timeout=60, what="the stale resolved message")[1]
        self.assert_webhook(resolved, "resolved", labels)
        self.assertEqual(d.source("24kg")["consecutive_failures"], 0)
        wait_state(d, "24kg-stale", "resolved")

    # -- restarts ---------------------------------------------------------------------

    def test_restart_while_firing_does_not_send_again(self):
        hook = self.receiver()
        cfg = alert_config(self.source_url(), notifiers=[webhook("hook", hook.url("/hook"))],
                           alerts=[above_90()])
        first = self.daemon(cfg)
        self.wait_first_scrape(first)
        self.set_usd("91.20")
        firing = hook.wait_count(1, what="the firing message")[0]
        started_at = wait_state(first, RULE, "firing")["started_at"]
        wait_for(lambda: (e := events(first, RULE)) and e[0]["deliveries"][0]["status"] == "delivered",
                 what="the firing delivery to be recorded")
        self.assertEqual(first.stop(), 0)

        second = self.daemon(cfg, workdir=first.dir)
        self.assertEqual(second.db, first.db)
        quiet_period(second, self.fixture, self.path, [RULE], scrapes=3)
        a = rule(second, RULE)
        self.assertEqual(a["state"], "firing")
        self.assertEqual(a["started_at"], started_at)
        self.assertEqual(len(hook.requests()), 1, hook.requests())
        self.assertEqual([e["kind"] for e in events(second, RULE)], ["firing"])

        # The episode that began before the restart ends after it.
        self.set_usd("87.45")
        resolved = hook.wait_count(2, what="the resolved message")[1]
        self.assertEqual(resolved.json["status"], "resolved")
        self.assertEqual(resolved.json["alerts"][0]["startsAt"],
                         firing.json["alerts"][0]["startsAt"])
        self.assertEqual(resolved.json["alerts"][0]["fingerprint"],
                         firing.json["alerts"][0]["fingerprint"])
        quiet_period(second, self.fixture, self.path, [RULE], scrapes=2)
        self.assertEqual(len(hook.requests()), 2, hook.requests())


if __name__ == "__main__":
    unittest.main()
