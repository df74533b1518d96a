"""An in-process HTTP receiver for notification tests, on 127.0.0.1 only.

    with Receiver() as r:               # binds an ephemeral port, fixed for its lifetime
        url = r.url("/hook")
        ...                             # let the daemon post to url
        first = r.wait_for(lambda reqs: reqs and reqs[0], timeout=20, what="a message")
        first.json["status"], first.header("X-Somrated-Event-Id")

Every request is recorded (Received: time, method, path, headers, raw body, parsed
JSON) before it is answered, so a test can see a request the receiver never answers.
How requests are answered is switched at run time:

    set_mode("ok", body="ok")                     200 with that body (str, bytes, or a
                                                  dict/list sent as JSON)
    set_mode("status 503", retry_after=2)         that status, with a short body and an
                                                  optional Retry-After
    set_mode("ok", delay=0.2)                     any answering mode, sent delay seconds
                                                  after the request was recorded (a slow
                                                  receiver)
    set_mode("hang")                              read the request, never answer; released
                                                  (closed unanswered) when the mode
                                                  changes or the receiver stops
    set_mode("down")                              stop listening: connections are refused
    up()  or  set_mode(<any other mode>)          listen again, on the same port

queue(...) lines up one-shot answers ("ok", "status N", "hang", or (mode, options)
pairs) taken by the next requests in order, before the standing mode applies, so a test
can script "503, then hang, then ok" without racing the sender; unqueue() drops those
not taken yet.

The port stays reserved while down: a second socket bound to it with SO_REUSEPORT, which
never listens, keeps the port from being taken, and a socket that does not listen
refuses connections.

Every answer carries Connection: close, so "down" never leaves a kept-alive connection
that would still be served.
"""

import collections
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
MAX_BODY = 16 * 1024 * 1024
READ_TIMEOUT = 30.0


class Received:
    """One recorded request.

    status is what the receiver answered (None while it is being handled, and for a
    request that was never answered: hang, or a client that went away)."""

    def __init__(self, index, method, target, headers, body):
        self.index = index
        self.time = time.time()
        self.monotonic = time.monotonic()
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.headers = headers  # [(name, value)] in the order received
        self.body = body
        self.json = None
        if body:
            try:
                self.json = json.loads(body)
            except ValueError:
                self.json = None
        self.status = None
        self.mode = None  # the answer mode used ("ok", "status 503", "hang")

    def header(self, name, default=None):
        """The first header called name (case-insensitive), or default."""
        lower = name.lower()
        for n, v in self.headers:
            if n.lower() == lower:
                return v
        return default

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return (f"<Received #{self.index} {self.method} {self.target} status={self.status} "
                f"body={self.body[:120]!r}>")


class _Mode:
    """How to answer: kind is "ok", "status" or "hang"."""

    def __init__(self, kind, status=200, body=b"", content_type="text/plain; charset=utf-8",
                 retry_after=None, headers=(), delay=0.0):
        self.kind = kind
        self.delay = delay
        self.status = status
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after
        self.headers = list(headers)

    @property
    def name(self):
        return "status %d" % self.status if self.kind == "status" else self.kind


def _encode_body(body):
    """(bytes, content type) for a body given as bytes, str, or a JSON-able object."""
    if body is None:
        return b"", "text/plain; charset=utf-8"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


def _parse_mode(mode, body=None, content_type=None, retry_after=None, headers=(), delay=0.0):
    """A _Mode from "ok", "status N" or "hang" and its options."""
    words = mode.split()
    if delay < 0:
        raise ValueError(f"delay must not be negative, not {delay}")
    if words == ["ok"]:
        data, ctype = _encode_body("ok" if body is None else body)
        return _Mode("ok", 200, data, content_type or ctype, headers=headers, delay=delay)
    if len(words) == 2 and words[0] == "status" and words[1].isdigit():
        status = int(words[1])
        if not 200 <= status <= 599:
            raise ValueError(f"status must be 200..599, not {status}")
        data, ctype = _encode_body(f"receiver: status {status}\n" if body is None else body)
        return _Mode("status", status, data, content_type or ctype, retry_after, headers, delay)
    if words == ["hang"]:
        return _Mode("hang")
    raise ValueError(f"unknown mode {mode!r}: use ok, status N, hang or down")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "somrated-receiver/1"
    timeout = READ_TIMEOUT

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def _handle(self):
        self.close_connection = True
        receiver = self.server.receiver
        try:
            body = self._read_body()
        except (ValueError, OSError):
            return
        req, mode, generation = receiver._record(self.command, self.path,
                                                 list(self.headers.items()), body)
        if mode.kind == "hang":
            receiver._hang(self.connection, generation)
            return
        if mode.delay:
            time.sleep(mode.delay)
        # Marked answered before the bytes go out, so that a client which has read the
        # answer never sees the request still unanswered here.
        receiver._answered(req, mode.status)
        try:
            self.send_response(mode.status)
            self.send_header("Content-Type", mode.content_type)
            self.send_header("Content-Length", str(len(mode.body)))
            if mode.retry_after is not None:
                self.send_header("Retry-After", str(mode.retry_after))
            for name, value in mode.headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(mode.body)
            self.wfile.flush()
        except OSError:
            receiver._answered(req, None)  # the client went away first
            raise

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, receiver, port):
        self.receiver = receiver
        super().__init__((HOST, port), _Handler, bind_and_activate=False)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self):
        # TCPServer's bind only: HTTPServer's would look the address up for server_name.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = HOST, self.server_address[1]

    def handle_error(self, request, client_address):
        pass  # a client that went away is not the receiver's problem


