"""The alert rules API of the real somrated: listing, bearer-token writes, validation,
create/delete, persistence across a restart, and test notifications. Receivers and the
scraped page are on 127.0.0.1."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import (TOKEN, FixtureCase, alert_config, auth, events, rule,  # noqa: E402
                      rules, wait_state, webhook)
from daemon import Daemon, wait_for  # noqa: E402

CONFIG_RULE = "usd-above-90"
CONDITIONS = ("above", "below", "change_pct", "spread_pct", "stale")


class AlertApi(FixtureCase):
    def start(self, token=TOKEN, hook=None, workdir=None):
        """A daemon with one config rule (usd-above-90, for 15m) notifying hook, and
        [server] token when token is not None."""
        hook = hook or self.receiver()
        cfg = alert_config(self.source_url(), token=token,
                           notifiers=[webhook("hook", hook.url("/hook"))],
                           alerts=[{"name": CONFIG_RULE, "currency": "USD", "source": "24kg",
                                    "notify": ["hook"], "above": 90, "for": "15m",
                                    "labels": {"severity": "warning"}}])
        d = Daemon(cfg, workdir=workdir).start()
        self.addCleanup(d.stop)
        self.wait_first_scrape(d)
        return d, hook

    def post(self, d, body, token=TOKEN, path="/api/v1/alerts"):
        return d.request(path, method="POST", body=body,
                         headers=auth(token) if token is not None else {})

    def delete(self, d, name, token=TOKEN):
        return d.request(f"/api/v1/alerts/{name}", method="DELETE",
                         headers=auth(token) if token is not None else {})

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r.text)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"), r.headers)
        err = r.json()["error"]
        self.assertEqual(err["code"], code, err)
        return err

    # -- reading ----------------------------------------------------------------------

    def test_list_shows_config_rules_with_their_state(self):
        d, _ = self.start(token=None)
        a = wait_for(lambda: (a := rule(d, CONFIG_RULE))["evaluated_at"] and a,
                     what="a first evaluation")
        self.assertEqual(a["origin"], "config")
        self.assertIn(a["state"], ("inactive", "resolved"))
        self.assertEqual(a["value"], "87.45")
        self.assertIsNone(a["started_at"])
        self.assertIsNone(a["last_notified"])
        self.assertIsNone(a["last_event"])
        r = a["rule"]
        self.assertEqual((r["currency"], r["source"], r["notify"]), ("USD", "24kg", ["hook"]))
        self.assertEqual(r["above"], "90")
        self.assertEqual(r["for"], "15m")
        self.assertEqual(r["labels"], {"severity": "warning"})

        # Above the threshold it is pending: `for` is 15 minutes.
        self.set_usd("91.20")
        a = wait_state(d, CONFIG_RULE, "pending")
        self.assertEqual(a["value"], "91.20")
        self.assertIsNotNone(a["since"])

    # -- who may write ----------------------------------------------------------------

    def test_writes_without_a_configured_token_are_forbidden(self):
        d, hook = self.start(token=None)
        new = {"name": "api-rule", "currency": "USD", "below": "80"}
        for r in (self.post(d, new, token=None), self.post(d, new, token="anything"),
                  self.delete(d, CONFIG_RULE, token=None),
                  self.post(d, {}, token="anything", path=f"/api/v1/alerts/{CONFIG_RULE}/test")):
            with self.subTest(status=r.status):
                err = self.assert_error(r, 403, "writes_disabled")
                self.assertTrue(err["message"])
        self.assertEqual(set(rules(d)), {CONFIG_RULE})
        self.assertEqual(hook.requests(), [])

    def test_writes_need_the_bearer_token(self):
        d, hook = self.start()
        new = {"name": "api-rule", "currency": "USD", "below": "80"}
        attempts = {
            "no header": d.request("/api/v1/alerts", method="POST", body=new),
            "wrong token": self.post(d, new, token="wrong"),
            "prefix of the token": self.post(d, new, token=TOKEN[:-1]),
            "token plus more": self.post(d, new, token=TOKEN + "x"),
            "basic auth": d.request("/api/v1/alerts", method="POST", body=new,
                                    headers={"Authorization": "Basic czNjcmV0OnRva2Vu"}),
            "delete without": self.delete(d, CONFIG_RULE, token=None),
            "test without": self.post(d, {}, token=None,
                                      path=f"/api/v1/alerts/{CONFIG_RULE}/test"),
        }
        for what, r in attempts.items():
            with self.subTest(what):
                self.assert_error(r, 401, "unauthorized")
                self.assertTrue(r.headers.get("WWW-Authenticate", "").startswith("Bearer"),
                                r.headers)
        self.assertEqual(set(rules(d)), {CONFIG_RULE})
        self.assertEqual(hook.requests(), [])
        # Reading needs no token.
        self.assertEqual(d.get("/api/v1/alerts").status, 200)
        self.assertEqual(d.get("/api/v1/alerts/events").status, 200)

    # -- validation -------------------------------------------------------------------

    def test_bad_rules_are_refused_naming_the_field(self):
        d, _ = self.start()
        base = {"name": "bad", "currency": "USD", "notify": ["hook"]}
        cases = [
            ("unknown currency", {**base, "currency": "XYZ", "above": "90"}, ("currency",)),
            ("no condition", base, CONDITIONS + ("condition",)),
            ("two conditions", {**base, "above": "90", "below": "80"},
             CONDITIONS + ("condition",)),
            ("negative window", {**base, "change_pct": "2", "window": "-1h"}, ("window",)),
            ("invalid window", {**base, "change_pct": "2", "window": "soon"}, ("window",)),
            ("unknown notifier", {**base, "above": "90", "notify": ["nope"]}, ("notify",)),
            ("negative threshold", {**base, "above": "-5"}, ("above",)),
            ("bad name", {**base, "name": "no spaces!", "above": "90"}, ("name",)),
            ("reserved label", {**base, "above": "90", "labels": {"alertname": "x"}}, ("labels",)),
            ("unknown source", {**base, "above": "90", "source": "nowhere"}, ("source",)),
        ]
        for what, body, fields in cases:
            with self.subTest(what):
                err = self.assert_error(self.post(d, body), 400, "invalid_rule")
                self.assertTrue(err["message"])
                if what == "no condition":
                    # The field may be the body as a whole; the message then names the keys.
                    self.assertTrue(err.get("field") in fields
                                    or any(c in err["message"] for c in CONDITIONS), err)
                else:
                    self.assertIn(err.get("field"), fields, err)
        r = self.post(d, b"{not json")
        self.assertEqual(r.status, 400, r.text)
        self.assertEqual(set(rules(d)), {CONFIG_RULE})

    # -- create, list, delete ---------------------------------------------------------

    def test_create_list_and_delete(self):
        d, _ = self.start()
        new = {"name": "usd-below-80", "currency": "USD", "below": "80", "notify": ["hook"],
               "labels": {"team": "fx"}}
        r = self.post(d, new)
        self.assertEqual(r.status, 201, r.text)
        created = r.json()["alert"]
        self.assertEqual(created["name"], "usd-below-80")
        self.assertEqual(created["origin"], "api")
        self.assertEqual(created["rule"]["below"], "80")
        self.assertEqual(created["rule"]["source"], "24kg")  # the first source, by default
        self.assertEqual(created["rule"]["labels"], {"team": "fx"})

        listed = wait_for(lambda: (a := rules(d).get("usd-below-80")) and a["evaluated_at"] and a,
                          what="the new rule to be evaluated")
        self.assertEqual(listed["origin"], "api")
        self.assertEqual(listed["rule"], created["rule"])
        self.assertIn(listed["state"], ("inactive", "resolved"))
        self.assertEqual(rules(d)[CONFIG_RULE]["origin"], "config")

        self.assert_error(self.post(d, new), 409, "exists")
        self.assert_error(self.post(d, {**new, "name": CONFIG_RULE}), 409, "exists")

        r = self.delete(d, "usd-below-80")
        self.assertEqual(r.status, 204, r.text)
        self.assertEqual(r.body, b"")
        self.assertNotIn("usd-below-80", rules(d))
        self.assert_error(self.delete(d, "usd-below-80"), 404, "not_found")
        self.assert_error(self.delete(d, CONFIG_RULE), 409, "read_only")
        self.assertIn(CONFIG_RULE, rules(d))

    def test_api_rule_survives_a_restart_and_fires(self):
        d, hook = self.start()
        r = self.post(d, {"name": "usd-above-80", "currency": "USD", "above": "80",
                          "notify": ["hook"]})
        self.assertEqual(r.status, 201, r.text)
        # USD is 87.45: the new rule fires.
        firing = hook.wait_count(1, what="the API rule's firing message")[0]
        self.assertEqual(firing.json["alerts"][0]["labels"]["alertname"], "usd-above-80")
        wait_for(lambda: events(d, "usd-above-80")[0]["deliveries"][0]["status"] == "delivered",
                 what="the firing delivery to be recorded")
        self.assertEqual(d.stop(), 0)

        again, _ = self.start(hook=hook, workdir=d.dir)
        a = rule(again, "usd-above-80")
        self.assertEqual(a["origin"], "api")
        self.assertEqual(a["rule"]["above"], "80")
        self.assertEqual(a["state"], "firing")
        self.assert_error(self.delete(again, CONFIG_RULE), 409, "read_only")

        # Deleting a firing rule resolves it for the receivers.
        self.assertEqual(self.delete(again, "usd-above-80").status, 204)
        resolved = hook.wait_count(2, what="the resolved message of the deleted rule")[1]
        self.assertEqual(resolved.json["status"], "resolved")
        self.assertEqual(resolved.json["alerts"][0]["labels"]["alertname"], "usd-above-80")
        self.assertEqual(resolved.json["alerts"][0]["startsAt"],
                         firing.json["alerts"][0]["startsAt"])
        self.assertNotIn("usd-above-80", rules(again))
        self.assertEqual(len(hook.requests()), 2)

    # -- test notifications -----------------------------------------------------------

    def test_test_notification_reaches_the_receivers_labelled_test(self):
        d, hook = self.start()
        r = self.post(d, {}, path=f"/api/v1/alerts/{CONFIG_RULE}/test")
        self.assertEqual(r.status, 202, r.text)
        body = r.json()
        self.assertEqual(body["notifiers"], ["hook"])
        req = hook.wait_count(1, what="the test message")[0]
        self.assertEqual(self.assert_event_id(req), body["event_id"])
        self.assertEqual(req.json["eventId"], body["event_id"])
        labels = req.json["alerts"][0]["labels"]
        self.assertEqual(labels["test"], "true")
        self.assertEqual(labels["alertname"], CONFIG_RULE)
        self.assertEqual(labels["severity"], "warning")

        (event,) = events(d, CONFIG_RULE)
        self.assertEqual(event["kind"], "test")
        self.assertEqual(event["event_id"], body["event_id"])
        wait_for(lambda: events(d, CONFIG_RULE)[0]["deliveries"][0]["status"] == "delivered",
                 what="the test delivery to be recorded")
        # A test changes no state.
        a = rule(d, CONFIG_RULE)
        self.assertIn(a["state"], ("inactive", "resolved"))
        self.assertIsNone(a["last_notified"])
        self.assert_error(self.post(d, {}, path="/api/v1/alerts/nope/test"), 404, "not_found")
        self.assertEqual(len(hook.requests()), 1)


if __name__ == "__main__":
    unittest.main()
