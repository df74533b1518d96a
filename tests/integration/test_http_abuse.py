"""The HTTP server under abuse: 10 000 idle connections, slowloris headers, oversized
headers and bodies, pipelined garbage, half-closed sockets and clients that never read.
Throughout, a normal client keeps getting GET /api/v1/latest and /healthz answered, and
the daemon's resident memory stays bounded (VmRSS/VmHWM from /proc, printed per phase).

What the daemon does, and these tests hold it to:
- At max_connections (1024 by default) a new connection takes the place of the one idle
  the longest, else of the one stalled the longest (reading its request or writing its
  response for over a second); only when every connection is busy does it get 503.
- read_timeout ends a request that trickles in, write_timeout a client that stops
  reading; the daemon reads one request at a time and only after answering the last.
- 431 for a header over 16 KiB, 413 for a body over 64 KiB, 400 for anything that is not
  HTTP/1.x, each followed by closing the connection.
- Out of file descriptors, accept() backs off instead of spinning, warns once, and
  closes idle connections so that new clients still get in.

Everything runs against the real daemon on 127.0.0.1, with the default max_connections
and short read and write deadlines so that the cut-offs come within seconds. This
process raises its soft RLIMIT_NOFILE to the hard limit for the 10 000 sockets (and
opens fewer, saying so, if the hard limit is too low).
"""

import functools
import os
import re
import resource
import select
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from daemon import BINARY, TEST_DATA, Daemon, metric, socket_inodes, wait_for  # noqa: E402

NBKR = os.path.join(TEST_DATA, "nbkr", "daily_2022-07-18_usbtypec1-nbkr-fx-rates-bot.xml")

# The daemon's deadlines in these tests (config keys [server] read_timeout/write_timeout).
READ_TIMEOUT = 2
WRITE_TIMEOUT = 2
# The default [server] max_connections, which these tests leave alone.
MAX_CONNECTIONS = 1024
# The default request limits (include/somrated/http_server.hpp).
HEADER_LIMIT = 16 * 1024
BODY_LIMIT = 64 * 1024

IDLE_CONNECTIONS = 10_000
# Connections that send part of a request header and then nothing, among the idle ones.
PARTIAL_CONNECTIONS = 200
# Descriptors the test process keeps for itself besides the abusive sockets.
SPARE_DESCRIPTORS = 400

# Resident memory a phase may add to the daemon: generous, since this checks that memory
# is bounded, not how small it is. A sanitizer build's shadow memory and quarantine of
# freed blocks (256 MiB by default) would make the first bound meaningless.
MAX_GROWTH = 64 << 20
MAX_GROWTH_SANITIZED = 512 << 20

REQUEST = b"GET /api/v1/latest HTTP/1.1\r\nHost: abuse\r\n\r\n"
PARTIAL = b"GET /api/v1/latest HTTP/1.1\r\nHost: abuse\r\nX-Slow: "


def raise_fd_limit():
    """Raises this process's soft RLIMIT_NOFILE to its hard limit (the daemons started
    from here inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


FD_LIMIT = raise_fd_limit()


@functools.cache
def sanitized_binary():
    """True when the binary was built with a sanitizer."""
    with open(BINARY, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def growth_bound():
    """How much resident memory a phase may add to the daemon."""
    return MAX_GROWTH_SANITIZED if sanitized_binary() else MAX_GROWTH


def config(extra="", read_timeout=READ_TIMEOUT, write_timeout=WRITE_TIMEOUT):
    """A daemon reading the NBKR fixture through file://, with short deadlines."""
    return f"""
[server]
read_timeout = "{read_timeout}s"
write_timeout = "{write_timeout}s"
{extra}

[storage]
path = "@DB@"

[log]
level = "info"

[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{os.path.abspath(NBKR)}"
interval = "1h"
"""


def memory(pid):
    """VmRSS and VmHWM of pid, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024
            for key in ("VmRSS", "VmHWM")}


def open_descriptors(pid):
    """How many file descriptors pid has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def daemon_holds(d, sock):
    """True while the daemon still has its end of the connection sock is the client of
    open (from /proc/net/tcp and the daemon's descriptors)."""
    client_port = sock.getsockname()[1]
    mine = f"0100007F:{d.port:04X}"
    theirs = f"0100007F:{client_port:04X}"
    inodes = socket_inodes(d.proc.pid)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == mine and fields[2] == theirs and fields[9] in inodes:
                return True
    return False


