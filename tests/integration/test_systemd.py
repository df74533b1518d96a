"""The daemon's side of the systemd contract, with the test playing the service manager:
a notification socket that sees READY, STATUS, WATCHDOG, RELOADING and STOPPING;
socket activation through systemd-socket-activate; configuration reload on SIGHUP; and
a clean shutdown under load. Every daemon reads local sources only (file://)."""

import array
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from daemon import BINARY, Daemon, wait_for  # noqa: E402
from test_daemon import NBKR, config, latest_rates, seed_page  # noqa: E402
from test_lifecycle import parse_response  # noqa: E402

SEED_RATES = {"USD": 87.45, "EUR": 99.56, "RUB": 1.10}
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"

NBKR_SOURCE = f"""
[[source]]
name = "nbkr"
kind = "nbkr"
url = "file://{os.path.abspath(NBKR)}"
interval = "1h"
"""

RULE = """
[[alert]]
name = "usd-above-1000"
currency = "USD"
source = "24kg"
above = 1000
"""


class Message:
    """One notification datagram: its text, its KEY=VALUE fields and the sender's pid."""

    def __init__(self, data, pid):
        self.text = data.decode("utf-8")
        self.fields = dict(line.split("=", 1) for line in self.text.split("\n") if "=" in line)
        self.pid = pid

    def __repr__(self):
        return f"Message({self.text!r}, pid={self.pid})"


class NotifySocket:
    """The service manager's notification socket: an abstract AF_UNIX datagram socket,
    with SO_PASSCRED so each datagram says which process sent it (as in
    INTEGRATIONS.md's notify_listen.py). Messages are read in order; expect() moves a
    cursor past the one it returns, so consecutive expect() calls check their order."""

    def __init__(self):
        self.address = f"@somrated-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages = []
        self.cursor = 0

    def close(self):
        self.sock.close()

    def _read(self, timeout):
        """Reads one datagram into messages; False when none came within timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64) + socket.CMSG_SPACE(12))
        except (socket.timeout, BlockingIOError):
            return False
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = array.array("i", payload[:12])[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - len(payload) % 4])
                for fd in fds:
                    os.close(fd)
        self.messages.append(Message(data, pid))
        return True

    def drain(self):
        """Reads every datagram already queued."""
        while self._read(0.0):
            pass
        return self.messages

    def expect(self, pred, timeout=20, what="a notification"):
        """The first message after the cursor that satisfies pred, reading more as
        needed; the cursor moves past it. Fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while self.cursor < len(self.messages):
                m = self.messages[self.cursor]
                self.cursor += 1
                if pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; received: {self.messages}")
            self._read(min(left, 1.0))

    def status(self, pred, since, what):
        """expect() a STATUS whose text satisfies pred among the messages from index
        since on: a status comes from another thread than READY, in either order."""
        self.cursor = since
        return self.expect(lambda m: "STATUS" in m.fields and pred(m.fields["STATUS"]), what=what)

    def field(self, key, value=None, timeout=20):
        """expect() the next message carrying key (with value, when given)."""
        return self.expect(lambda m: key in m.fields and (value is None or m.fields[key] == value),
                           timeout=timeout, what=f"{key}={value if value is not None else '…'}")


