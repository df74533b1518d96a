"""Runs a real Prometheus Alertmanager (Debian's prometheus-alertmanager, 0.25) for
integration tests, on 127.0.0.1 only, with its own config and storage in a temp dir.

    with Alertmanager() as am:            # waits until GET /-/ready answers 200
        am.post_alerts([{"labels": {"alertname": "x"}}])
        am.alerts(filters=['alertname="x"'])

It listens on an ephemeral loopback port (found through /proc once it listens), with
clustering disabled (--cluster.listen-address=""), so it opens no other port. Its one
route goes to a receiver that does nothing, or, given webhook_url, to that webhook.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from daemon import _proc_listening_port

BINARY = os.environ.get("SOMRATED_ALERTMANAGER", "/usr/bin/prometheus-alertmanager")

# Never through a proxy: loopback only.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def available():
    """True when the Alertmanager binary is installed."""
    return os.access(BINARY, os.X_OK)


def config_yaml(webhook_url=None):
    """An Alertmanager config with one route: to a no-op receiver, or to webhook_url
    (sent at once, resolved alerts too)."""
    if webhook_url is None:
        return "route:\n  receiver: sink\nreceivers:\n  - name: sink\n"
    return ("route:\n"
            "  receiver: hook\n"
            "  group_by: ['alertname']\n"
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: hook\n"
            "    webhook_configs:\n"
            f"      - url: {json.dumps(webhook_url)}\n"
            "        send_resolved: true\n")


class Alertmanager:
    """An Alertmanager child process for the duration of a with-block."""

    def __init__(self, webhook_url=None, start_timeout=30.0):
        self.webhook_url = webhook_url
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.dir = None
        self._log = None

    # -- life cycle -------------------------------------------------------------------

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-am-")
        config = os.path.join(self.dir, "alertmanager.yml")
        with open(config, "w") as f:
            f.write(config_yaml(self.webhook_url))
        storage = os.path.join(self.dir, "data")
        os.mkdir(storage)
        self._log = open(os.path.join(self.dir, "alertmanager.log"), "wb")
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        env["NO_PROXY"] = env["no_proxy"] = "*"
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={config}", f"--storage.path={storage}",
             "--web.listen-address=127.0.0.1:0", "--cluster.listen-address=",
             "--log.level=debug"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            cwd=self.dir)
        try:
            self.port = int(self._wait(self._listening, "Alertmanager to listen"))
            self._wait(self._ready, "Alertmanager GET /-/ready to answer 200")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, predicate, what):
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Alertmanager exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            found = predicate()
            if found:
                return found
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {self.start_timeout}s waiting for "
                                     f"{what}; log:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self):
        m = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', self.log())
        if m and m.group(1) != "0":
            return m.group(1)
        try:
            return _proc_listening_port(self.proc.pid)
        except OSError:
            return None

    def _ready(self):
        try:
            return self.request("/-/ready")[0] == 200
        except OSError:
            return False

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log(self):
        """What Alertmanager logged so far."""
        try:
            with open(os.path.join(self.dir, "alertmanager.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # -- API --------------------------------------------------------------------------

    @property
    def url(self):
        """The base URL (what a somrated alertmanager notifier's url is set to)."""
        return f"http://127.0.0.1:{self.port}"

    def request(self, path, method="GET", body=None, timeout=10):
        """(status, body bytes) of one request; HTTP errors are results."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with _opener.open(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    def post_alerts(self, alerts):
        """POST /api/v2/alerts; raises AssertionError unless it answers 200."""
        status, body = self.request("/api/v2/alerts", "POST", alerts)
        if status != 200:
            raise AssertionError(f"POST /api/v2/alerts answered {status}: {body[:300]!r}")

    def alerts(self, filters=(), active=None, silenced=None, inhibited=None,
               unprocessed=None, receiver=None):
        """GET /api/v2/alerts: the alerts it holds (resolved ones are not listed), with
        matcher filters such as 'alertname="usd-above-90"'."""
        query = [("filter", f) for f in filters]
        for name, value in (("active", active), ("silenced", silenced),
                            ("inhibited", inhibited), ("unprocessed", unprocessed)):
            if value is not None:
                query.append((name, "true" if value else "false"))
        if receiver is not None:
            query.append(("receiver", receiver))
        path = "/api/v2/alerts" + ("?" + urllib.parse.urlencode(query) if query else "")
        status, body = self.request(path)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {body[:300]!r}")
        return json.loads(body)