def unread_bytes(d):
    """Bytes clients have sent that wait in the kernel for the daemon to read them."""
    mine = f"0100007F:{d.port:04X}"
    inodes = socket_inodes(d.proc.pid)
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == mine and fields[9] in inodes:
                total += int(fields[4].split(":")[1], 16)
    return total


def connect(port, timeout=10):
    """A blocking loopback connection with a timeout on every operation."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Reads HTTP/1.1 responses (with Content-Length, as the daemon always sends) one
    after the other from a socket."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.buf = b""
        self.eof = False
        sock.settimeout(timeout)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return bool(chunk)

    def response(self, head=False):
        """(status, headers, body) of the next response (no body for a HEAD), or None
        at the end of the stream. Raises socket.timeout if nothing complete comes in
        time."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                if self.buf:
                    raise AssertionError(f"truncated response head: {self.buf[:200]!r}")
                return None
        end = self.buf.index(b"\r\n\r\n") + 4
        lines = self.buf[:end - 4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buf) < end + length:
            if not self._fill():
                raise AssertionError("truncated response body")
        body = self.buf[end:end + length]
        self.buf = self.buf[end + length:]
        return status, headers, body

    def closed(self):
        """True once the peer has closed (after any bytes still buffered)."""
        while not self.eof:
            self._fill()
        return True


