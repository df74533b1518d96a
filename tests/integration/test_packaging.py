"""The systemd units, the manual, `cmake --install` and the Debian package.

- The shipped unit passes `systemd-analyze verify` with no output and `systemd-analyze
  security --offline=yes` at exposure <= 1.5 (threshold 15 on its 0-100 scale).
- The daemon, under a typical workload (HTTPS scrape, API requests, an exec notifier),
  makes only system calls the unit's filter allows, from the address families it allows,
  and never asks for writable-and-executable memory (strace).
- `cmake --install` into a DESTDIR installs exactly the expected files; `cpack -G DEB`
  builds a package whose Depends come from dpkg-shlibdeps and whose conffile is the config;
  dpkg installs, upgrades, removes and purges it in a private root (never the real system),
  and the maintainer scripts only ever reload systemd.

The package is built from the build tree ctest runs in (SOMRATED_BUILD_DIR, CMAKE_COMMAND
and CPACK_COMMAND come from tests/CMakeLists.txt). Nothing here contacts another host.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from daemon import BINARY, _proc_listening_port, wait_for  # noqa: E402
from fixture import FixtureServer, make_ca  # noqa: E402
from test_daemon import seed_page  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("SOMRATED_BUILD_DIR", os.path.dirname(os.path.abspath(BINARY)))
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")
CPACK = os.environ.get("CPACK_COMMAND", "cpack")
SERVICE = os.path.join(ROOT, "systemd", "somrated.service")
SOCKET = os.path.join(ROOT, "systemd", "somrated.socket")
EXAMPLE = os.path.join(ROOT, "packaging", "somrated.toml")
MANPAGE = os.path.join(ROOT, "docs", "somrated.8")
SHIPPED_EXEC = "/usr/bin/somrated"
CONFFILE = "/etc/somrated/somrated.toml"
# dpkg looks for ldconfig and start-stop-daemon on PATH.
TOOL_PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"


def have(tool):
    return shutil.which(tool, path=TOOL_PATH) is not None


def run(args, check=True, **kw):
    """Runs args, capturing text output; fails the test with the output when check and
    the exit status is not 0."""
    env = kw.pop("env", None) or dict(os.environ, PATH=TOOL_PATH)
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}")
    return result


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def binary_version():
    """The version `somrated --version` prints."""
    out = run([BINARY, "--version"]).stdout
    m = re.fullmatch(r"somrated (\S+)\n", out)
    assert m, out
    return m.group(1)


def unit_values(text, key):
    """The values of key= in a unit file's text, in order."""
    return re.findall(rf"^{re.escape(key)}=(.*)$", text, re.M)


def unit_running(text, binary, directory):
    """Writes a copy of the unit text whose ExecStart= runs binary (verify insists that the
    program exists) into directory, under the unit's own name. Returns its path."""
    assert re.search(rf"^ExecStart={re.escape(SHIPPED_EXEC)} ", text, re.M), text
    path = os.path.join(directory, "somrated.service")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(f"ExecStart={SHIPPED_EXEC} ", f"ExecStart={binary} "))
    return path


def verify(*units, man=False, env=None):
    """systemd-analyze verify's complaints about units: "" when clean. It exits 0 on
    unknown keys and unparsable values, so what counts is that it prints nothing. With
    man, Documentation=man: pages must be found (through MANPATH in env)."""
    args = ["systemd-analyze", "verify"] + ([] if man else ["--man=no"]) + list(units)
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = run(args, check=False, env=full_env)
    out = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not out:
        out = f"exit status {result.returncode}"
    return out


