"""Helpers for integration tests: a throwaway CA and certificates it issues, and
fixture_server.py as a context manager.

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


_CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial.txt
default_md = sha256
policy = any_name
copy_extensions = none
unique_subject = no
[any_name]
commonName = supplied
"""


def issue_cert(ca, directory, dns_names=("localhost",), ip_addresses=("127.0.0.1",),
               not_before=None, not_after=None):
    """Writes server.crt and server.key to directory, signed by ca (a CaPaths from make_ca)
    and naming dns_names and ip_addresses. not_before and not_after ("20200101000000Z")
    set the validity, e.g. to one long past; by default it is valid for two days from now.
    Returns the directory's absolute path, ready for FixtureServer(tls_dir=...)."""
    os.makedirs(directory, exist_ok=True)
    work = tempfile.mkdtemp(prefix="issue-", dir=directory)
    try:
        with open(os.path.join(work, "ca.cnf"), "w") as f:
            f.write(_CA_CONFIG)
        open(os.path.join(work, "index.txt"), "w").close()
        with open(os.path.join(work, "serial.txt"), "w") as f:
            f.write(f"{int.from_bytes(os.urandom(8), 'big'):016X}\n")
        sans = [f"DNS:{n}" for n in dns_names] + [f"IP:{a}" for a in ip_addresses]
        with open(os.path.join(work, "server.ext"), "w") as f:
            f.write(f"subjectAltName={','.join(sans)}\n"
                    "basicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")
        cn = dns_names[0] if dns_names else ip_addresses[0]
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc",
                 "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={cn}", cwd=work)
        dates = ["-enddate", not_after] if not_after else ["-days", "2"]
        if not_before:
            dates += ["-startdate", not_before]
        _openssl("ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", ca.ca_cert,
                 "-keyfile", ca.ca_key, "-in", "server.csr", "-out", "server.crt",
                 "-extfile", "server.ext", *dates, cwd=work)
        for name in ("server.crt", "server.key"):
            os.replace(os.path.join(work, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return os.path.abspath(directory)


class FixtureServer:
    """Runs fixture_server.py as a child process for the duration of a with-block.

    With tls_dir (holding server.crt and server.key, e.g. from make_ca) it serves HTTPS too.
    With http_port it serves HTTP on that port (say, where an earlier server was).
    """

    def __init__(self, tls_dir=None, start_timeout=15.0, verbose=False, http_port=None):
        self.tls_dir = tls_dir
        self.fixed_http_port = http_port
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
        if self.fixed_http_port:
            args += ["--http-port", str(self.fixed_http_port)]
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

    def set_page(self, path, body, content_type=None, once=False):
        """Registers body (bytes or str) as the page served at path; with once, as the
        answer to the next request only, after which the page registered before is back."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        query = {"path": path}
        if content_type:
            query["content_type"] = content_type
        if once:
            query["once"] = "1"
        self._control("PUT", "page", data=body, **query)

    def set_mode(self, path, mode, retry_after=None):
        """Switches how path is served: ok, 500, 503, 429, 404, hang, huge, huge_stream,
        redirect_loop, reset, trickle. retry_after replaces the Retry-After value ("5")
        that 503 and 429 send."""
        query = {"path": path, "mode": mode}
        if retry_after is not None:
            query["retry_after"] = retry_after
        self._control("PUT", "mode", data=b"", **query)

    def reload_tls(self):
        """Makes the server read server.crt and server.key from its tls_dir again; later
        handshakes present the new certificate."""
        self._control("PUT", "tls", data=b"")

    def log(self, path):
        """The requests seen for path: [{method, target, headers, tls, time}]."""
        return json.loads(self._control("GET", "log", path=path))

    def clear_log(self, path):
        """Forgets the requests seen for path."""
        self._control("DELETE", "log", path=path)
