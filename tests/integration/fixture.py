"""Helpers for integration tests: a throwaway CA, and fixture_server.py as a context manager.

Everything here talks to 127.0.0.1 only, and never through a proxy.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fixture_server.py")

# Loopback only: an empty ProxyHandler keeps *_proxy variables from rerouting requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate until it returns something truthy, and returns that; raises
    AssertionError once timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class CaPaths(str):
    """The CA certificate's path (so it can be passed as a ca_file directly), with the
    other generated files as attributes: ca_cert, ca_key, server_cert, server_key."""

    def __new__(cls, ca_cert, ca_key, server_cert, server_key):
        self = super().__new__(cls, ca_cert)
        self.ca_cert = ca_cert
        self.ca_key = ca_key
        self.server_cert = server_cert
        self.server_key = server_key
        return self


def _openssl(*args, cwd):
    result = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stdout.decode(errors='replace')}")


def make_ca(directory, dns_names=("localhost",), ip_addresses=("127.0.0.1",)):
    """Creates ca.crt/ca.key and a server.crt/server.key signed by it in directory, the
    server certificate naming dns_names and ip_addresses. Returns CaPaths."""
    os.makedirs(directory, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=somrated test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    sans = [f"DNS:{n}" for n in dns_names] + [f"IP:{a}" for a in ip_addresses]
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write(f"subjectAltName={','.join(sans)}\n"
                "basicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    cn = dns_names[0] if dns_names else ip_addresses[0]
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={cn}",
             cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
             cwd=directory)
    base = os.path.abspath(directory)
    return CaPaths(*(os.path.join(base, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key")))


class FixtureServer:
    """Runs fixture_server.py as a child process for the duration of a with-block.

    With tls_dir (holding server.crt and server.key, e.g. from make_ca) it serves HTTPS too.
    """

    def __init__(self, tls_dir=None, start_timeout=15.0, verbose=False):
        self.tls_dir = tls_dir
        self.start_timeout = start_timeout
        self.verbose = verbose
        self.proc = None
        self.http_port = None
        self.https_port = None
        self._dir = None

    def __enter__(self):
        self._dir = tempfile.mkdtemp(prefix="somrated-fixture-")
        port_file = os.path.join(self._dir, "ports.json")
        args = [sys.executable, SERVER, "--port-file", port_file]
        if self.tls_dir:
            args += ["--tls-dir", self.tls_dir]
        if self.verbose:
            args.append("--verbose")
        self._stderr = open(os.path.join(self._dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=subprocess.STDOUT)
        try:
            ports = wait_until(lambda: self._read_ports(port_file), timeout=self.start_timeout,
                               what="fixture server to write its ports")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.http_port = ports["http"]
        self.https_port = ports["https"]
        return self

    def _read_ports(self, port_file):
        if self.proc.poll() is not None:
            raise AssertionError(f"fixture server exited with {self.proc.returncode}:\n{self.output()}")
        try:
            with open(port_file) as f:
                return json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def __exit__(self, *exc):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._stderr.close()
            self.proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        return False

    def output(self):
        """What the server wrote to stdout and stderr so far."""
        with open(os.path.join(self._dir, "stderr.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def url(self, path, tls=False, host="127.0.0.1"):
        """The URL serving path; host may be "localhost" (the certificate names both)."""
        if tls and self.https_port is None:
            raise ValueError("FixtureServer was started without tls_dir")
        scheme, port = ("https", self.https_port) if tls else ("http", self.http_port)
        return f"{scheme}://{host}:{port}{path}"

    def _control(self, method, endpoint, data=None, **query):
        url = f"http://127.0.0.1:{self.http_port}/_fixture/{endpoint}?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, data=data, method=method)
        with _opener.open(req, timeout=10) as r:
            return r.read()

    def set_page(self, path, body, content_type=None):
        """Registers body (bytes or str) as the page served at path."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        query = {"path": path}
        if content_type:
            query["content_type"] = content_type
        self._control("PUT", "page", data=body, **query)

    def set_mode(self, path, mode):
        """Switches how path is served: ok, 500, 503, 404, hang, huge, redirect_loop, reset,
        trickle."""
        self._control("PUT", "mode", data=b"", path=path, mode=mode)

    def log(self, path):
        """The requests seen for path: [{method, target, headers, tls, time}]."""
        return json.loads(self._control("GET", "log", path=path))

    def clear_log(self, path):
        """Forgets the requests seen for path."""
        self._control("DELETE", "log", path=path)
