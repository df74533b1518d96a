"""Runs the real somrated binary for integration tests: writes a config, starts the
daemon on an ephemeral loopback port, and offers small HTTP helpers."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BINARY = os.environ.get("SOMRATED_BINARY", "../../build/somrated")
TEST_DATA = os.environ.get("SOMRATED_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))


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
    """A somrated process with its own config, database and log file."""

    def __init__(self, config_toml, extra_args=(), workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="somrated-it-")
        self.db = os.path.join(self.dir, "rates.db")
        self.config_path = os.path.join(self.dir, "somrated.toml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        text = config_toml.replace("@DB@", self.db)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None

    def start(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BINARY, "--config", self.config_path, "--listen", "127.0.0.1:0", *self.extra_args],
            stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        match = wait_for(lambda: self._listening(), timeout=20, what="daemon to listen")
        self.port = int(match)
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
        return m.group(1) if m else None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}")
        if self.proc:
            self.log_file.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path, method="GET", headers=None, timeout=10):
        req = urllib.request.Request(self.url(path), method=method, headers=headers or {})
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
