#!/usr/bin/env python3
"""A scriptable HTTP and HTTPS origin for integration tests, on 127.0.0.1 only.

    fixture_server.py --port-file PATH [--tls-dir DIR] [--http-port N] [--verbose]

Binds ephemeral ports (the HTTP one is N with --http-port, so that a server can come back
where an earlier one was), writes {"http": port, "https": port} as one JSON line to PATH
(https is null without --tls-dir, which must hold server.crt and server.key), and serves
until SIGTERM or SIGINT.

Content: GET or HEAD of any path serves the page registered for that path (the query
string is ignored), or 404. Each path has a mode:

    ok             the page, with an ETag of its hash; If-None-Match (or, without it,
                   If-Modified-Since) answers 304
    500, 404       that status
    503, 429       that status with Retry-After: 5 (or the mode's retry_after)
    hang           accept, never answer; the socket stays open until the client closes it
                   or the server stops
    huge           50 MB of data with Content-Length set
    huge_stream    50 MB of data without Content-Length, ended by closing the connection
    redirect_loop  302 back to the same URL
    reset          the headers and half the body, then a TCP reset
    trickle        the page one byte per second

Control API, on the HTTP port only:

    PUT /_fixture/page?path=/english/[&content_type=text/html][&once=1]   body = the page
        bytes; with once=1 they answer the next GET or HEAD of that path only (whatever its
        validators say), and the page registered before answers after that
    PUT /_fixture/mode?path=/english/&mode=M[&retry_after=V]
    PUT /_fixture/tls                     read server.crt and server.key from --tls-dir
                                          again: new handshakes use the new certificate
    GET /_fixture/log?path=/english/      JSON list of {method, target, headers, tls, time}
    DELETE /_fixture/log?path=/english/   forget the requests seen for that path
"""

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "500", "503", "429", "404", "hang", "huge", "huge_stream", "redirect_loop",
         "reset", "trickle")
DEFAULT_RETRY_AFTER = "5"
HUGE_BYTES = 50 * 1000 * 1000
MAX_PAGE_BYTES = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