def expected_files(prefix="usr"):
    """Every file an install with prefix /usr (and the config under /etc) holds, relative
    to the root."""
    files = {
        "etc/somrated/somrated.toml",
        f"{prefix}/bin/somrated",
        f"{prefix}/lib/systemd/system/somrated.service",
        f"{prefix}/lib/systemd/system/somrated.socket",
        f"{prefix}/share/man/man8/somrated.8",
        f"{prefix}/share/doc/somrated/README.md",
        f"{prefix}/share/doc/somrated/examples/somrated.toml",
    }
    for sql in glob.glob(os.path.join(ROOT, "sql", "*.sql")):
        files.add(f"{prefix}/share/somrated/sql/{os.path.basename(sql)}")
    grafana = os.path.join(ROOT, "contrib", "grafana")
    for directory, _, names in os.walk(grafana):
        for name in names:
            rel = os.path.relpath(os.path.join(directory, name), grafana)
            files.add(f"{prefix}/share/somrated/grafana/{rel}")
    return files


def files_under(root):
    """Every non-directory under root, relative to it."""
    out = set()
    for directory, _, names in os.walk(root):
        for name in names:
            out.add(os.path.relpath(os.path.join(directory, name), root))
    return out


@unittest.skipUnless(have("systemd-analyze"), "systemd-analyze is not installed (package systemd)")
class UnitFiles(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-units-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_service_and_socket_verify_clean(self):
        service = unit_running(read(SERVICE), os.path.abspath(BINARY), self.dir)
        socket_copy = shutil.copy(SOCKET, self.dir)
        self.assertEqual(verify(service, socket_copy), "")

    def test_verify_check_reports_a_misspelt_directive(self):
        # The check above relies on verify printing what it dislikes; a typo it only warns
        # about must fail it.
        text = read(SERVICE).replace("NoNewPrivileges=yes", "NoNewPrivilegs=yes")
        service = unit_running(text, os.path.abspath(BINARY), self.dir)
        self.assertIn("NoNewPrivilegs", verify(service))

    def test_security_exposure_at_most_1_5(self):
        result = run(["systemd-analyze", "security", "--offline=yes", "--threshold=15", SERVICE],
                     check=False)
        m = re.search(r"Overall exposure level for somrated\.service: (\d+\.\d+)", result.stdout)
        self.assertIsNotNone(m, result.stdout + result.stderr)
        exposure = float(m.group(1))
        print(f"\nsystemd-analyze security: overall exposure {exposure}", file=sys.stderr)
        self.assertLessEqual(exposure, 1.5)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_security_threshold_fails_a_lax_unit(self):
        # The gate itself: the same unit without its sandbox is refused at threshold 15.
        lax = "\n".join(line for line in read(SERVICE).splitlines()
                        if not re.match(r"(Protect|Private|Restrict|SystemCall|Capability|"
                                        r"MemoryDeny|NoNew|DynamicUser|LockPersonality|UMask)",
                                        line))
        path = os.path.join(self.dir, "somrated.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(lax)
        result = run(["systemd-analyze", "security", "--offline=yes", "--threshold=15", path],
                     check=False)
        self.assertNotEqual(result.returncode, 0, result.stdout)

    def test_units_agree_with_the_example_config(self):
        service = read(SERVICE)
        example = tomllib.loads(read(EXAMPLE))
        self.assertEqual(unit_values(service, "ExecStart"),
                         [f"{SHIPPED_EXEC} --config {CONFFILE}"])
        self.assertEqual(unit_values(service, "ConfigurationDirectory"), ["somrated"])
        self.assertEqual(unit_values(service, "StateDirectory"), ["somrated"])
        self.assertEqual(os.path.dirname(example["storage"]["path"]), "/var/lib/somrated")
        self.assertEqual(unit_values(read(SOCKET), "ListenStream"), [example["server"]["listen"]])
        self.assertEqual(unit_values(service, "Type"), ["notify"])
        self.assertEqual(unit_values(service, "ExecReload"), ["/bin/kill -HUP $MAINPID"])


class ManualPage(unittest.TestCase):
    @unittest.skipUnless(have("groff"), "groff is not installed (package groff-base)")
    def test_renders_without_warnings(self):
        result = run(["groff", "-man", "-ww", "-z", "-Tutf8", MANPAGE],
                     env=dict(os.environ, LC_ALL="C.UTF-8"))
        self.assertEqual(result.stderr, "")

    def test_covers_every_option_and_command_of_help(self):
        help_text = run([BINARY, "--help"]).stdout
        page = read(MANPAGE).replace("\\-", "-")
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))
        self.assertGreaterEqual(len(options), 8, help_text)
        for option in sorted(options):
            self.assertIn(option, page)
        for command in ("scrape", "backup", "export", "import", "check-config", "vacuum"):
            self.assertRegex(page, rf"(?m)^\.(B|TP|SY).*{command}|^\.B {command}")

    def test_header_names_the_version(self):
        header = re.search(r'^\.TH SOMRATED 8 "[^"]*" "somrated ([^"]+)"', read(MANPAGE), re.M)
        self.assertIsNotNone(header)
        self.assertEqual(header.group(1), binary_version())


