"""Self-test of fixture_server.py and fixture.py, against 127.0.0.1 only."""

import http.client
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import FixtureServer, make_ca, wait_until  # noqa: E402


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Surfaces 3xx responses as HTTPError instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class FixtureServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tls_dir = tempfile.mkdtemp(prefix="somrated-fixture-ca-")
        cls.ca = make_ca(cls.tls_dir)
        cls.fixture = FixtureServer(tls_dir=cls.tls_dir).__enter__()
        no_proxy = urllib.request.ProxyHandler({})
        trusting = ssl.create_default_context(cafile=cls.ca)
        cls.opener = urllib.request.build_opener(no_proxy, NoRedirects(),
                                                 urllib.request.HTTPSHandler(context=trusting))
        cls.untrusting = urllib.request.build_opener(
            no_proxy, urllib.request.HTTPSHandler(context=ssl.create_default_context()))

    @classmethod
    def tearDownClass(cls):
        cls.fixture.__exit__(None, None, None)
        shutil.rmtree(cls.tls_dir, ignore_errors=True)

    def setUp(self):
        self.path = f"/{self.id().rsplit('.', 1)[-1]}/"
        self.page = b"<html><body>USD 87.45 EUR 99.56 RUB 1.10</body></html>"
        self.fixture.set_page(self.path, self.page)

    def get(self, url, headers=None, timeout=5, opener=None):
        """(status, headers, body) for url; HTTP errors are results, not exceptions."""
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with (opener or self.opener).open(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, e.read()

    def test_make_ca_returns_the_paths(self):
        self.assertEqual(str(self.ca), os.path.join(self.tls_dir, "ca.crt"))
        for p in (self.ca.ca_cert, self.ca.ca_key, self.ca.server_cert, self.ca.server_key):
            self.assertTrue(os.path.isfile(p), p)
        self.assertEqual(self.ca.server_cert, os.path.join(self.tls_dir, "server.crt"))

    def test_ok_serves_the_page_with_an_etag_and_honours_if_none_match(self):
        status, headers, body = self.get(self.fixture.url(self.path + "?x=1"),
                                         headers={"User-Agent": "probe/1"})
        self.assertEqual(status, 200)
        self.assertEqual(body, self.page)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        etag = headers["ETag"]
        self.assertTrue(etag.startswith('"') and etag.endswith('"'), etag)

        status, headers, body = self.get(self.fixture.url(self.path),
                                         headers={"If-None-Match": etag})
        self.assertEqual(status, 304)
        self.assertEqual(headers["ETag"], etag)
        self.assertEqual(body, b"")

        # A changed page gets a new validator, so the old one no longer matches.
        self.fixture.set_page(self.path, b"changed", content_type="text/plain")
        status, headers, body = self.get(self.fixture.url(self.path),
                                         headers={"If-None-Match": etag})
        self.assertEqual((status, body), (200, b"changed"))
        self.assertEqual(headers["Content-Type"], "text/plain")
        self.assertNotEqual(headers["ETag"], etag)

        log = self.fixture.log(self.path)
        self.assertEqual([e["method"] for e in log], ["GET", "GET", "GET"])
        self.assertEqual(log[0]["target"], self.path + "?x=1")
        self.assertEqual(log[0]["headers"]["User-Agent"], "probe/1")
        self.assertNotIn("If-None-Match", log[0]["headers"])
        self.assertEqual(log[1]["headers"]["If-None-Match"], etag)
        self.assertFalse(log[0]["tls"])

        self.fixture.clear_log(self.path)
        self.assertEqual(self.fixture.log(self.path), [])

    def test_if_modified_since(self):
        status, headers, _ = self.get(self.fixture.url(self.path))
        self.assertEqual(status, 200)
        status, _, _ = self.get(self.fixture.url(self.path),
                                headers={"If-Modified-Since": headers["Last-Modified"]})
        self.assertEqual(status, 304)
        status, _, _ = self.get(self.fixture.url(self.path),
                                headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
        self.assertEqual(status, 200)

    def test_unregistered_path_is_404(self):
        status, _, _ = self.get(self.fixture.url("/nothing/here/"))
        self.assertEqual(status, 404)

    def test_https_needs_the_ca(self):
        status, _, body = self.get(self.fixture.url(self.path, tls=True))
        self.assertEqual((status, body), (200, self.page))
        self.assertTrue(self.fixture.log(self.path)[-1]["tls"])
        with self.assertRaises(urllib.error.URLError) as caught:
            self.get(self.fixture.url(self.path, tls=True), opener=self.untrusting)
        self.assertIsInstance(caught.exception.reason, ssl.SSLCertVerificationError)
        # The control API is not reachable over HTTPS.
        status, _, _ = self.get(self.fixture.url("/_fixture/log?path=/", tls=True))
        self.assertEqual(status, 404)

    def test_status_modes(self):
        for mode, expected in (("500", 500), ("503", 503), ("404", 404)):
            with self.subTest(mode=mode):
                self.fixture.set_mode(self.path, mode)
                status, headers, _ = self.get(self.fixture.url(self.path))
                self.assertEqual(status, expected)
                if mode == "503":
                    self.assertEqual(headers["Retry-After"], "5")
        self.fixture.set_mode(self.path, "ok")
        self.assertEqual(self.get(self.fixture.url(self.path))[0], 200)

    def test_unknown_mode_is_refused(self):
        with self.assertRaises(urllib.error.HTTPError) as caught:
            self.fixture.set_mode(self.path, "explode")
        self.assertEqual(caught.exception.code, 400)
        caught.exception.close()

    def test_redirect_loop_points_at_itself(self):
        self.fixture.set_mode(self.path, "redirect_loop")
        target = self.path + "?n=1"
        status, headers, _ = self.get(self.fixture.url(target))
        self.assertEqual(status, 302)
        self.assertEqual(headers["Location"], target)

    def test_hang_never_answers(self):
        self.fixture.set_mode(self.path, "hang")
        start = time.monotonic()
        with self.assertRaises((TimeoutError, socket.timeout, urllib.error.URLError)):
            self.get(self.fixture.url(self.path), timeout=0.5)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 5)
        wait_until(lambda: len(self.fixture.log(self.path)) == 1, timeout=5, what="the logged request")

    def test_huge_announces_50_mb(self):
        self.fixture.set_mode(self.path, "huge")
        with self.opener.open(self.fixture.url(self.path), timeout=5) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.headers["Content-Length"]), 50 * 1000 * 1000)
            chunk = r.read(100000)
            self.assertEqual(len(chunk), 100000)
            self.assertEqual(set(chunk), {ord("x")})

    def test_reset_cuts_the_body(self):
        self.fixture.set_mode(self.path, "reset")
        with self.opener.open(self.fixture.url(self.path), timeout=5) as r:
            self.assertEqual(int(r.headers["Content-Length"]), len(self.page))
            with self.assertRaises((http.client.IncompleteRead, ConnectionResetError)):
                r.read()

    def test_trickle_sends_a_byte_per_second(self):
        self.fixture.set_mode(self.path, "trickle")
        with self.opener.open(self.fixture.url(self.path), timeout=5) as r:
            self.assertEqual(int(r.headers["Content-Length"]), len(self.page))
            self.assertEqual(r.read(1), self.page[:1])
            start = time.monotonic()
            self.assertEqual(r.read(1), self.page[1:2])
            self.assertGreaterEqual(time.monotonic() - start, 0.5)
        with self.assertRaises((TimeoutError, socket.timeout)):
            with self.opener.open(self.fixture.url(self.path), timeout=0.5) as r:
                r.read()


if __name__ == "__main__":
    unittest.main()