class FixtureState:
    """Pages, modes and request logs, shared by the HTTP and HTTPS listeners."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pages = {}  # path -> (body, content_type, last_modified)
        self.once = {}  # path -> (body, content_type, last_modified), served to one request
        self.modes = {}  # path -> mode
        self.retry_after = {}  # path -> Retry-After value for 503 and 429
        self.logs = {}  # path -> [entry]
        self.stopping = threading.Event()

    def set_page(self, path, body, content_type, once=False):
        with self.lock:
            (self.once if once else self.pages)[path] = (body, content_type, time.time())

    def set_mode(self, path, mode, retry_after=DEFAULT_RETRY_AFTER):
        with self.lock:
            self.modes[path] = mode
            self.retry_after[path] = retry_after

    def lookup(self, path):
        """(page, mode, retry_after, once): a one-shot page is handed out only once."""
        with self.lock:
            once = self.once.pop(path, None)
            return (once or self.pages.get(path), self.modes.get(path, "ok"),
                    self.retry_after.get(path, DEFAULT_RETRY_AFTER), once is not None)

    def record(self, path, entry):
        with self.lock:
            self.logs.setdefault(path, []).append(entry)

    def log(self, path):
        with self.lock:
            return list(self.logs.get(path, []))

    def clear_log(self, path):
        with self.lock:
            self.logs.pop(path, None)


def etag_of(body):
    """A strong validator derived from the page bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header, etag):
    """If-None-Match evaluation (RFC 9110 section 13.1.2): weak comparison, '*' matches."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def not_modified_since(header, last_modified):
    """True when the page has not changed since the If-Modified-Since date."""
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(last_modified) <= since


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "somrated-fixture/1"
    timeout = READ_TIMEOUT

    # -- plumbing ---------------------------------------------------------

    @property
    def state(self):
        return self.server.state

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.server.scheme, fmt % args))

    def send_simple(self, status, body=b"", content_type="text/plain; charset=utf-8",
                    headers=(), head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_PAGE_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    # -- methods ----------------------------------------------------------

    def do_GET(self):
        self.dispatch(head=False)

    def do_HEAD(self):
        self.dispatch(head=True)

    def do_PUT(self):
        if not self.is_control():
            return self.send_simple(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        self.control("PUT")

    def do_DELETE(self):
        if not self.is_control():
            return self.send_simple(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        self.control("DELETE")

    def is_control(self):
        return not self.server.tls and self.path.startswith("/_fixture/")

    def dispatch(self, head):
        if self.is_control():
            return self.control("GET")
        path = urllib.parse.urlsplit(self.path).path
        self.state.record(path, {
            "method": self.command,
            "target": self.path,
            "headers": dict(self.headers.items()),
            "tls": self.server.tls,
            "time": time.time(),
        })
        page, mode, self.retry_after, self.once = self.state.lookup(path)
        getattr(self, "mode_" + mode)(page, head)

    # -- control API ------------------------------------------------------

    def control(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if method == "PUT" and url.path == "/_fixture/tls":
            https = [s for s in self.server.siblings if s.tls]
            if not https:
                return self.send_simple(409, b"started without --tls-dir\n")
            try:
                context = tls_context(self.server.tls_dir)
            except (OSError, ssl.SSLError) as e:
                return self.send_simple(400, f"cannot load the certificate: {e}\n".encode())
            for s in https:
                s.tls_context = context
            return self.send_simple(204)
        path = query.get("path", [None])[0]
        if not path or not path.startswith("/"):
            return self.send_simple(400, b"path=/... is required\n")
        if method == "PUT" and url.path == "/_fixture/page":
            try:
                body = self.read_body()
            except ValueError as e:
                return self.send_simple(400, f"{e}\n".encode())
            content_type = query.get("content_type", ["text/html; charset=utf-8"])[0]
            self.state.set_page(path, body, content_type, once=query.get("once") == ["1"])
            return self.send_simple(204)
        if method == "PUT" and url.path == "/_fixture/mode":
            mode = query.get("mode", [""])[0]
            if mode not in MODES:
                return self.send_simple(400, f"mode must be one of {', '.join(MODES)}\n".encode())
            retry_after = query.get("retry_after", [DEFAULT_RETRY_AFTER])[0]
            self.state.set_mode(path, mode, retry_after)
            return self.send_simple(204)
        if method == "GET" and url.path == "/_fixture/log":
            body = json.dumps(self.state.log(path)).encode()
            return self.send_simple(200, body, "application/json")
        if method == "DELETE" and url.path == "/_fixture/log":
            self.state.clear_log(path)
            return self.send_simple(204)
        return self.send_simple(404, b"unknown control endpoint\n")

    # -- modes ------------------------------------------------------------

    def mode_ok(self, page, head):
        if page is None:
            return self.send_simple(404, b"no page registered for this path\n", head=head)
        body, content_type, changed = page
        etag = etag_of(body)
        validators = [("ETag", etag), ("Last-Modified", formatdate(changed, usegmt=True))]
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        # RFC 9110 section 13.2.2: If-None-Match wins; If-Modified-Since only without it.
        fresh = not self.once and (etag_matches(inm, etag) if inm is not None else (
            ims is not None and not_modified_since(ims, changed)))
        if fresh:
            self.send_response(304)
            for name, value in validators:
                self.send_header(name, value)
            self.end_headers()
            return
        self.send_simple(200, body, content_type, validators, head)

    def mode_500(self, page, head):
        self.send_simple(500, b"fixture: internal error\n", head=head)

    def mode_503(self, page, head):
        self.send_simple(503, b"fixture: try later\n", headers=[("Retry-After", self.retry_after)],
                         head=head)

    def mode_429(self, page, head):
        self.send_simple(429, b"fixture: slow down\n", headers=[("Retry-After", self.retry_after)],
                         head=head)

    def mode_404(self, page, head):
        self.send_simple(404, b"fixture: not found\n", head=head)

    def mode_redirect_loop(self, page, head):
        self.send_simple(302, b"", headers=[("Location", self.path)], head=head)

    def mode_hang(self, page, head):
        self.close_connection = True
        conn = self.connection
        while not self.state.stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.2)
            if not readable:
                continue
            try:
                if not conn.recv(4096):
                    return  # the client closed
            except (OSError, ssl.SSLError):
                return

    def mode_huge(self, page, head):
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        if head:
            return
        self.send_huge(b"x" * 65536)

    def send_huge(self, chunk):
        """HUGE_BYTES of chunk repeated, unless the client or a server stop ends it."""
        sent = 0
        try:
            while sent < HUGE_BYTES and not self.state.stopping.is_set():
                n = min(len(chunk), HUGE_BYTES - sent)
                self.wfile.write(chunk[:n])
                sent += n
        except (OSError, ssl.SSLError):
            pass  # the client gave up, as it should

    def mode_huge_stream(self, page, head):
        # HTTP/1.0-style framing: no Content-Length, the body ends when the server closes.
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        self.send_huge(b"<p>" + b"x" * 65530 + b"</p>")

    def mode_reset(self, page, head):
        body = page[0] if page and len(page[0]) >= 2 else b"x" * 1000
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if not head:
                self.wfile.write(body[: len(body) // 2])
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except (OSError, ssl.SSLError):
            pass

    def mode_trickle(self, page, head):
        body = page[0] if page else b"x" * 60
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", page[1] if page else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                if self.state.stopping.wait(1.0):
                    return
        except (OSError, ssl.SSLError):
            pass


class FixtureHTTPServer(ThreadingHTTPServer):
    """One listener; TLS when given a context, with the handshake on the handler thread so
    a client that never handshakes cannot stall the accept loop."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, state, tls_context=None, verbose=False, port=0, tls_dir=None):
        self.state = state
        self.tls_context = tls_context  # replaced whole by PUT /_fixture/tls
        self.tls = tls_context is not None
        self.tls_dir = tls_dir
        self.scheme = "https" if self.tls else "http"
        self.verbose = verbose
        self.siblings = [self]  # every listener of this process, for PUT /_fixture/tls
        # A fixed port may still have connections in TIME_WAIT from an earlier server.
        self.allow_reuse_address = port != 0
        super().__init__(("127.0.0.1", port), Handler)

    def finish_request(self, request, client_address):
        context = self.tls_context
        if context is not None:
            try:
                request.settimeout(HANDSHAKE_TIMEOUT)
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                if self.verbose:
                    sys.stderr.write(f"https handshake with {client_address}: {e}\n")
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def tls_context(tls_dir):
    """A server context with tls_dir's server.crt and server.key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tls_dir, "server.crt"), os.path.join(tls_dir, "server.key"))
    return ctx


def write_port_file(path, ports):
    """Writes the ports atomically so a poller never reads half a line."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps(ports) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", required=True, help="where to write the JSON ports line")
    parser.add_argument("--tls-dir", help="directory holding server.crt and server.key")
    parser.add_argument("--http-port", type=int, default=0,
                        help="serve HTTP on this loopback port instead of an ephemeral one")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    state = FixtureState()
    servers = [FixtureHTTPServer(state, verbose=args.verbose, port=args.http_port,
                                 tls_dir=args.tls_dir)]
    if args.tls_dir:
        servers.append(FixtureHTTPServer(state, tls_context(args.tls_dir), verbose=args.verbose,
                                         tls_dir=args.tls_dir))
    for s in servers:
        s.siblings = servers

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
               for s in servers]
    for t in threads:
        t.start()
    write_port_file(args.port_file, {
        "http": servers[0].server_address[1],
        "https": servers[1].server_address[1] if len(servers) > 1 else None,
    })

    while not stop.wait(0.5):
        pass
    state.stopping.set()
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
