"""Headless Chromium for integration tests, driven over the DevTools protocol.

The browser runs with a throwaway profile, every background service that could reach
the internet switched off, every host name but 127.0.0.1 unresolvable, and a net log
of everything it fetched, so a test can prove it talked to loopback only. The
DevTools client below (a minimal RFC 6455 WebSocket over the standard library) talks
to 127.0.0.1 only.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

# Debian's launcher (/usr/bin/chromium) sources /etc/chromium.d, which turns on remote
# extensions and Google API keys; the browser binary itself is started directly.
CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

# Flags that keep the browser from contacting anything on its own.
QUIET_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-field-trial-config",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--disable-features=Translate,OptimizationHints,OptimizationHintsFetching,"
    "OptimizationGuideModelDownloading,OptimizationTargetPrediction,"
    "OptimizationGuideOnDeviceModel,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater,DnsOverHttps,"
    "InterestFeedContentSuggestions,NetworkTimeServiceQuerying,PrivacySandboxSettings4",
    # What no switch turns off (the account list at startup, on-demand component
    # checks) is pointed at a closed loopback port instead of Google.
    "--gaia-url=http://127.0.0.1:9",
    "--component-updater=url-source=http://127.0.0.1:9/",
    # Any name resolves to nothing; 127.0.0.1 is an address and needs no resolving.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

# Loopback only: an empty ProxyHandler keeps *_proxy variables from rerouting requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def binary():
    """The Chromium executable, or None when it is not installed."""
    override = os.environ.get("SOMRATED_CHROMIUM")
    if override:
        return override
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def available():
    return binary() is not None


class WebSocket:
    """A client WebSocket (RFC 6455) carrying text messages, enough for DevTools."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url, timeout=30.0):
        parts = urllib.parse.urlsplit(url)
        if parts.hostname != "127.0.0.1":
            raise ValueError(f"refusing a non-loopback DevTools URL: {url}")
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket handshake refused: {lines[0]}")
        expected = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip()
                   for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("WebSocket handshake: wrong Sec-WebSocket-Accept")

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode("utf-8"))

    def recv(self, timeout):
        """The next text message; socket.timeout when none arrives within timeout."""
        self.sock.settimeout(timeout)
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode("utf-8")

    def close(self):
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class DevTools:
    """Commands to one page target, with the events it sent kept in order."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1
        self.events = []

    def _pump(self, timeout):
        message = json.loads(self.ws.recv(timeout))
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method, timeout=30.0, **params):
        """Sends a command and returns its result; raises on a protocol error."""
        call_id = self.next_id
        self.next_id += 1
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"DevTools did not answer {method} within {timeout}s")
            message = self._pump(left)
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"DevTools {method} failed: {message['error']}")
                return message.get("result", {})

    def wait_event(self, method, timeout=30.0, since=0):
        """The first event named method at index since or later, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[since:]:
                if e["method"] == method:
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {method} event within {timeout}s")
            try:
                self._pump(left)
            except socket.timeout:
                pass

    def drain(self, seconds=0.2):
        """Collects the events that arrive within seconds."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._pump(left)
            except socket.timeout:
                return

    def evaluate(self, expression, timeout=30.0):
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, expression, timeout=20.0, interval=0.1, what=None):
        """Evaluates expression until it is truthy, and returns that value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.evaluate(expression)
            if last:
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for "
                                     f"{what or expression} (last: {last!r})")
            self.drain(interval)

    def problems(self):
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log ({p['entry'].get('source')}): {p['entry'].get('text')} "
                           f"{p['entry'].get('url', '')}")
        return out

    def requested_urls(self):
        """Every URL the page asked the network for (Network.requestWillBeSent)."""
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]


class Chromium:
    """A headless Chromium with a temp profile and a net log, for a with-block.

    devtools is a DevTools session on the browser's first page; net_log_urls() (after
    the block) lists every URL and host the network stack saw.
    """

    def __init__(self, start_timeout=60.0):
        self.start_timeout = start_timeout
        self.dir = None
        self.proc = None
        self.devtools = None
        self.net_log = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-chromium-")
        profile = os.path.join(self.dir, "profile")
        self.net_log = os.path.join(self.dir, "netlog.json")
        args = [binary(), *QUIET_FLAGS, f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--log-net-log={self.net_log}", "--net-log-capture-mode=Default",
                "about:blank"]
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
               and not k.startswith("GOOGLE_")}
        self._stderr = open(os.path.join(self.dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=subprocess.STDOUT, env=env)
        try:
            port = self._wait_port(os.path.join(profile, "DevToolsActivePort"))
            ws_url = self._page_socket(port)
            self.devtools = DevTools(WebSocket(ws_url))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_port(self, path):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"chromium did not open its DevTools port within "
                             f"{self.start_timeout}s:\n{self.log()}")

    def _page_socket(self, port):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with _opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.loads(r.read())
            for t in targets:
                if t.get("type") == "page" and "webSocketDebuggerUrl" in t:
                    return t["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise AssertionError("chromium has no page target")

    def __exit__(self, *exc):
        if self.devtools:
            self.devtools.ws.close()
            self.devtools = None
        if self.proc and self.proc.poll() is None:
            # SIGTERM lets the browser finish its net log.
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._stderr.close()
        return False

    def log(self):
        with open(os.path.join(self.dir, "chromium.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def net_log_urls(self):
        """Every URL and host name in the net log (read after the browser stopped)."""
        with open(self.net_log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        found = set(re.findall(r'"url":\s*"([^"]*)"', text))
        found |= {f"host:{h}" for h in re.findall(r'"host":\s*"([^"]*)"', text)}
        return found

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