@unittest.skipUnless(os.path.exists(os.path.join(BUILD_DIR, "cmake_install.cmake")),
                     f"no build tree at {BUILD_DIR}")
class CmakeInstall(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="somrated-install-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def install(self, prefix):
        return run([CMAKE, "--install", BUILD_DIR, "--prefix", prefix],
                   env=dict(os.environ, DESTDIR=self.dir))

    def test_installs_the_expected_files(self):
        self.install("/usr")
        self.assertEqual(files_under(self.dir), expected_files())
        root = self.dir
        # With prefix /usr the unit is the shipped one, byte for byte.
        self.assertEqual(read(f"{root}/usr/lib/systemd/system/somrated.service"), read(SERVICE))
        self.assertEqual(read(f"{root}/usr/lib/systemd/system/somrated.socket"), read(SOCKET))
        self.assertEqual(read(f"{root}{CONFFILE}"), read(EXAMPLE))
        self.assertEqual(read(f"{root}/usr/share/doc/somrated/examples/somrated.toml"),
                         read(EXAMPLE))
        self.assertTrue(os.access(f"{root}/usr/bin/somrated", os.X_OK))
        self.assertEqual(run([f"{root}/usr/bin/somrated", "--version"]).stdout,
                         f"somrated {binary_version()}\n")

    def test_keeps_an_existing_config(self):
        self.install("/usr")
        config = f"{self.dir}{CONFFILE}"
        with open(config, "a", encoding="utf-8") as f:
            f.write("# edited by the administrator\n")
        result = self.install("/usr")
        self.assertIn(f"Keeping: {config}", result.stdout)
        self.assertTrue(read(config).endswith("# edited by the administrator\n"))

    @unittest.skipUnless(have("systemd-analyze"), "systemd-analyze is not installed")
    def test_other_prefix_gets_a_unit_running_its_binary(self):
        self.install("/usr/local")
        self.assertEqual(files_under(self.dir), expected_files("usr/local"))
        unit = read(f"{self.dir}/usr/local/lib/systemd/system/somrated.service")
        self.assertEqual(unit_values(unit, "ExecStart"),
                         [f"/usr/local/bin/somrated --config {CONFFILE}"])
        # Everything else is the shipped unit.
        self.assertEqual(unit.replace("/usr/local/bin/somrated", SHIPPED_EXEC), read(SERVICE))


def fake_systemctl(directory):
    """A systemctl that appends its arguments to directory/calls. Returns (bin dir, log)."""
    bin_dir = os.path.join(directory, "bin")
    os.makedirs(bin_dir)
    log = os.path.join(directory, "calls")
    with open(os.path.join(bin_dir, "systemctl"), "w", encoding="utf-8") as f:
        f.write(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    os.chmod(os.path.join(bin_dir, "systemctl"), 0o755)
    open(log, "w").close()
    return bin_dir, log


# A mount namespace of one's own; without root, inside a user namespace that maps the
# caller to root (where the kernel allows unprivileged user namespaces).
UNSHARE = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]


def can_unshare():
    if not have("unshare"):
        return False
    return run(UNSHARE + ["sh", "-c", "mount -t tmpfs tmpfs /run"], check=False).returncode == 0


@unittest.skipUnless(have("dpkg-deb") and have("dpkg-shlibdeps"),
                     "dpkg-dev is not installed (scripts/install-deps installs it)")
@unittest.skipUnless(os.path.exists(os.path.join(BUILD_DIR, "CPackConfig.cmake")),
                     f"no CPackConfig.cmake in {BUILD_DIR}")
class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="somrated-deb-")
        run([CPACK, "-G", "DEB", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
             "-B", cls.dir])
        debs = glob.glob(os.path.join(cls.dir, "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, True)

    def control(self):
        text = run(["dpkg-deb", "-f", self.deb]).stdout
        return dict(re.findall(r"^([A-Za-z-]+): (.*)$", text, re.M))

    def test_control_fields(self):
        control = self.control()
        self.assertEqual(control["Package"], "somrated")
        self.assertEqual(control["Version"], binary_version())
        self.assertEqual(control["Architecture"], run(["dpkg", "--print-architecture"]).stdout.strip())
        self.assertTrue(control["Maintainer"])
        self.assertTrue(control["Description"])
        self.assertEqual(os.path.basename(self.deb),
                         f"somrated_{control['Version']}_{control['Architecture']}.deb")

    def test_depends_come_from_the_linked_libraries(self):
        # Every shared library the binary links is provided by a package in Depends, as
        # dpkg-shlibdeps works it out; and this system satisfies each of them.
        depends = {}
        for item in self.control()["Depends"].split(","):
            m = re.fullmatch(r"\s*([a-z0-9.+-]+)(?::\w+)?\s*(?:\((>=|=|<=|>>|<<) ([^)]+)\))?\s*", item)
            self.assertIsNotNone(m, item)
            depends[m.group(1)] = (m.group(2), m.group(3))
        # The binary's own NEEDED entries, not what they pull in (libxml2 brings libicu).
        needed = re.findall(r"^\s+NEEDED\s+(\S+)$", run(["objdump", "-p", BINARY]).stdout, re.M)
        paths = dict(re.findall(r"^\s+(\S+) => (/\S+) \(", run(["ldd", BINARY]).stdout, re.M))
        self.assertGreater(len(needed), 5)
        for name in needed:
            library = paths[name]
            if "/libasan" in library or "/libubsan" in library or "/libtsan" in library:
                continue  # sanitizer builds
            owner = run(["dpkg", "-S", os.path.realpath(library)], check=False)
            if owner.returncode != 0:
                owner = run(["dpkg", "-S", library])
            package = owner.stdout.split(":")[0]
            self.assertIn(package, depends, f"{library} comes from {package}")
        for package, (op, version) in depends.items():
            installed = run(["dpkg-query", "-W", "-f", "${Version}", package], check=False)
            self.assertEqual(installed.returncode, 0, f"{package} is not installed here")
            if op:
                deb_op = {">=": "ge", "<=": "le", "=": "eq", ">>": "gt", "<<": "lt"}[op]
                self.assertEqual(run(["dpkg", "--compare-versions", installed.stdout, deb_op,
                                      version], check=False).returncode, 0,
                                 f"{package} {installed.stdout} does not satisfy {op} {version}")

    def test_conffiles_and_maintainer_scripts(self):
        self.assertEqual(run(["dpkg-deb", "-I", self.deb, "conffiles"]).stdout, CONFFILE + "\n")
        listing = run(["dpkg-deb", "-I", self.deb]).stdout
        for script in ("postinst", "prerm", "postrm"):
            # Mode 0755: dpkg-deb marks executable control members with "*".
            self.assertRegex(listing, rf"(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s")

    def test_contents(self):
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        files = set()
        for line in listing.splitlines():
            mode, owner, _, _, _, path = line.split(None, 5)
            self.assertEqual(owner, "root/root", line)
            if not mode.startswith("d"):
                files.add(path.removeprefix("./"))
        self.assertEqual(files, expected_files())

    def dpkg(self, root, *args, check=True):
        return run(["dpkg", f"--root={root}", "--log=/dev/null", "--force-script-chrootless",
                    "--force-not-root", "--force-depends", *args], check=check)

    def status(self, root):
        result = self.dpkg(root, "-s", "somrated", check=False)
        m = re.search(r"^Status: (.*)$", result.stdout, re.M)
        return m.group(1) if m else None

    def test_install_upgrade_remove_purge_in_a_private_root(self):
        # dpkg works on a root of its own, never on this system. The maintainer scripts
        # run outside it with DPKG_ROOT set (--force-script-chrootless), so they touch no
        # systemd and remove files only under that root.
        root = os.path.join(self.dir, "root")
        self.addCleanup(shutil.rmtree, root, True)
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "var/lib/dpkg/status"), "w").close()

        self.dpkg(root, "-i", self.deb)
        self.assertEqual(self.status(root), "install ok installed")
        self.assertEqual(files_under(root) - {p for p in files_under(root) if p.startswith("var/")},
                         expected_files())
        binary = os.path.join(root, "usr/bin/somrated")
        self.assertEqual(run([binary, "--version"]).stdout, f"somrated {binary_version()}\n")
        if have("systemd-analyze"):
            units = os.path.join(self.dir, "units")
            os.makedirs(units)
            installed = read(os.path.join(root, "usr/lib/systemd/system/somrated.service"))
            service = unit_running(installed, binary, units)
            socket_copy = shutil.copy(os.path.join(root, "usr/lib/systemd/system/somrated.socket"),
                                      units)
            # With the package's manual on MANPATH, Documentation=man:somrated(8) resolves.
            self.assertEqual(verify(service, socket_copy, man=have("man"),
                                    env={"MANPATH": os.path.join(root, "usr/share/man")}), "")

        # What running and enabling the service leaves behind, and an administrator's edits.
        state = os.path.join(root, "var/lib/private/somrated")
        os.makedirs(state)
        open(os.path.join(state, "rates.db"), "w").close()
        os.symlink("private/somrated", os.path.join(root, "var/lib/somrated"))
        wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants")
        os.makedirs(wants)
        os.symlink("/usr/lib/systemd/system/somrated.service", os.path.join(wants, "somrated.service"))
        other = os.path.join(wants, "other.service")
        os.symlink("/usr/lib/systemd/system/other.service", other)
        token = os.path.join(root, "etc/somrated/token")
        with open(token, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        config = os.path.join(root, CONFFILE.lstrip("/"))
        with open(config, "a", encoding="utf-8") as f:
            f.write("# edited by the administrator\n")

        # Upgrade (the same version again): the edited conffile stays.
        self.dpkg(root, "-i", self.deb)
        self.assertEqual(self.status(root), "install ok installed")
        self.assertTrue(read(config).endswith("# edited by the administrator\n"))

        # Remove: the program goes; configuration, data and enablement stay.
        self.dpkg(root, "-r", "somrated")
        self.assertEqual(self.status(root), "deinstall ok config-files")
        self.assertFalse(os.path.exists(binary))
        self.assertFalse(os.path.exists(os.path.join(root, "usr/lib/systemd/system/somrated.service")))
        self.assertTrue(os.path.exists(config))
        self.assertTrue(os.path.exists(os.path.join(root, "var/lib/somrated/rates.db")))
        self.assertTrue(os.path.islink(os.path.join(wants, "somrated.service")))

        # Purge: the conffile, the database and somrated's enablement go; the token an
        # administrator put in /etc/somrated and other units' links stay.
        self.dpkg(root, "-P", "somrated")
        self.assertIsNone(self.status(root))
        self.assertFalse(os.path.exists(config))
        self.assertFalse(os.path.lexists(os.path.join(root, "var/lib/somrated")))
        self.assertFalse(os.path.exists(state))
        self.assertFalse(os.path.lexists(os.path.join(wants, "somrated.service")))
        self.assertTrue(os.path.islink(other))
        self.assertTrue(os.path.exists(token))

    @unittest.skipUnless(can_unshare(), "needs unshare(1) and a mount namespace (root, or "
                         "unprivileged user namespaces) to give the scripts a private /run")
    def test_scripts_only_reload_systemd(self):
        # Each script runs in a mount namespace whose /run says "systemd is running", with a
        # systemctl that records its arguments: nothing is ever enabled or started.
        scripts = os.path.join(self.dir, "control")
        run(["dpkg-deb", "-e", self.deb, scripts])
        bin_dir, log = fake_systemctl(os.path.join(self.dir, "fake"))

        def calls(script, *args, booted=True, dpkg_root=None):
            open(log, "w").close()
            setup = "mount -t tmpfs tmpfs /run"
            if booted:
                setup += " && mkdir -p /run/systemd/system"
            env = dict(os.environ, PATH=f"{bin_dir}:{TOOL_PATH}")
            env.pop("DPKG_ROOT", None)
            if dpkg_root is not None:
                env["DPKG_ROOT"] = dpkg_root
            run(UNSHARE + ["sh", "-c", f'{setup} && exec "$0" "$@"',
                 os.path.join(scripts, script), *args], env=env)
            return read(log).splitlines()

        self.assertEqual(calls("postinst", "configure", ""), ["--system daemon-reload"])
        self.assertEqual(calls("postinst", "configure", "0.0.1"),
                         ["--system daemon-reload", "try-restart somrated.service"])
        self.assertEqual(calls("prerm", "upgrade", "0.2.0"), [])
        self.assertEqual(calls("prerm", "remove"), ["stop somrated.socket somrated.service"])
        self.assertEqual(calls("postrm", "remove"), ["--system daemon-reload"])
        self.assertEqual(calls("postrm", "upgrade", "0.2.0"), [])
        # Not booted with systemd, or installing into another root: no systemctl at all.
        self.assertEqual(calls("postinst", "configure", "", booted=False), [])
        self.assertEqual(calls("postrm", "remove", booted=False), [])
        self.assertEqual(calls("postinst", "configure", "0.0.1", dpkg_root=self.dir), [])


def syscall_group(name, cache={}):
    """The system calls in a systemd-analyze syscall-filter group, expanded."""
    if name not in cache:
        out = run(["systemd-analyze", "syscall-filter", name]).stdout
        names = set()
        for line in out.splitlines()[1:]:
            item = line.strip()
            if not item or item.startswith("#"):
                continue
            names |= syscall_group(item) if item.startswith("@") else {item.split()[0]}
        cache[name] = names
    return cache[name]


def allowed_syscalls(unit_text):
    """What the unit's SystemCallFilter= lines allow: the first allow list, less every
    "~" deny list."""
    allowed, denied = None, set()
    for value in unit_values(unit_text, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= syscall_group(item) if item.startswith("@") else {item}
        if deny:
            denied |= names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed - denied


# These requests go to the daemon on 127.0.0.1 only.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def traced_daemon(tracer):
    """The process id of the daemon strace (process tracer) started, from /proc, or None.
    strace forks short-lived probes of its own first, so the command line must match."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = read(f"/proc/{entry}/stat")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: fields follow the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == tracer and argv0 == BINARY:
            return int(entry)
    return None


def can_strace():
    if not have("strace"):
        return False
    return run(["strace", "-f", "-qq", "-o", "/dev/null", "true"], check=False).returncode == 0


@unittest.skipUnless(have("systemd-analyze") and can_strace(),
                     "needs systemd-analyze and a working strace (apt-get install strace)")
class Sandbox(unittest.TestCase):
    """The unit's filters cannot be applied without systemd as PID 1, so the daemon runs
    under strace instead and what it asked of the kernel is checked against them."""

    def test_daemon_stays_inside_the_units_filters(self):
        needed = run(["objdump", "-p", BINARY]).stdout
        if re.search(r"NEEDED\s+lib[at]san", needed):
            self.skipTest("a sanitizer build makes system calls of its own")
        unit = read(SERVICE)
        allowed = allowed_syscalls(unit)
        self.assertIn("epoll_wait", allowed)
        self.assertNotIn("setrlimit", allowed)
        families = set(unit_values(unit, "RestrictAddressFamilies")[0].split())

        work = tempfile.mkdtemp(prefix="somrated-sandbox-")
        self.addCleanup(shutil.rmtree, work, True)
        ca = make_ca(work)
        trace = os.path.join(work, "trace")
        log_path = os.path.join(work, "daemon.log")
        with FixtureServer(tls_dir=work) as fx:
            fx.set_page("/24kg", seed_page(usd="91.00"), "text/html")
            # An HTTPS source by name (the resolver), a rule that fires at once and an exec
            # notifier, so that a child process runs inside the same filter.
            config = os.path.join(work, "somrated.toml")
            with open(config, "w", encoding="utf-8") as f:
                f.write(f"""
[storage]
path = "{work}/rates.db"
[[source]]
name = "24kg"
kind = "24kg"
url = "{fx.url('/24kg', tls=True, host='localhost')}"
ca_file = "{ca}"
interval = "1s"
[[notifier]]
name = "run"
kind = "exec"
command = ["/bin/sh", "-c", "cat > /dev/null"]
[[alert]]
name = "usd-high"
currency = "USD"
above = 90
notify = ["run"]
""")
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            with open(log_path, "wb") as log:
                tracer = subprocess.Popen(
                    ["strace", "-f", "-qq", "-o", trace, BINARY, "--config", config,
                     "--listen", "127.0.0.1:0"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            daemon_pid = None
            try:
                daemon_pid = wait_for(lambda: traced_daemon(tracer.pid), timeout=30,
                                      what="strace to start the daemon")
                port = wait_for(lambda: _proc_listening_port(daemon_pid), timeout=60,
                                what="the daemon to listen")
                wait_for(lambda: "notified run of usd-high" in read(log_path), timeout=60,
                         what="the exec notifier to run")
                for path in ("/api/v1/latest", "/api/v1/history?currency=USD", "/metrics",
                             "/api/v1/alerts", "/chart/USD.svg", "/v1/latest", "/readyz"):
                    with NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
                        r.read()
                os.kill(daemon_pid, signal.SIGTERM)
                self.assertEqual(tracer.wait(timeout=60), 0, read(log_path)[-3000:])
            finally:
                # Killing strace alone would leave the daemon running, detached.
                if tracer.poll() is None:
                    if daemon_pid is not None:
                        os.kill(daemon_pid, signal.SIGKILL)
                    tracer.kill()
                    tracer.wait()
                    print(read(log_path)[-3000:], file=sys.stderr)

        used, bad_families, wx = set(), set(), []
        for line in read(trace).splitlines():
            m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
            if not m:
                continue
            name = m.group(1)
            used.add(name)
            if name == "socket":
                family = re.match(r"^\d+\s+socket\((\w+)", line)
                if family and family.group(1) not in families:
                    bad_families.add(family.group(1))
            if (name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in line) or \
                    (name == "mmap" and "PROT_WRITE" in line and "PROT_EXEC" in line):
                wx.append(line)
        # SQLite hands new journal files to the database's owner only when running as
        # root; the service never is, so a denied fchown cannot happen there.
        if os.geteuid() == 0:
            used.discard("fchown")
        self.assertGreater(len(used), 30)
        self.assertEqual(sorted(used - allowed), [], "system calls the unit's filter denies")
        self.assertEqual(bad_families, set(), "address families the unit forbids")
        self.assertEqual(wx, [], "writable and executable memory (MemoryDenyWriteExecute)")


if __name__ == "__main__":
    unittest.main()