class Receiver:
    """A threaded HTTP receiver on 127.0.0.1 that records every request.

    ok_body: what "ok" answers with at first (str, bytes, or an object sent as JSON);
    e.g. "ok" for slack, {"ok": True, "result": {}} for telegram.
    """

    def __init__(self, ok_body="ok"):
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests = []
        self._mode = _parse_mode("ok", body=ok_body)
        self._queue = collections.deque()
        self._generation = 0  # bumped on every mode change; releases hanging requests
        self._reserve = None
        self._server = None
        self._thread = None
        self._stopped = False
        self.port = None

    # -- life cycle -------------------------------------------------------------------

    def start(self):
        reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserve.bind((HOST, 0))
        self._reserve = reserve
        self.port = reserve.getsockname()[1]
        self._listen()
        return self

    def stop(self):
        with self._lock:
            self._stopped = True
            self._generation += 1
            self._changed.notify_all()
        self._unlisten()
        if self._reserve is not None:
            self._reserve.close()
            self._reserve = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _listen(self):
        server = _Server(self, self.port)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True, name=f"receiver-{self.port}")
        thread.start()
        self._server, self._thread = server, thread

    def _unlisten(self):
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join(10)

    @property
    def listening(self):
        return self._server is not None

    # -- modes ------------------------------------------------------------------------

    def set_mode(self, mode, body=None, content_type=None, retry_after=None, headers=(),
                 delay=0.0):
        """Switches how requests are answered: "ok", "status N", "hang" or "down" (see
        the module text), each answer sent delay seconds after the request arrived. Any
        mode but "down" listens again if the receiver was down. Hanging requests are
        released (closed unanswered)."""
        if mode == "down":
            return self.down()
        parsed = _parse_mode(mode, body, content_type, retry_after, headers, delay)
        with self._lock:
            self._mode = parsed
            self._generation += 1
            self._changed.notify_all()
        if not self.listening:
            self._listen()

    def down(self):
        """Stops listening (connections are refused) and releases hanging requests; the
        port stays reserved."""
        with self._lock:
            self._generation += 1
            self._changed.notify_all()
        self._unlisten()

    def up(self):
        """Listens again on the same port, answering with the mode set before down()."""
        if not self.listening:
            self._listen()

    def queue(self, *modes):
        """One-shot answers for the next requests, in order: each is "ok", "status N",
        "hang", or a (mode, {options}) pair with set_mode's keyword options."""
        parsed = []
        for m in modes:
            if isinstance(m, tuple):
                parsed.append(_parse_mode(m[0], **m[1]))
            else:
                parsed.append(_parse_mode(m))
        with self._lock:
            self._queue.extend(parsed)

    def unqueue(self):
        """Drops the one-shot answers that no request has taken yet."""
        with self._lock:
            self._queue.clear()

    def release(self):
        """Closes every hanging request without an answer; the mode stays."""
        with self._lock:
            self._generation += 1
            self._changed.notify_all()

    @property
    def mode(self):
        """The standing mode's name ("ok", "status 503", "hang"), or "down"."""
        with self._lock:
            return self._mode.name if self.listening else "down"

    # -- what was received ------------------------------------------------------------

    def _record(self, method, target, headers, body):
        with self._lock:
            req = Received(len(self._requests), method, target, headers, body)
            mode = self._queue.popleft() if self._queue else self._mode
            req.mode = mode.name
            self._requests.append(req)
            self._changed.notify_all()
            return req, mode, self._generation

    def _answered(self, req, status):
        with self._lock:
            req.status = status
            self._changed.notify_all()

    def _hang(self, conn, generation):
        """Holds conn unanswered until the mode changes, the receiver stops, or the client
        closes it."""
        while True:
            with self._lock:
                if self._generation != generation or self._stopped:
                    return
            try:
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable and not conn.recv(4096):
                    return  # the client gave up
            except OSError:
                return

    def requests(self, path=None):
        """A snapshot of the requests received so far (of path only, when given)."""
        with self._lock:
            reqs = list(self._requests)
        if path is not None:
            reqs = [r for r in reqs if r.path == path]
        return reqs

    def clear(self):
        """Forgets the requests received so far."""
        with self._lock:
            self._requests = []

    def wait_for(self, predicate, timeout=20.0, what="condition", interval=0.05):
        """Calls predicate(requests) until it returns something truthy, and returns that;
        raises AssertionError naming what and the requests seen once timeout seconds
        have passed."""
        deadline = time.monotonic() + timeout
        while True:
            last = predicate(self.requests())
            if last:
                return last
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = self.requests()
                raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                     f"(last: {last!r}; {len(seen)} requests: {seen[-5:]!r})")
            with self._lock:
                self._changed.wait(min(interval, remaining))

    def wait_count(self, n, timeout=20.0, path=None, what=None):
        """Waits until at least n requests (to path, when given) were received and
        returns them."""
        return self.wait_for(lambda reqs: len(f := [r for r in reqs
                                                     if path is None or r.path == path]) >= n
                             and f, timeout=timeout,
                             what=what or f"{n} request(s){' to ' + path if path else ''}")

    def url(self, path="/"):
        """The URL of path on this receiver."""
        return f"http://{HOST}:{self.port}{path}"