def wait_readable(socks, timeout):
    """The sockets among socks that are readable (or closed) within timeout seconds;
    poll(), since descriptor numbers here go beyond what select() takes."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0, int(timeout * 1000)))]


def wait_writable(sock, timeout):
    """True when sock can take more bytes within timeout seconds."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def read_until_closed(sock, timeout):
    """What sock receives until the peer closes it, or None if it is still open after
    timeout seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not wait_readable([sock], left):
            return None
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data
        if not chunk:
            return data
        data += chunk


def closed_by_peer(sock, timeout):
    """True if the peer closes sock within timeout seconds (what it sent is dropped)."""
    return read_until_closed(sock, timeout) is not None


def send_in_background(sock, data):
    """Sends data on a thread, ignoring the error a peer that stops reading causes."""
    def run():
        try:
            sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class HttpAbuse(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon(config()).start()
        self.pid = self.daemon.proc.pid
        self.sockets = []
        self.assert_responsive()

    def tearDown(self):
        for s in self.sockets:
            s.close()
        self.daemon.stop()

    def track(self, sock):
        self.sockets.append(sock)
        return sock

    # -- the normal client -------------------------------------------------------------

    def assert_responsive(self):
        """A normal client gets /api/v1/latest (with rates) and /healthz answered, each
        on a new connection, within a few seconds."""
        r = self.daemon.get("/api/v1/latest", timeout=5)
        self.assertEqual(r.status, 200, r.body[:200])
        self.assertIn("USD", r.json()["rates"])
        r = self.daemon.get("/healthz", timeout=5)
        self.assertEqual(r.status, 200, r.body[:200])

    # -- memory ------------------------------------------------------------------------

    def check_memory(self, label, before):
        """Prints the daemon's memory now against before and asserts the phase added
        less than the bound, at its peak too."""
        after = memory(self.pid)
        growth = after["VmRSS"] - before["VmRSS"]
        peak_growth = after["VmHWM"] - before["VmRSS"]
        print(f"\n{label}: VmRSS {before['VmRSS'] >> 10} -> {after['VmRSS'] >> 10} KiB "
              f"({growth / (1 << 20):+.1f} MiB), VmHWM {after['VmHWM'] >> 10} KiB "
              f"(peak {peak_growth / (1 << 20):+.1f} MiB)", file=sys.stderr)
        bound = growth_bound()
        self.assertLess(peak_growth, bound, f"{label}: memory grew by {peak_growth} bytes")

    # -- the tests ---------------------------------------------------------------------

    def test_ten_thousand_idle_connections(self):
        count = min(IDLE_CONNECTIONS, FD_LIMIT - SPARE_DESCRIPTORS - PARTIAL_CONNECTIONS)
        if count < IDLE_CONNECTIONS:
            print(f"\nRLIMIT_NOFILE is {FD_LIMIT}: opening {count} idle connections instead of "
                  f"{IDLE_CONNECTIONS}", file=sys.stderr)
        self.assertGreater(count, MAX_CONNECTIONS, "too few descriptors to exceed max_connections")
        before = memory(self.pid)
        partial = []
        batch = 1000
        started = time.monotonic()
        for i in range(count):
            self.track(connect(self.daemon.port))
            if i % (count // PARTIAL_CONNECTIONS) == 0 and len(partial) < PARTIAL_CONNECTIONS:
                s = self.track(connect(self.daemon.port))
                s.sendall(PARTIAL)
                partial.append(s)
            if (i + 1) % batch == 0:
                # Responsive while the flood is still arriving.
                self.assert_responsive()
                # Idle connections beyond max_connections were closed to make room: the
                # daemon never holds many more descriptors than connections allowed.
                self.assertLess(open_descriptors(self.pid), MAX_CONNECTIONS + 200)
        opened = time.monotonic() - started
        for _ in range(5):
            self.assert_responsive()
        descriptors = open_descriptors(self.pid)
        print(f"\n{count} idle and {len(partial)} partial connections opened in {opened:.1f} s; "
              f"the daemon holds {descriptors} descriptors", file=sys.stderr)
        self.assertLess(descriptors, MAX_CONNECTIONS + 200)
        self.check_memory(f"{count} idle connections", before)
        self.assertIn("closing the longest idle ones", self.daemon.log())
        # /metrics counts what the log only summarises.
        text = self.daemon.get("/metrics", timeout=5).text
        self.assertGreater(metric(text, "somrated_http_connection_events_total", event="evicted"),
                           0)
        self.assertLessEqual(metric(text, "somrated_http_connections"), MAX_CONNECTIONS)

        # With idle connections to close first, the partial requests were left alone
        # until read_timeout ended each of them, without an answer.
        for s in partial:
            self.assertEqual(read_until_closed(s, READ_TIMEOUT + 15), b"",
                             "a partial request stayed open or was answered")

        # Once the flood leaves, the daemon lets go of everything it held.
        for s in self.sockets:
            s.close()
        self.sockets = []
        baseline = open_descriptors(self.pid)
        wait_for(lambda: open_descriptors(self.pid) < 64, timeout=15,
                 what=f"the daemon to close the flood's connections (holds {baseline})")
        self.assert_responsive()

    def test_slowloris_headers_are_cut_off_by_read_timeout(self):
        before = memory(self.pid)
        header = PARTIAL + b"x" * 200 + b"\r\n\r\n"
        slow = [self.track(connect(self.daemon.port)) for _ in range(50)]
        sent = {s: 0 for s in slow}
        open_ = set(slow)
        deadline = time.monotonic() + READ_TIMEOUT + 20
        # One byte on each connection about every half second: a deadline per read
        # would never fire; the one per request does.
        while open_ and time.monotonic() < deadline:
            for s in list(open_):
                try:
                    s.sendall(header[sent[s]:sent[s] + 1])
                    sent[s] += 1
                except OSError:
                    open_.discard(s)
            for s in wait_readable(open_, 0.5):
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "a slow request got an answer")
                open_.discard(s)
            self.assert_responsive()
        self.assertFalse(open_, f"{len(open_)} slow connections are still open")
        for s in slow:
            self.assertLess(sent[s], len(header), "a slow header was read to its end")
            self.assertFalse(daemon_holds(self.daemon, s))
        self.check_memory("50 slowloris connections", before)

    def test_oversized_headers_get_431(self):
        before = memory(self.pid)
        long_line = (b"GET /healthz HTTP/1.1\r\nHost: abuse\r\nX-Long: "
                     + b"a" * (HEADER_LIMIT + 1024) + b"\r\n\r\n")
        many = (b"GET /healthz HTTP/1.1\r\nHost: abuse\r\n"
                + b"".join(b"X-H%d: v\r\n" % i for i in range(4000)) + b"\r\n")
        endless = b"GET /healthz HTTP/1.1\r\nHost: abuse\r\nX-Endless: " + b"e" * (8 << 20)
        for name, request in (("one long header", long_line), ("4000 headers", many),
                              ("an 8 MiB header", endless)):
            with self.subTest(name):
                s = self.track(connect(self.daemon.port))
                sender = send_in_background(s, request)
                reader = Reader(s)
                status, headers, _ = reader.response()
                self.assertEqual(status, 431)
                self.assertEqual(headers.get("connection"), "close")
                self.assertTrue(reader.closed())
                sender.join(10)
                self.assertFalse(sender.is_alive())
                self.assert_responsive()
        self.check_memory("oversized headers", before)

    def test_oversized_bodies_get_413(self):
        before = memory(self.pid)
        head = b"POST /api/v1/alerts HTTP/1.1\r\nHost: abuse\r\nContent-Type: application/json\r\n"
        cases = (
            ("a 1 MiB body", head + b"Content-Length: %d\r\n\r\n" % (1 << 20) + b"{" * (1 << 20)),
            ("an announced 100 GiB body", head + b"Content-Length: %d\r\n\r\n" % (100 << 30)
             + b"x" * 1000),
            ("a Content-Length of 10^30", head + b"Content-Length: 1" + b"0" * 30 + b"\r\n\r\n"),
            ("a chunked body past the limit", head + b"Transfer-Encoding: chunked\r\n\r\n"
             + b"".join(b"1000\r\n" + b"c" * 4096 + b"\r\n" for _ in range(BODY_LIMIT // 4096 + 8))
             + b"0\r\n\r\n"),
        )
        for name, request in cases:
            with self.subTest(name):
                s = self.track(connect(self.daemon.port))
                sender = send_in_background(s, request)
                reader = Reader(s)
                status, headers, _ = reader.response()
                # A Content-Length too large to be a number is malformed rather than large.
                self.assertIn(status, (400, 413) if "10^30" in name else (413,))
                self.assertEqual(headers.get("connection"), "close")
                self.assertTrue(reader.closed())
                sender.join(10)
                self.assertFalse(sender.is_alive())
                self.assert_responsive()
        self.check_memory("oversized bodies", before)

    def test_pipelined_requests_are_answered_in_order(self):
        before = memory(self.pid)
        requests = []
        expected = []
        # Answered on the network thread (/healthz, 404) and on the database readers
        # (/api/v1/latest), so the answers are ready out of order; they must not be sent so.
        for i in range(60):
            if i % 3 == 0:
                requests.append(b"GET /api/v1/latest HTTP/1.1\r\nHost: abuse\r\n\r\n")
                expected.append((200, b'"USD"', False))
            elif i % 3 == 1:
                requests.append(b"GET /missing-%d HTTP/1.1\r\nHost: abuse\r\n\r\n" % i)
                expected.append((404, b'/missing-%d\\"' % i, False))
            else:
                requests.append(b"HEAD /healthz HTTP/1.1\r\nHost: abuse\r\n\r\n")
                expected.append((200, b"", True))
        s = self.track(connect(self.daemon.port))
        s.sendall(b"".join(requests))
        reader = Reader(s)
        for i, (status, marker, head) in enumerate(expected):
            got = reader.response(head=head)
            self.assertIsNotNone(got, f"connection closed before response {i}")
            self.assertEqual(got[0], status, f"response {i}")
            self.assertIn(marker, got[2], f"response {i}")
            if head:
                self.assertGreater(int(got[1]["content-length"]), 0, f"response {i} (HEAD)")
        self.assertTrue(daemon_holds(self.daemon, s), "keep-alive connection was closed")
        self.check_memory("pipelined requests", before)

    def test_pipelined_garbage_gets_400_and_close(self):
        before = memory(self.pid)
        valid = b"GET /healthz HTTP/1.1\r\nHost: abuse\r\n\r\n"
        garbage = {
            "binary": bytes(range(256)) * 4,
            "a TLS ClientHello": bytes.fromhex("16030100a5010000a10303") + os.urandom(64),
            "words": b"HELLO THERE\r\n\r\n",
            "an unknown version": b"GET / HTTP/9.9\r\nHost: abuse\r\n\r\n",
            "a header without a colon": b"GET / HTTP/1.1\r\nHost abuse\r\n\r\n",
            "conflicting lengths": b"POST /api/v1/alerts HTTP/1.1\r\nHost: abuse\r\n"
                                   b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "a bad chunk size": b"POST /api/v1/alerts HTTP/1.1\r\nHost: abuse\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "a NUL in the target": b"GET /\x00 HTTP/1.1\r\nHost: abuse\r\n\r\n",
            "the HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "Content-Length with chunked": b"POST /api/v1/alerts HTTP/1.1\r\nHost: abuse\r\n"
                                           b"Content-Length: 4\r\nTransfer-Encoding: chunked"
                                           b"\r\n\r\n0\r\n\r\n",
        }
        for name, junk in garbage.items():
            with self.subTest(name):
                s = self.track(connect(self.daemon.port))
                # A valid request, the garbage, then a valid request that must not be
                # answered: after garbage the stream cannot be trusted.
                s.sendall(valid + junk + valid)
                reader = Reader(s)
                first = reader.response()
                self.assertIsNotNone(first)
                self.assertEqual(first[0], 200)
                second = reader.response()
                self.assertIsNotNone(second, "closed without a 400")
                self.assertEqual(second[0], 400)
                self.assertEqual(second[1].get("connection"), "close")
                self.assertIsNone(reader.response(), "answered after garbage")
                self.assert_responsive()
        self.check_memory("pipelined garbage", before)

    def test_half_closed_connections(self):
        before = memory(self.pid)
        with self.subTest("a request, then shutdown(SHUT_WR)"):
            s = self.track(connect(self.daemon.port))
            s.sendall(REQUEST)
            s.shutdown(socket.SHUT_WR)
            reader = Reader(s)
            status, _, body = reader.response()
            self.assertEqual(status, 200)
            self.assertIn(b'"USD"', body)
            self.assertIsNone(reader.response())
        with self.subTest("three pipelined requests, then shutdown(SHUT_WR)"):
            s = self.track(connect(self.daemon.port))
            s.sendall(REQUEST * 3)
            s.shutdown(socket.SHUT_WR)
            reader = Reader(s)
            for i in range(3):
                got = reader.response()
                self.assertIsNotNone(got, f"response {i} missing")
                self.assertEqual(got[0], 200)
            self.assertIsNone(reader.response())
        with self.subTest("half a request, then shutdown(SHUT_WR)"):
            s = self.track(connect(self.daemon.port))
            s.sendall(PARTIAL)
            s.shutdown(socket.SHUT_WR)
            self.assertIsNone(Reader(s).response())
        with self.subTest("a request, then close before the answer"):
            for _ in range(100):
                s = connect(self.daemon.port)
                s.sendall(REQUEST)
                s.close()
            self.assert_responsive()
            wait_for(lambda: open_descriptors(self.pid) < 64, timeout=10,
                     what="the daemon to close the abandoned connections")
        self.check_memory("half-closed connections", before)

    def test_client_that_never_reads(self):
        before = memory(self.pid)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.track(s)
        # A small receive window, so the daemon's writes stall soon.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", self.daemon.port))
        wait_for(lambda: daemon_holds(self.daemon, s), timeout=10, what="the connection accepted")
        s.setblocking(False)
        chunk = (REQUEST + b"GET /healthz HTTP/1.1\r\nHost: abuse\r\n\r\n") * 100
        sent = 0
        deadline = time.monotonic() + WRITE_TIMEOUT + 30
        next_check = 0
        # Pipeline requests without ever reading a response, as long as the daemon takes
        # them, until it gives up on the connection.
        while time.monotonic() < deadline:
            if wait_writable(s, 0.2):
                try:
                    sent += s.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.2
                if not daemon_holds(self.daemon, s):
                    break
        self.assertFalse(daemon_holds(self.daemon, s),
                         "the daemon kept a connection whose client never reads")
        print(f"\nclient that never reads: the daemon took {sent >> 10} KiB of requests before "
              f"closing it", file=sys.stderr)
        # Flow control, not memory, absorbed the rest: the daemon read a bounded amount.
        self.assertLess(sent, 64 << 20)
        self.assert_responsive()
        self.check_memory("a client that never reads", before)


class HttpAbuseStalledBodies(unittest.TestCase):
    """The costliest request to hold: a body just under the limit whose last bytes never
    come, with a read deadline too long to help. However many connections do it, memory
    is bounded by max_connections (a newcomer takes the place of the longest stalled)."""

    def test_stalled_bodies_are_bounded_by_max_connections(self):
        count = min(2 * MAX_CONNECTIONS, FD_LIMIT - SPARE_DESCRIPTORS)
        request = (b"POST /api/v1/alerts HTTP/1.1\r\nHost: abuse\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % BODY_LIMIT
                   + b" " * (BODY_LIMIT - 1024))
        socks = []
        with Daemon(config(read_timeout=120)) as d:
            try:
                pid = d.proc.pid
                before = memory(pid)
                for _ in range(count):
                    s = connect(d.port)
                    socks.append(s)
                    try:
                        s.sendall(request)
                    except OSError:
                        pass  # answered 503 and closed while sending
                # Measured once the daemon has read everything it was sent.
                wait_for(lambda: unread_bytes(d) == 0, timeout=30,
                         what="the daemon to read what was sent")
                # Connections that lost their place linger up to a second before closing;
                # on a busy machine the evictions themselves may still be under way.
                held = wait_for(lambda: (n := open_descriptors(pid)) < MAX_CONNECTIONS + 200 and n,
                                timeout=30, what="descriptors to come down to max_connections")
                after = memory(pid)
                # Each held connection may cost its body and a header's worth of buffer.
                bound = MAX_CONNECTIONS * (BODY_LIMIT + 2 * HEADER_LIMIT) + (16 << 20)
                print(f"\n{count} connections with stalled {BODY_LIMIT >> 10} KiB bodies: "
                      f"VmRSS {before['VmRSS'] >> 10} -> {after['VmRSS'] >> 10} KiB, VmHWM "
                      f"{after['VmHWM'] >> 10} KiB (bound: {bound >> 10} KiB more); "
                      f"{held} descriptors", file=sys.stderr)
                self.assertLess(held, MAX_CONNECTIONS + 200)
                self.assertLess(after["VmHWM"] - before["VmRSS"], max(bound, growth_bound()))
                # Every slot holds a stalled request: one stalled for a second gives way.
                wait_for(lambda: d.get("/healthz", timeout=5).status == 200, timeout=20,
                         what="a normal client to be served")
            finally:
                for s in socks:
                    s.close()


class HttpAbuseHeld(unittest.TestCase):
    """max_connections raised above the flood: the daemon holds every idle connection
    at once, and the memory they cost is what is measured."""

    def test_ten_thousand_connections_held_at_once(self):
        count = min(IDLE_CONNECTIONS, FD_LIMIT - SPARE_DESCRIPTORS)
        # The daemon needs a descriptor per connection plus its own reserve (256).
        count = min(count, FD_LIMIT - 512)
        if count < IDLE_CONNECTIONS:
            print(f"\nRLIMIT_NOFILE is {FD_LIMIT}: holding {count} connections instead of "
                  f"{IDLE_CONNECTIONS}", file=sys.stderr)
        socks = []
        with Daemon(config(f"max_connections = {count + 100}")) as d:
            try:
                pid = d.proc.pid
                before = memory(pid)
                for i in range(count):
                    socks.append(connect(d.port))
                    if (i + 1) % 2500 == 0:
                        r = d.get("/healthz", timeout=5)
                        self.assertEqual(r.status, 200)
                wait_for(lambda: open_descriptors(pid) >= count, timeout=30,
                         what=f"the daemon to hold {count} connections")
                r = d.get("/api/v1/latest", timeout=5)
                self.assertEqual(r.status, 200)
                # Held, not merely accepted: every 10th one is served.
                for s in socks[::10]:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: abuse\r\n\r\n")
                for s in socks[::10]:
                    got = Reader(s).response()
                    self.assertIsNotNone(got)
                    self.assertEqual(got[0], 200)
                after = memory(pid)
                per_connection = (after["VmRSS"] - before["VmRSS"]) / count
                print(f"\n{count} connections held at once: VmRSS {before['VmRSS'] >> 10} -> "
                      f"{after['VmRSS'] >> 10} KiB, about {per_connection / 1024:.1f} KiB each; "
                      f"VmHWM {after['VmHWM'] >> 10} KiB", file=sys.stderr)
                bound = growth_bound()
                self.assertLess(after["VmHWM"] - before["VmRSS"], bound)
                self.assertNotIn("closing the longest idle ones", d.log())
            finally:
                for s in socks:
                    s.close()
            wait_for(lambda: open_descriptors(pid) < 64, timeout=30,
                     what="the daemon to close the connections")


class HttpAbuseOutOfDescriptors(unittest.TestCase):
    """The daemon's open file limit lowered under it (prlimit) below max_connections: a
    flood runs accept() into EMFILE. It backs off instead of spinning, warns once, and
    closes idle connections so that new clients still get in."""

    def test_accept_out_of_descriptors(self):
        socks = []
        with Daemon(config()) as d:
            try:
                pid = d.proc.pid
                _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_descriptors(pid) + 150, hard))
                for i in range(600):
                    socks.append(connect(d.port))
                    if (i + 1) % 100 == 0:
                        r = d.get("/healthz", timeout=5)
                        self.assertEqual(r.status, 200)
                for _ in range(5):
                    r = d.get("/api/v1/latest", timeout=5)
                    self.assertEqual(r.status, 200)
                log = d.log()
                self.assertEqual(log.count("accept failed: Too many open files"), 1, log)
                self.assertIn("closing the longest idle ones", log)
                # The retries the log keeps quiet about are all counted.
                text = d.get("/metrics", timeout=5).text
                for event in ("accept_failed", "evicted"):
                    self.assertGreaterEqual(
                        metric(text, "somrated_http_connection_events_total", event=event), 1)
            finally:
                for s in socks:
                    s.close()


class HttpAbuseAtCapacity(unittest.TestCase):
    """Every connection slot held by slowloris senders and by clients that never read
    their responses, with read and write deadlines too long to help: a normal client is
    still served, because a connection stalled for a second gives way to a new one."""

    SLOTS = 16

    def test_slots_held_by_stalled_connections(self):
        deadline = 120
        with Daemon(config(f"max_connections = {self.SLOTS}", read_timeout=deadline,
                           write_timeout=deadline)) as d:
            held = []
            try:
                before = memory(d.proc.pid)
                # Half the slots: requests that never end.
                for _ in range(self.SLOTS // 2):
                    s = connect(d.port)
                    s.sendall(PARTIAL)
                    held.append(s)
                # The other half: clients that pipeline requests for 6 KiB responses and
                # never read them, so the daemon's writes stall.
                for _ in range(self.SLOTS // 2):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    held.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.connect(("127.0.0.1", d.port))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: abuse\r\n\r\n" * 2000)
                wait_for(lambda: open_descriptors(d.proc.pid) >= 16 + self.SLOTS, timeout=10,
                         what="the daemon to hold every slot")
                # Well within the deadlines, normal clients get in, one after the other.
                started = time.monotonic()
                for _ in range(2 * self.SLOTS):
                    wait_for(lambda: d.get("/healthz", timeout=5).status == 200, timeout=20,
                             what="a normal client to be served")
                self.assertLess(time.monotonic() - started, deadline)
                self.assertEqual(d.get("/api/v1/latest", timeout=5).status, 200)
                self.assertIn("closing the longest idle ones (or stalled ones)", d.log())
                text = d.get("/metrics", timeout=5).text
                self.assertGreaterEqual(
                    metric(text, "somrated_http_connection_events_total", event="evicted"), 1)
                # Stalled connections were the ones to go.
                gone = [s for s in held if not daemon_holds(d, s)]
                self.assertGreater(len(gone), 0)
                after = memory(d.proc.pid)
                print(f"\n{self.SLOTS} slots held by stalled connections: VmRSS "
                      f"{before['VmRSS'] >> 10} -> {after['VmRSS'] >> 10} KiB", file=sys.stderr)
            finally:
                for s in held:
                    s.close()


if __name__ == "__main__":
    unittest.main()
