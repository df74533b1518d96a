"""somrated's alertmanager notifier against a real Prometheus Alertmanager (0.25, Debian's
prometheus-alertmanager) on 127.0.0.1: our alert shows in its API with our labels while
it fires, and is resolved there when it resolves here."""

import datetime
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alertmanager  # noqa: E402
from alerting import (FixtureCase, alert_config, events, fingerprint, parse_time,  # noqa: E402
                      quiet_period, wait_state)
from daemon import Daemon, wait_for  # noqa: E402

RULE = "usd-above-90"


@unittest.skipUnless(alertmanager.available(), "prometheus-alertmanager is not installed "
                     "(scripts/install-deps installs it)")
class WithAlertmanager(FixtureCase):
    def test_alert_is_listed_while_firing_and_resolved_after(self):
        am = alertmanager.Alertmanager().start()
        self.addCleanup(am.stop)
        cfg = alert_config(
            self.source_url(),
            notifiers=[{"name": "am", "kind": "alertmanager", "url": am.url, "timeout": "5s",
                        "resend": "1m"}],
            alerts=[{"name": RULE, "currency": "USD", "source": "24kg", "notify": ["am"],
                     "above": 90, "labels": {"severity": "warning"}}])
        labels = {"alertname": RULE, "currency": "USD", "source": "24kg", "condition": "above",
                  "severity": "warning"}
        matcher = [f'alertname="{RULE}"']
        d = Daemon(cfg).start()
        self.addCleanup(d.stop)
        self.wait_first_scrape(d)
        self.assertEqual(am.alerts(filters=matcher), [])

        self.set_usd("91.20")
        wait_state(d, RULE, "firing")
        (alert,) = wait_for(lambda: am.alerts(filters=matcher), timeout=30,
                            what="Alertmanager to list our alert")
        self.assertEqual(alert["labels"], labels)
        self.assertEqual(alert["fingerprint"], fingerprint(labels))
        self.assertEqual(alert["status"]["state"], "active")
        firing = events(d, RULE)[0]
        self.assertEqual(parse_time(alert["startsAt"]), parse_time(firing["starts_at"]))
        # Firing alerts are sent with endsAt = now + 4 * resend, well in the future.
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertGreater(parse_time(alert["endsAt"]), now + datetime.timedelta(minutes=2))
        # Its filters see our labels.
        self.assertEqual(len(am.alerts(filters=matcher + ['currency="USD"', 'source="24kg"'])), 1)
        self.assertEqual(am.alerts(filters=matcher + ['currency="EUR"']), [])
        wait_for(lambda: events(d, RULE)[0]["deliveries"][0]["status"] == "delivered",
                 what="the firing delivery to be recorded")

        self.set_usd("87.45")
        wait_state(d, RULE, "resolved")
        wait_for(lambda: self.resolved_in(am, matcher), timeout=30,
                 what="Alertmanager to see the alert resolved")
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=2)
        evs = events(d, RULE)
        self.assertEqual([e["kind"] for e in evs], ["firing", "resolved"])
        for e in evs:
            self.assertEqual(e["deliveries"][0]["notifier"], "am")
            self.assertEqual(e["deliveries"][0]["status"], "delivered")
            self.assertEqual(e["deliveries"][0]["attempts"][-1]["http_status"], 200)
        self.assertTrue(self.resolved_in(am, matcher))

    def test_firing_alerts_are_reposted_and_a_resolved_one_stays_resolved(self):
        # resend = 1s: each post says endsAt = now + 4s, so without re-posts Alertmanager
        # would resolve the alert by itself within seconds.
        am = alertmanager.Alertmanager().start()
        self.addCleanup(am.stop)
        cfg = alert_config(
            self.source_url(),
            notifiers=[{"name": "am", "kind": "alertmanager", "url": am.url, "timeout": "5s",
                        "resend": "1s"}],
            alerts=[{"name": RULE, "currency": "USD", "source": "24kg", "notify": ["am"],
                     "above": 90}])
        matcher = [f'alertname="{RULE}"']
        d = Daemon(cfg).start()
        self.addCleanup(d.stop)
        self.wait_first_scrape(d)

        self.set_usd("91.20")
        wait_state(d, RULE, "firing")
        (first,) = wait_for(lambda: am.alerts(filters=matcher), timeout=30,
                            what="Alertmanager to list our alert")
        first_end = parse_time(first["endsAt"])
        # Past the first endsAt, the alert is still active, with a later endsAt.
        wait_for(lambda: datetime.datetime.now(datetime.timezone.utc) >
                 first_end + datetime.timedelta(seconds=2), timeout=30,
                 what="the first endsAt to pass")
        (later,) = am.alerts(filters=matcher)
        self.assertEqual(later["status"]["state"], "active")
        self.assertGreater(parse_time(later["endsAt"]), first_end)
        self.assertEqual(later["startsAt"], first["startsAt"])

        self.set_usd("87.45")
        wait_state(d, RULE, "resolved")
        wait_for(lambda: self.resolved_in(am, matcher), timeout=30,
                 what="Alertmanager to see the alert resolved")
        # Several resend periods later, no re-post has brought it back.
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=4)
        self.assertTrue(self.resolved_in(am, matcher))
        self.assertEqual([e["kind"] for e in events(d, RULE)], ["firing", "resolved"])

    @staticmethod
    def resolved_in(am, matcher):
        """True when Alertmanager holds no active alert for matcher: gone from its list
        (0.25 lists no resolved alerts), or listed with endsAt in the past."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return all(parse_time(a["endsAt"]) <= now for a in am.alerts(filters=matcher))


if __name__ == "__main__":
    unittest.main()