def read_until_closed(sock):
    """Everything the peer sends until it closes; raises ConnectionResetError on a reset."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class Systemd(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="somrated-sd-")
        self.page = os.path.join(self.work, "page.html")
        with open(self.page, "wb") as f:
            f.write(seed_page())
        self.notify = NotifySocket()
        self.addCleanup(self.notify.close)

    def file_config(self, interval="1h"):
        return config("file://" + self.page, interval=interval, nbkr=False)

    def start(self, cfg=None, env=None, **kw):
        d = Daemon(cfg or self.file_config(),
                   env={"NOTIFY_SOCKET": self.notify.address, **(env or {})}, **kw)
        d.start()
        self.addCleanup(d.stop)
        return d

    def write_config(self, d, text):
        with open(d.config_path, "w") as f:
            f.write(text.replace("@DB@", d.db))

    def source_names(self, d):
        status, body = d.get_json("/api/v1/sources")
        self.assertEqual(status, 200)
        return [s["name"] for s in body["sources"]]

    def alert_names(self, d):
        status, body = d.get_json("/api/v1/alerts")
        self.assertEqual(status, 200)
        return [a["name"] for a in body["alerts"]]

    # -- READY, STATUS, WATCHDOG, STOPPING ----------------------------------------------

    def test_ready_status_watchdog_and_stopping(self):
        d = self.start(env={"WATCHDOG_USEC": "1000000"})
        ready = self.notify.field("READY", "1")
        self.assertEqual(ready.pid, d.proc.pid)
        # Nothing came before READY but (possibly) status lines and watchdog pings.
        for m in self.notify.messages[:self.notify.cursor - 1]:
            self.assertTrue(set(m.fields) <= {"STATUS", "WATCHDOG"}, m)
        # Ready means the store is open and the socket listens.
        self.assertTrue(os.path.exists(d.db))
        with socket.create_connection(("127.0.0.1", d.port), timeout=5):
            pass
        self.assertIn("listening on 127.0.0.1:", ready.fields["STATUS"])

        # Pings every half of WATCHDOG_USEC: several come while we wait for them.
        for _ in range(4):
            self.notify.field("WATCHDOG", "1", timeout=10)
        self.assertIn("watchdog: pinging every 500 ms", d.log())

        # The status line reports the scrape and the alerts.
        wait_for(lambda: latest_rates(d) == SEED_RATES, what="the first scrape")
        status = self.notify.status(
            lambda text: re.fullmatch(r"24kg ok \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; 0 alerts firing",
                                      text), 0, "a STATUS with the scrape")

        d.send_signal(signal.SIGTERM)
        stopping = self.notify.field("STOPPING", "1")
        self.assertEqual(stopping.pid, d.proc.pid)
        self.assertEqual(d.stop(), 0)
        # Nothing but watchdog pings after STOPPING.
        for m in self.notify.drain()[self.notify.cursor:]:
            self.assertEqual(set(m.fields), {"WATCHDOG"}, m)

    def test_watchdog_meant_for_another_process_is_ignored(self):
        d = self.start(env={"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
        self.notify.field("READY", "1")
        # The watchdog is set up before READY is sent; it said nothing.
        self.assertNotIn("watchdog:", d.log())
        self.assertEqual(d.stop(), 0)
        self.assertFalse([m for m in self.notify.drain() if "WATCHDOG" in m.fields])

    def test_no_ready_when_the_store_cannot_be_opened(self):
        for db in (os.path.join(self.work, "missing", "dir", "rates.db"),  # no such directory
                   self.work):  # a directory, not a file
            with self.subTest(db=db):
                cfg_path = os.path.join(self.work, "somrated.toml")
                with open(cfg_path, "w") as f:
                    f.write(self.file_config())
                env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
                env["NOTIFY_SOCKET"] = self.notify.address
                proc = subprocess.run(
                    [BINARY, "--config", cfg_path, "--listen", "127.0.0.1:0", "--db", db],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=60)
                out = proc.stdout.decode("utf-8", "replace")
                self.assertNotEqual(proc.returncode, 0, out)
                self.assertIn("cannot open database", out)
                # Datagrams are queued before the sender's call returns: all are here.
                sent = self.notify.drain()[self.notify.cursor:]
                self.notify.cursor = len(self.notify.messages)
                self.assertFalse([m for m in sent if "READY" in m.fields], sent)
                self.assertTrue(any("cannot open database" in m.fields.get("STATUS", "")
                                    for m in sent), sent)

    # -- reload -------------------------------------------------------------------------

    def test_sighup_sends_reloading_with_monotonic_usec_then_ready(self):
        d = self.start()
        self.notify.field("READY", "1")
        before = time.monotonic_ns() // 1000
        d.send_signal(signal.SIGHUP)
        reloading = self.notify.field("RELOADING", "1")
        after = time.monotonic_ns() // 1000
        # One datagram with both, in this order; the time is CLOCK_MONOTONIC, as ours.
        self.assertRegex(reloading.text, r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        self.assertLessEqual(before, int(reloading.fields["MONOTONIC_USEC"]))
        self.assertLessEqual(int(reloading.fields["MONOTONIC_USEC"]), after)
        self.notify.field("READY", "1")
        wait_for(lambda: "configuration reloaded: no changes" in d.log(), what="the reload log")
        self.assertEqual(d.stop(), 0)

    def test_sighup_applies_a_changed_config_and_keeps_a_broken_one_out(self):
        base = self.file_config()
        d = self.start(base)
        self.notify.field("READY", "1")
        wait_for(lambda: latest_rates(d) == SEED_RATES, what="the first scrape")
        self.assertEqual(self.source_names(d), ["24kg"])
        self.assertEqual(self.alert_names(d), [])
        first_24kg = d.source("24kg")

        # A keep-alive connection, open across both reloads.
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b'{"status":"ok"}'))
        local = conn.sock.getsockname()

        # A new source and a new rule; max_connections cannot change while running.
        self.write_config(d, base + NBKR_SOURCE + RULE + "\n[server]\nmax_connections = 100\n")
        d.send_signal(signal.SIGHUP)
        self.notify.field("RELOADING", "1")
        since = self.notify.cursor
        self.notify.field("READY", "1")
        self.assertEqual(self.source_names(d), ["24kg", "nbkr"])
        self.assertIn("usd-above-1000", self.alert_names(d))
        wait_for(lambda: d.source("nbkr")["last_success"], what="the new source's first scrape")
        wait_for(lambda: latest_rates(d, "nbkr"), what="the new source's rates")
        wait_for(lambda: (a := {x["name"]: x for x in d.get_json("/api/v1/alerts")[1]["alerts"]})
                 and a["usd-above-1000"]["evaluated_at"], what="the new rule's first evaluation")
        log = d.log()
        self.assertIn("configuration reloaded: sources +nbkr; alert rules +usd-above-1000", log)
        self.assertIn("reload: [server] max_connections: 1024 -> 100 needs a restart", log)
        # The unchanged source kept its schedule: no extra scrape.
        self.assertEqual(d.source("24kg")["last_attempt"], first_24kg["last_attempt"])
        self.assertEqual(d.source("24kg")["next_scrape"], first_24kg["next_scrape"])
        self.notify.status(lambda text: "nbkr ok" in text, since, "a STATUS naming the new source")

        # A broken config: the running one stays, the log and the status say why.
        self.write_config(d, base + NBKR_SOURCE + RULE + "\n[[source]]\nnmae = \"typo\"\n")
        d.send_signal(signal.SIGHUP)
        self.notify.field("RELOADING", "1")
        since = self.notify.cursor
        self.notify.field("READY", "1")
        status = self.notify.status(lambda text: "reload failed" in text, since,
                                    "a STATUS saying the reload failed")
        self.assertIn("running on the previous configuration", status.fields["STATUS"])
        self.assertIn('unknown key "nmae"', status.fields["STATUS"])
        self.assertIn("reload failed, still running on the previous configuration", d.log())
        self.assertEqual(self.source_names(d), ["24kg", "nbkr"])
        self.assertIn("usd-above-1000", self.alert_names(d))
        self.assertEqual(latest_rates(d), SEED_RATES)

        # The keep-alive connection is the same one, and still answers.
        conn.request("GET", "/api/v1/latest")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual({k: v["rate"] for k, v in json.loads(r.read())["rates"].items()},
                         SEED_RATES)
        self.assertEqual(conn.sock.getsockname(), local)

        # Fixed again: the note goes away.
        self.write_config(d, base + NBKR_SOURCE)
        d.send_signal(signal.SIGHUP)
        self.notify.field("RELOADING", "1")
        since = self.notify.cursor
        self.notify.field("READY", "1")
        self.notify.status(lambda text: "reload failed" not in text, since,
                           "a STATUS without the note")
        self.assertNotIn("usd-above-1000", self.alert_names(d))
        self.assertEqual(d.stop(), 0)

    # -- socket activation ----------------------------------------------------------------

    @unittest.skipUnless(os.access(SOCKET_ACTIVATE, os.X_OK), "systemd-socket-activate missing")
    def test_socket_activation(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cfg_path = os.path.join(self.work, "somrated.toml")
        db = os.path.join(self.work, "rates.db")
        # [server] listen names the same port: binding it would fail while the passed
        # socket listens there, so an answer proves the passed socket was used.
        with open(cfg_path, "w") as f:
            f.write(self.file_config().replace("@DB@", db)
                    + f'\n[server]\nlisten = "127.0.0.1:{port}"\n')
        log_path = os.path.join(self.work, "daemon.log")
        with open(log_path, "wb") as log:
            activator = subprocess.Popen(
                [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", "-E", f"NOTIFY_SOCKET={self.notify.address}",
                 BINARY, "--config", cfg_path],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: activator.poll() is None and (activator.kill(), activator.wait()))

        def log_text():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        wait_for(lambda: f"Listening on 127.0.0.1:{port}" in log_text(),
                 what="systemd-socket-activate to listen")
        # The first connection starts the daemon, which answers it on the passed socket.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b'{"status":"ok"}'))
        conn.close()
        ready = self.notify.field("READY", "1")
        # systemd-socket-activate execs the daemon in its own process.
        daemon_pid = activator.pid
        self.assertEqual(ready.pid, daemon_pid)
        self.assertIn(f"listening on 127.0.0.1:{port}", ready.fields["STATUS"])
        text = log_text()
        self.assertIn("using the listening socket passed by the service manager; "
                      f'[server] listen = "127.0.0.1:{port}" is ignored', text)
        self.assertIn(f"listening on http://127.0.0.1:{port}", text)

        os.kill(daemon_pid, signal.SIGTERM)
        self.notify.field("STOPPING", "1")
        self.assertEqual(activator.wait(20), 0, log_text())
        self.assertTrue(log_text().rstrip().endswith("stopped"), log_text()[-2000:])

    # -- shutdown -----------------------------------------------------------------------

    def test_sigterm_under_load_answers_or_refuses_cleanly(self):
        d = self.start(self.file_config(interval="1s"))
        wait_for(lambda: latest_rates(d) == SEED_RATES, what="the first scrape")
        request = b"GET /api/v1/latest HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        lock = threading.Lock()
        outcomes = []  # (thread, kind, detail)
        answered = [0] * 6

        def hammer(i):
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", d.port), timeout=20)
                except ConnectionRefusedError:
                    with lock:
                        outcomes.append((i, "refused", None))
                    return
                except OSError as e:
                    with lock:
                        outcomes.append((i, "connect error", repr(e)))
                    return
                with sock:
                    try:
                        sock.sendall(request)
                        data = read_until_closed(sock)
                    except OSError as e:  # a reset, a broken pipe, a timeout
                        with lock:
                            outcomes.append((i, "error", repr(e)))
                        continue
                try:
                    status, _, body = parse_response(data)
                except (AssertionError, KeyError, ValueError) as e:
                    with lock:
                        outcomes.append((i, "incomplete", f"{e}: {data[:200]!r}"))
                    continue
                with lock:
                    outcomes.append((i, "answered", status))
                    answered[i] += 1

        threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: min(answered) >= 20, timeout=60, what="every thread to be answered")
        d.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
            self.assertFalse(t.is_alive(), "a client thread is still running")
        self.assertEqual(d.stop(), 0)

        bad = [o for o in outcomes if o[1] not in ("answered", "refused")]
        self.assertEqual(bad, [], f"{len(outcomes)} requests")
        self.assertEqual(sorted(i for i, kind, _ in outcomes if kind == "refused"), list(range(6)))
        statuses = {status for _, kind, status in outcomes if kind == "answered"}
        self.assertLessEqual(statuses, {200, 503})
        log = d.log()
        self.assertIn("SIGTERM received: shutting down", log)
        self.assertTrue(log.rstrip().endswith("stopped"), log[-2000:])

        # Closed cleanly: the last connection checkpointed and removed the WAL.
        self.assertFalse(os.path.exists(d.db + "-wal"))
        db = sqlite3.connect(d.db)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        finally:
            db.close()


if __name__ == "__main__":
    unittest.main()
