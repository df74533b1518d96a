"""Notification delivery end to end: retries while a receiver is down, a crash in the
middle of a backlog, the events API, and every notifier kind (webhook, slack, telegram,
ntfy, exec) against receivers on 127.0.0.1.

Retries back off from 5s doubling (with jitter), so the outage test takes a minute or
two; every wait is on a condition with a generous deadline.
"""

import collections
import json
import os
import shutil
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alerting import (FixtureCase, alert_config, events, parse_time, quiet_period,  # noqa: E402
                      rule, wait_state, webhook)
from daemon import Daemon, wait_for  # noqa: E402

RULE = "usd-above-90"

EXEC_SCRIPT = """#!{python}
# Writes what the daemon gave it (stdin, SOMRATED_* environment, argv) to one JSON file
# per run in the directory named by its first argument.
import json, os, sys, tempfile, time
out = sys.argv[1]
data = {{"stdin": sys.stdin.read(), "argv": sys.argv[1:],
        "env": {{k: v for k, v in os.environ.items() if k.startswith("SOMRATED_")}}}}
fd, tmp = tempfile.mkstemp(dir=out, prefix=".run-")
with os.fdopen(fd, "w") as f:
    json.dump(data, f)
os.rename(tmp, os.path.join(out, "%020d-%d.json" % (time.time_ns(), os.getpid())))
"""


def above_90(notify):
    return {"name": RULE, "currency": "USD", "source": "24kg", "notify": list(notify),
            "above": 90}


def delivered_ids(reqs):
    """Event ids of the requests the receiver answered 2xx, in arrival order."""
    return [q.header("X-Somrated-Event-Id") for q in reqs
            if q.status is not None and 200 <= q.status < 300]


