"""Self-test of receiver.py, against 127.0.0.1 only."""

import http.client
import json
import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from receiver import Receiver  # noqa: E402


def post(port, path="/hook", body=b"{}", headers=None, timeout=5, chunked=False):
    """(status, headers, body) of one POST; raises on connection errors and timeouts."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if chunked:
            conn.request("POST", path, body=iter([body[:3], body[3:]]), headers=hdrs,
                         encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=hdrs)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


class ReceiverTest(unittest.TestCase):
    def setUp(self):
        self.r = Receiver().start()
        self.addCleanup(self.r.stop)

    def test_ok_records_the_request_and_answers_the_configured_body(self):
        body = json.dumps({"version": "4", "eventId": "e-1"}).encode()
        status, headers, answer = post(self.r.port, "/hook?x=1", body,
                                       {"X-Somrated-Event-Id": "e-1"})
        self.assertEqual((status, answer), (200, b"ok"))
        self.assertEqual(headers["Connection"], "close")
        (req,) = self.r.requests()
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.target, "/hook?x=1")
        self.assertEqual(req.path, "/hook")
        self.assertEqual(req.header("x-somrated-event-id"), "e-1")
        self.assertEqual(req.header("Content-Type"), "application/json")
        self.assertIsNone(req.header("X-Missing"))
        self.assertEqual(req.body, body)
        self.assertEqual(req.json, {"version": "4", "eventId": "e-1"})
        self.assertEqual(req.status, 200)
        self.assertEqual(req.mode, "ok")
        self.assertGreater(req.time, 0)

        self.r.set_mode("ok", body={"ok": True, "result": {}})
        status, headers, answer = post(self.r.port, "/bot1:A/sendMessage", b"not json")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(answer), {"ok": True, "result": {}})
        self.assertIsNone(self.r.requests()[1].json)
        self.assertEqual(self.r.requests()[1].text, "not json")
        self.assertEqual([q.path for q in self.r.requests("/hook")], ["/hook"])

    def test_chunked_body_is_read_whole(self):
        body = json.dumps({"text": "hello"}).encode()
        self.assertEqual(post(self.r.port, body=body, chunked=True)[0], 200)
        self.assertEqual(self.r.requests()[0].json, {"text": "hello"})

    def test_status_mode_with_retry_after(self):
        self.r.set_mode("status 503", retry_after=2)
        self.assertEqual(self.r.mode, "status 503")
        status, headers, answer = post(self.r.port)
        self.assertEqual(status, 503)
        self.assertEqual(headers["Retry-After"], "2")
        self.assertIn(b"503", answer)
        self.r.set_mode("status 400", body={"ok": False, "description": "Bad Request: chat not found"})
        status, headers, answer = post(self.r.port)
        self.assertEqual(status, 400)
        self.assertNotIn("Retry-After", headers)
        self.assertEqual(json.loads(answer)["ok"], False)
        self.assertEqual([q.status for q in self.r.requests()], [503, 400])
        with self.assertRaises(ValueError):
            self.r.set_mode("status 99")
        with self.assertRaises(ValueError):
            self.r.set_mode("explode")

    def test_delay_answers_that_long_after_the_request_was_recorded(self):
        import time
        self.r.set_mode("ok", delay=0.3)
        self.r.queue(("status 503", {"delay": 0.2}))
        status, _, _ = post(self.r.port)
        answered = time.monotonic()
        self.assertEqual(status, 503)
        status, _, answer = post(self.r.port)
        self.assertEqual((status, answer), (200, b"ok"))
        first, second = self.r.requests()
        # A sleep never ends early, so these hold however slow the machine is.
        self.assertGreaterEqual(answered - first.monotonic, 0.2)
        self.assertGreaterEqual(time.monotonic() - second.monotonic, 0.3)
        self.assertEqual([q.status for q in (first, second)], [503, 200])
        with self.assertRaises(ValueError):
            self.r.set_mode("ok", delay=-1)

    def test_unqueue_drops_the_answers_not_taken(self):
        self.r.queue("status 500", "status 503")
        self.assertEqual(post(self.r.port)[0], 500)
        self.r.unqueue()
        self.assertEqual(post(self.r.port)[0], 200)

    def test_hang_reads_the_request_and_never_answers(self):
        self.r.set_mode("hang")
        with self.assertRaises((TimeoutError, socket.timeout)):
            post(self.r.port, body=b'{"a":1}', timeout=0.5)
        req = self.r.wait_count(1)[0]
        self.assertEqual(req.json, {"a": 1})
        self.assertIsNone(req.status)
        self.assertEqual(req.mode, "hang")

        # A client still waiting is released, unanswered, when the mode changes.
        outcome = {}

        def waiting_client():
            try:
                outcome["answer"] = post(self.r.port, timeout=30)
            except (http.client.HTTPException, OSError) as e:
                outcome["error"] = e

        t = threading.Thread(target=waiting_client)
        t.start()
        self.r.wait_count(2, what="the second hanging request")
        self.assertTrue(t.is_alive())
        self.r.set_mode("ok")
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertNotIn("answer", outcome)
        self.assertIsInstance(outcome["error"], (http.client.RemoteDisconnected, ConnectionError))
        self.assertEqual(post(self.r.port)[0], 200)
        self.assertEqual([q.status for q in self.r.requests()], [None, None, 200])

    def test_down_refuses_and_up_comes_back_on_the_same_port(self):
        port = self.r.port
        self.assertEqual(post(port)[0], 200)
        self.r.set_mode("down")
        self.assertEqual(self.r.mode, "down")
        for _ in range(3):
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # The port is still held: nobody else can listen on it.
        other = socket.socket()
        with self.assertRaises(OSError):
            other.bind(("127.0.0.1", port))
        other.close()
        self.r.up()
        self.assertEqual(self.r.port, port)
        self.assertEqual(post(port)[0], 200)
        self.r.down()
        with self.assertRaises(ConnectionRefusedError):
            post(port)
        self.r.set_mode("status 500")
        self.assertEqual(post(port)[0], 500)
        self.assertEqual(len(self.r.requests()), 3)

    def test_queued_answers_come_first_then_the_standing_mode(self):
        self.r.queue("status 503", "hang", ("status 429", {"retry_after": 1}))
        self.assertEqual(post(self.r.port)[0], 503)
        with self.assertRaises((TimeoutError, socket.timeout)):
            post(self.r.port, timeout=0.5)
        status, headers, _ = post(self.r.port)
        self.assertEqual((status, headers["Retry-After"]), (429, "1"))
        self.assertEqual(post(self.r.port)[0], 200)
        self.assertEqual([q.mode for q in self.r.requests()],
                         ["status 503", "hang", "status 429", "ok"])

    def test_concurrent_requests_are_all_recorded(self):
        errors = []

        def send(i):
            try:
                post(self.r.port, body=json.dumps({"i": i}).encode())
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        self.assertEqual(errors, [])
        reqs = self.r.wait_count(20)
        self.assertEqual(sorted(q.json["i"] for q in reqs), list(range(20)))
        self.assertEqual(sorted(q.index for q in reqs), list(range(20)))
        self.r.clear()
        self.assertEqual(self.r.requests(), [])

    def test_wait_for_times_out_with_what_it_saw(self):
        post(self.r.port, body=b'{"n":1}')
        with self.assertRaises(AssertionError) as caught:
            self.r.wait_for(lambda reqs: len(reqs) >= 2, timeout=0.3, what="two requests")
        self.assertIn("two requests", str(caught.exception))
        self.assertIn("1 requests", str(caught.exception))
        got = self.r.wait_for(lambda reqs: reqs and reqs[0].json["n"], timeout=1)
        self.assertEqual(got, 1)

    def test_binds_loopback_only(self):
        self.assertEqual(self.r.url("/x"), f"http://127.0.0.1:{self.r.port}/x")
        self.assertEqual(self.r._server.server_address[0], "127.0.0.1")


class OkBodyTest(unittest.TestCase):
    def test_initial_ok_body_is_configurable(self):
        with Receiver(ok_body={"ok": True, "result": {"message_id": 1}}) as r:
            status, headers, answer = post(r.port)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(answer)["result"]["message_id"], 1)
        # Stopped: the port is free again and nothing listens.
        with self.assertRaises(ConnectionRefusedError):
            post(r.port)


if __name__ == "__main__":
    unittest.main()
