"""Runs the real somrated binary for integration tests: writes a config, starts the
daemon on an ephemeral loopback port, and offers small HTTP helpers.

Stopping a Daemon (stop() or leaving its with-block) checks how it ended: a daemon that
exits non-zero after SIGTERM/SIGINT, that died before it was asked to stop, or whose
log holds an AddressSanitizer/UBSan report fails the test with the end of its log.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

BINARY = os.environ.get("SOMRATED_BINARY", "../../build/somrated")
TEST_DATA = os.environ.get("SOMRATED_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))

# What ASan, LSan, UBSan and TSan print when they find something.
SANITIZER_MARKERS = ("Sanitizer", "runtime error:")

# Hosts a test daemon may fetch from: the built-in defaults (24.kg, nbkr.kg) are real
# internet hosts and must never be used.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value or timeout passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            last = None
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# Never through a proxy: these tests talk to 127.0.0.1 only.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_local_config(config_toml):
    """Raises ValueError unless config_toml names at least one [[source]] and every url
    in it is file:// or http(s) on loopback: without sources the daemon would scrape the
    real 24.kg and nbkr.kg."""
    if not re.search(r"^\s*\[\[\s*source\s*\]\]", config_toml, re.M):
        raise ValueError("the test config has no [[source]]: the daemon would use its built-in "
                         "internet sources")
    for url in re.findall(r"^\s*url\s*=\s*[\"']([^\"']*)[\"']", config_toml, re.M):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            continue
        host = parts.netloc.rsplit("@", 1)[-1]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if parts.scheme in ("http", "https") and host in LOCAL_HOSTS:
            continue
        raise ValueError(f"the test config names a non-local source url: {url}")


def socket_inodes(pid):
    """The inodes of process pid's sockets, from /proc."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    return inodes


def _proc_listening_port(pid):
    """The loopback TCP port process pid listens on, from /proc (None if none yet)."""
    inodes = socket_inodes(pid)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes and local.startswith("0100007F:"):
                return str(int(local.split(":")[1], 16))
    return None


class Response:
    """A finished HTTP exchange."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8")


class Daemon:
    """A somrated process with its own config, database and log file.

    env: extra environment variables. journal: make the daemon believe its stderr is the
    journal (JOURNAL_STREAM set to the log file's device and inode). Proxy variables and
    an inherited JOURNAL_STREAM are always removed from the daemon's environment.
    """

    def __init__(self, config_toml, extra_args=(), workdir=None, env=None, journal=False):
        check_local_config(config_toml)
        self.dir = workdir or tempfile.mkdtemp(prefix="somrated-it-")
        self.db = os.path.join(self.dir, "rates.db")
        self.config_path = os.path.join(self.dir, "somrated.toml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        text = config_toml.replace("@DB@", self.db)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.journal = journal
        self.proc = None
        self.port = None
        self.log_file = None
        self.signalled = None  # the stop signal sent (stop() or send_signal), if any
        self._checked = False
        self._log_start = 0  # where this run's output starts in a reused log file

    def _child_env(self):
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
               and k != "JOURNAL_STREAM"}
        env["NO_PROXY"] = env["no_proxy"] = "*"
        if self.journal:
            st = os.fstat(self.log_file.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        env.update(self.env)
        return env

    def start(self, wait=True):
        """Runs the daemon and, with wait, waits until it listens (port is then set).
        Without wait it returns at once, port unknown: for a test that kills it while it
        starts."""
        self.log_file = open(self.log_path, "ab")
        self._log_start = self.log_file.tell()
        self.signalled = None
        self._checked = False
        self.proc = subprocess.Popen(
            [BINARY, "--config", self.config_path, "--listen", "127.0.0.1:0", *self.extra_args],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self._child_env())
        self.port = None
        if not wait:
            return self
        try:
            match = wait_for(lambda: self._listening(), timeout=20, what="daemon to listen")
        except BaseException:
            self._kill()
            raise
        self.port = int(match)
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
        if m:
            return m.group(1)
        # Below notice (--log-level warning) the daemon does not say where it listens.
        return _proc_listening_port(self.proc.pid)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log_file:
            self.log_file.close()

    def log(self):
        """This run's output so far (stdout and stderr)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=60):
        return "\n".join(self.log().splitlines()[-lines:])

    def sanitizer_report(self):
        """The first log line that looks like a sanitizer finding, or None."""
        for line in self.log().splitlines():
            if any(marker in line for marker in SANITIZER_MARKERS):
                return line
        return None

    def send_signal(self, sig):
        """Sends sig without waiting. SIGTERM and SIGINT count as the stop request that
        stop() then only waits for (and checks); other signals (SIGHUP) do not."""
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.signalled = sig
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15, check=True):
        """Sends sig (unless send_signal already sent SIGTERM or SIGINT), waits up to
        timeout seconds and returns the exit code. With check, raises AssertionError
        (with the log tail) when the daemon had already died by itself, did not exit 0
        after SIGTERM/SIGINT, or reported a sanitizer error. Calling it again returns the
        same code without checking twice."""
        if not self.proc:
            return None
        died_early = None
        if self.proc.poll() is None:
            if self.signalled is None:
                self.signalled = sig
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self._checked = True
                raise AssertionError(f"daemon did not stop within {timeout}s of {sig!r}; log "
                                     f"tail:\n{self.log_tail()}")
        elif self.signalled is None:
            died_early = self.proc.returncode
        if self.log_file:
            self.log_file.close()
        code = self.proc.returncode
        if check and not self._checked:
            self._checked = True
            problems = []
            if died_early is not None:
                problems.append(f"the daemon exited by itself with {died_early} before it was "
                                "stopped")
            elif self.signalled in (signal.SIGTERM, signal.SIGINT) and code != 0:
                what = (f"was killed by signal {-code}" if code < 0 else f"exited with {code}")
                problems.append(f"the daemon {what} after {self.signalled!r} (expected 0)")
            report = self.sanitizer_report()
            if report:
                problems.append(f"the log holds a sanitizer report: {report}")
            if problems:
                raise AssertionError("; ".join(problems) + f"\nlog tail:\n{self.log_tail()}")
        return code

    def kill(self):
        """SIGKILLs the daemon (a crash) and waits for it; its exit is not checked, and
        start() may run it again on the same directory."""
        if self.proc and self.proc.poll() is None:
            self.signalled = signal.SIGKILL
            self.proc.kill()
            self.proc.wait()
        self._checked = True
        if self.log_file:
            self.log_file.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path, method="GET", headers=None, timeout=10, body=None):
        """One request; body may be bytes, str, or an object sent as JSON (with
        Content-Type: application/json unless headers name one)."""
        headers = dict(headers or {})
        data = body
        if body is not None and not isinstance(body, (bytes, str)):
            data = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(data, str):
            data = data.encode("utf-8")
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            with _opener.open(req, timeout=timeout) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request(path, **kw)

    def get_json(self, path):
        r = self.get(path)
        return r.status, r.json()

    def source(self, name):
        _, body = self.get_json("/api/v1/sources")
        for s in body["sources"]:
            if s["name"] == name:
                return s
        raise KeyError(name)


def metric(text, name, **labels):
    """The value of the sample `name{labels}` in Prometheus exposition text, or None."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            if dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == labels:
                return float(m.group(3))
    return None