class Delivery(FixtureCase):
    def daemon(self, cfg):
        d = Daemon(cfg).start()
        self.addCleanup(d.stop)
        return d

    def flip(self, d, usd, state):
        """Moves USD to usd and waits until the rule is in state."""
        self.set_usd(usd)
        return wait_state(d, RULE, state)

    # -- retries and a crash ----------------------------------------------------------

    def test_outage_retries_then_a_crash_mid_backlog_loses_and_repeats_nothing(self):
        hook = self.receiver()
        hook.down()
        cfg = alert_config(self.source_url(),
                           notifiers=[webhook("hook", hook.url("/hook"), timeout="1s",
                                              give_up="1h")],
                           alerts=[above_90(["hook"])])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)

        # The receiver refuses connections: the firing event is attempted and kept.
        self.flip(d, "91.20", "firing")
        head = wait_for(lambda: (e := events(d, RULE)) and e[0]["deliveries"][0]["attempts"]
                        and e[0], timeout=30, what="a first, refused, attempt")
        attempt = head["deliveries"][0]["attempts"][0]
        self.assertEqual(attempt["outcome"], "retry")
        self.assertTrue(attempt["error"])
        self.assertEqual(head["deliveries"][0]["status"], "pending")

        # A backlog builds behind it, in order, untried while the head waits.
        self.flip(d, "87.45", "resolved")
        self.flip(d, "91.30", "firing")
        self.flip(d, "87.45", "resolved")
        evs = wait_for(lambda: len(e := events(d, RULE)) == 4 and e, what="four events")
        self.assertEqual([e["kind"] for e in evs], ["firing", "resolved", "firing", "resolved"])
        for e in evs[1:]:
            self.assertEqual(e["deliveries"][0]["status"], "pending")
            self.assertEqual(e["deliveries"][0]["attempts"], [], "FIFO: tried before the head")
        ids = [e["event_id"] for e in evs]
        self.assertEqual(len(set(ids)), 4)

        # Back up, but answering 503, then hanging past the 1s timeout, then ok for the
        # head, then hanging on the second event: the daemon is killed while that one
        # is in flight.
        hook.queue(("status 503", {"retry_after": 1}), "hang", "ok", "hang")
        hook.up()
        reqs = hook.wait_count(4, timeout=300, what="503, hang, ok, and the in-flight request")
        self.assertEqual([q.header("X-Somrated-Event-Id") for q in reqs[:3]], [ids[0]] * 3)
        self.assertEqual([q.status for q in reqs[:3]], [503, None, 200])
        in_flight = reqs[3].header("X-Somrated-Event-Id")
        self.assertEqual(in_flight, ids[1])
        d.kill()
        hook.set_mode("ok")

        # Restarted on the same database, it delivers the rest.
        d.start()
        hook.wait_for(lambda reqs: set(delivered_ids(reqs)) >= set(ids), timeout=120,
                      what="every event delivered")
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=3)
        arrived = delivered_ids(hook.requests())
        counts = collections.Counter(arrived)
        for event_id in ids:
            limit = 2 if event_id == in_flight else 1
            self.assertTrue(1 <= counts[event_id] <= limit,
                            f"{event_id} arrived {counts[event_id]} times: {arrived}")
        self.assertEqual(set(counts), set(ids), "an event arrived that was never recorded")
        first_arrivals = list(dict.fromkeys(arrived))
        self.assertEqual(first_arrivals, ids, "deliveries left FIFO order")
        statuses = {q.header("X-Somrated-Event-Id"): q.json["status"] for q in hook.requests()}
        self.assertEqual([statuses[i] for i in ids], ["firing", "resolved", "firing", "resolved"])

        evs = events(d, RULE)
        self.assertEqual([e["event_id"] for e in evs], ids)
        for e in evs:
            self.assertEqual(e["deliveries"][0]["status"], "delivered", e)
        outcomes = [a["outcome"] for a in evs[0]["deliveries"][0]["attempts"]]
        self.assertGreaterEqual(len(outcomes), 4, outcomes)
        self.assertEqual(outcomes[-1], "delivered")
        self.assertTrue(all(o == "retry" for o in outcomes[:-1]), outcomes)
        statuses = [a["http_status"] for a in evs[0]["deliveries"][0]["attempts"]]
        self.assertIn(503, statuses)
        self.assertEqual(statuses[-1], 200)

    # -- the events API ---------------------------------------------------------------

    def test_events_api_shows_events_with_deliveries_and_attempts(self):
        hook = self.receiver()
        broken = self.receiver()
        broken.set_mode("status 400", body={"error": "no such hook"})
        cfg = alert_config(self.source_url(),
                           notifiers=[webhook("hook", hook.url("/hook")),
                                      webhook("broken", broken.url("/hook"))],
                           alerts=[above_90(["hook", "broken"]),
                                   {"name": "usd-below-50", "currency": "USD", "below": 50,
                                    "notify": ["hook"]}])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        self.assertEqual(events(d), [])
        self.flip(d, "91.20", "firing")
        self.flip(d, "87.45", "resolved")
        quiet_period(d, self.fixture, self.path, [RULE], scrapes=2)

        evs = events(d)
        self.assertEqual([(e["rule"], e["kind"]) for e in evs], [(RULE, "firing"), (RULE, "resolved")])
        firing, resolved = evs
        self.assertEqual(firing["currency"], "USD")
        self.assertEqual(firing["source"], "24kg")
        self.assertEqual(firing["condition"], "above")
        self.assertEqual(firing["threshold"], "90")
        self.assertEqual(firing["value"], "91.20")
        self.assertEqual(firing["rate"], "91.20")
        self.assertIsNone(firing["ends_at"])
        self.assertEqual(resolved["value"], "87.45")
        self.assertEqual(resolved["starts_at"], firing["starts_at"])
        self.assertGreaterEqual(parse_time(resolved["ends_at"]), parse_time(resolved["starts_at"]))
        self.assertGreaterEqual(parse_time(resolved["at"]), parse_time(firing["at"]))

        for e in evs:
            by_notifier = {dl["notifier"]: dl for dl in e["deliveries"]}
            self.assertEqual(set(by_notifier), {"hook", "broken"})
            ok = by_notifier["hook"]
            self.assertEqual(ok["status"], "delivered")
            self.assertEqual(len(ok["attempts"]), 1)
            self.assertEqual(ok["attempts"][0]["outcome"], "delivered")
            self.assertEqual(ok["attempts"][0]["http_status"], 200)
            self.assertGreaterEqual(ok["attempts"][0]["duration_ms"], 0)
            parse_time(ok["attempts"][0]["at"])
            self.assertIsNone(ok["next_attempt_at"])
            # A 4xx is final: failed after one attempt, with what the receiver said.
            bad = by_notifier["broken"]
            self.assertEqual(bad["status"], "failed")
            self.assertEqual(len(bad["attempts"]), 1)
            self.assertEqual(bad["attempts"][0]["outcome"], "failed")
            self.assertEqual(bad["attempts"][0]["http_status"], 400)
            self.assertIn("400", bad["last_error"])
            self.assertIsNone(bad["next_attempt_at"])
        self.assertEqual(len(broken.requests()), 2)
        self.assertEqual([q.header("X-Somrated-Event-Id") for q in hook.requests()],
                         [e["event_id"] for e in evs])

        # Filters: by rule, a limit (the oldest first), and since.
        self.assertEqual(events(d, "usd-below-50"), [])
        self.assertEqual([e["event_id"] for e in events(d, RULE, limit=1)], [firing["event_id"]])
        status, body = d.get_json("/api/v1/alerts/events?since="
                                  + urllib.parse.quote(resolved["at"], safe=""))
        self.assertEqual(status, 200)
        self.assertEqual([e["event_id"] for e in body["events"]], [resolved["event_id"]])
        for bad_query in ("limit=abc", "since=yesterday"):
            with self.subTest(query=bad_query):
                r = d.get("/api/v1/alerts/events?" + bad_query)
                self.assertEqual(r.status, 400, r.text)
                self.assertIn("error", r.json())

        a = rule(d, RULE)
        self.assertEqual(a["last_event"]["event_id"], resolved["event_id"])
        self.assertEqual(a["last_event"]["kind"], "resolved")
        self.assertEqual({dl["notifier"]: dl["status"] for dl in a["last_event"]["deliveries"]},
                         {"hook": "delivered", "broken": "failed"})

    # -- notifier kinds ---------------------------------------------------------------

    def exec_dir(self):
        work = tempfile.mkdtemp(prefix="somrated-exec-")
        self.addCleanup(shutil.rmtree, work, True)
        script = os.path.join(work, "notify.py")
        with open(script, "w") as f:
            f.write(EXEC_SCRIPT.format(python=sys.executable))
        os.chmod(script, 0o755)
        out = os.path.join(work, "out")
        os.mkdir(out)
        return script, out

    @staticmethod
    def exec_runs(out):
        runs = []
        for name in sorted(os.listdir(out)):
            if name.endswith(".json"):
                with open(os.path.join(out, name)) as f:
                    runs.append(json.load(f))
        return runs

    def test_each_notifier_kind_gets_its_message(self):
        slack = self.receiver(ok_body="ok")
        telegram = self.receiver(ok_body={"ok": True, "result": {"message_id": 7}})
        ntfy = self.receiver(ok_body={"id": "abc", "event": "message"})
        script, out = self.exec_dir()
        notifiers = [
            {"name": "slack", "kind": "slack", "url": slack.url("/services/T0/B0/x"),
             "timeout": "2s", "template": "ALERT {rule}: {currency} {value} > {threshold}",
             "resolved_template": "OK {rule}: {currency} {value}"},
            {"name": "tg", "kind": "telegram", "url": telegram.url(""), "bot_token": "123:ABC",
             "chat_id": "-100123", "timeout": "2s"},
            {"name": "ntfy", "kind": "ntfy", "url": ntfy.url("/fx-alerts"), "priority": "high",
             "tags": ["warning"], "timeout": "2s"},
            {"name": "run", "kind": "exec", "command": [script, out], "timeout": "10s"},
        ]
        cfg = alert_config(self.source_url(), notifiers=notifiers,
                           alerts=[above_90(["slack", "tg", "ntfy", "run"])])
        d = self.daemon(cfg)
        self.wait_first_scrape(d)
        self.flip(d, "91.20", "firing")

        s = slack.wait_count(1, what="the slack message")[0]
        t = telegram.wait_count(1, what="the telegram message")[0]
        n = ntfy.wait_count(1, what="the ntfy message")[0]
        runs = wait_for(lambda: self.exec_runs(out), what="the exec notifier to run")
        event_id = events(d, RULE)[0]["event_id"]

        self.assertEqual(s.path, "/services/T0/B0/x")
        self.assertEqual(s.json, {"text": "ALERT usd-above-90: USD 91.20 > 90"})
        self.assertEqual(self.assert_event_id(s), event_id)

        self.assertEqual(t.path, "/bot123:ABC/sendMessage")
        self.assertEqual(str(t.json["chat_id"]), "-100123")
        self.assertIn(RULE, t.json["text"])
        self.assertIn("91.20", t.json["text"])
        self.assertEqual(t.json.get("parse_mode"), "HTML")
        self.assertEqual(self.assert_event_id(t), event_id)

        self.assertEqual(n.path, "/fx-alerts")
        self.assertIn(RULE, n.text)
        self.assertTrue(n.header("Title"), n.headers)
        self.assertIn(n.header("Priority"), ("high", "4"))
        self.assertIn("warning", n.header("Tags", "").split(","))
        self.assertEqual(self.assert_event_id(n), event_id)

        (run,) = runs
        self.assertEqual(run["argv"], [out])
        self.assertEqual(run["env"]["SOMRATED_EVENT_ID"], event_id)
        stdin = json.loads(run["stdin"])
        self.assertEqual(stdin["id"], event_id)
        self.assertEqual(stdin["rule"], RULE)
        self.assertEqual(stdin["kind"], "firing")
        self.assertEqual(stdin["labels"]["alertname"], RULE)

        self.flip(d, "87.45", "resolved")
        s2 = slack.wait_count(2, what="the slack resolved message")[1]
        t2 = telegram.wait_count(2, what="the telegram resolved message")[1]
        n2 = ntfy.wait_count(2, what="the ntfy resolved message")[1]
        runs = wait_for(lambda: len(r := self.exec_runs(out)) >= 2 and r,
                        what="the exec notifier's second run")
        resolved_id = events(d, RULE)[1]["event_id"]
        self.assertEqual(s2.json, {"text": "OK usd-above-90: USD 87.45"})
        self.assertIn(RULE, t2.json["text"])
        self.assertNotEqual(t2.json["text"], t.json["text"])
        self.assertNotEqual(n2.text, n.text)
        for req in (s2, t2, n2):
            self.assertEqual(req.header("X-Somrated-Event-Id"), resolved_id)
        self.assertEqual(runs[1]["env"]["SOMRATED_EVENT_ID"], resolved_id)
        self.assertEqual(json.loads(runs[1]["stdin"])["kind"], "resolved")

        quiet_period(d, self.fixture, self.path, [RULE], scrapes=2)
        for e in events(d, RULE):
            self.assertEqual({dl["notifier"]: dl["status"] for dl in e["deliveries"]},
                             {"slack": "delivered", "tg": "delivered", "ntfy": "delivered",
                              "run": "delivered"})
        self.assertEqual([len(r.requests()) for r in (slack, telegram, ntfy)], [2, 2, 2])
        self.assertEqual(len(self.exec_runs(out)), 2)


if __name__ == "__main__":
    unittest.main()
