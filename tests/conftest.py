"""Shared fixtures: a packrat environment in a temporary directory, the
config writer, and the SMTP server. Server fixtures of the other modules
live in tests/servers/ and are started by the test files that need them."""
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKRAT = os.path.join(ROOT, "packrat")
sys.path.insert(0, ROOT)

from tests.servers import serve  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402


def shell_value(value):
    """A Python value as packrat.conf writes it: a list becomes an array."""
    if isinstance(value, (list, tuple)):
        return "(" + " ".join(shlex.quote(str(v)) for v in value) + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return shlex.quote(str(value))


def write_config(path, settings, extra=""):
    with open(path, "w") as fh:
        for name, value in settings.items():
            fh.write("%s=%s\n" % (name, shell_value(value)))
        fh.write(extra)
    return path


def processes(match, alive=False):
    """The pids of the processes whose argv (a list of bytes) ``match``
    accepts; with ``alive``, not the zombies among them."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                argv = fh.read().split(b"\0")
            if alive:
                with open("/proc/%s/stat" % pid) as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
        except OSError:
            continue
        if match(argv):
            found.append(int(pid))
    return found


class PackratEnv:
    """A working tree for one test: BACKUP_DIR, a module path, a modules.d,
    a lock file, and a config written from ``self.settings``."""

    def __init__(self, tmp_path, smtp=None):
        self.tmp = tmp_path
        self.backup_dir = tmp_path / "backup"
        self.module_path = tmp_path / "modules"
        self.modules_d = tmp_path / "modules.d"
        for d in (self.backup_dir, self.module_path, self.modules_d):
            d.mkdir()
        self.config_path = tmp_path / "packrat.conf"
        self.smtp = smtp
        self.settings = {
            "ADMIN_EMAIL": "admin@example.org",
            "BACKUP_DIR": str(self.backup_dir),
            "BACKUP_MODULES": [],
            "UPLOAD_MODULES": [],
            "PURGE_LOCAL_ARCHIVES": 10,
            "PURGE_REMOTE_ARCHIVES": 10,
            "HOSTNAME": "testhost",
            "MODULE_PATH": str(self.module_path),
            "MODULES_D": str(self.modules_d),
            "LOCK_FILE": str(tmp_path / "packrat.lock"),
            "UPLOAD_RETRY_WAIT": 0,
        }
        if smtp is not None:
            self.settings.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port)
        self.extra = ""

    def write(self, **overrides):
        self.settings.update(overrides)
        return write_config(self.config_path, self.settings, self.extra)

    def run(self, *args, env=None, date=None, check=None, timeout=600, **kw):
        """Run ``packrat -c CONFIG ARGS``; ``date`` sets the run's day."""
        self.write()
        full_env = dict(os.environ)
        full_env.pop("PACKRAT_DATE", None)
        if date:
            full_env["PACKRAT_DATE"] = date
        full_env.update(env or {})
        proc = subprocess.run([PACKRAT, "-c", str(self.config_path)] + [str(a) for a in args],
                              capture_output=True, text=True, env=full_env, timeout=timeout, **kw)
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def mails(self):
        return self.smtp.messages if self.smtp else []


@pytest.fixture(scope="session")
def fresh_install(tmp_path_factory):
    """install.sh on an empty root (DESTDIR), as the quick start runs it:
    the session's one real pip install. The other install tests copy its
    Python package first; install.sh, finding its stamp (same source, same
    python), skips pip. Returns (DESTDIR, the CompletedProcess)."""
    dest = tmp_path_factory.mktemp("fresh-install") / "stage"
    proc = subprocess.run([os.path.join(ROOT, "install.sh")], capture_output=True, text=True,
                          env=dict(os.environ, DESTDIR=str(dest)))
    assert proc.returncode == 0, proc.stderr
    return dest, proc


@pytest.fixture(scope="session")
def smtp_server():
    yield from serve(SmtpServer())


@pytest.fixture
def smtp(smtp_server):
    smtp_server.clear()
    yield smtp_server


@pytest.fixture
def penv(tmp_path, smtp):
    return PackratEnv(tmp_path, smtp)


# -- The fast tier (pytest -m fast) stays honest ------------------------------
# A test marked ``fast`` may request no server fixture (those of tests/servers/
# and the SMTP ones here, also through another fixture such as penv), open no
# listening network socket and start no server program. Each of these fails the
# test, before a server starts where it can be told from the fixtures.
SERVER_FIXTURES = {"smtp_server"}
SERVER_PROGRAMS = {"sshd", "mariadbd", "mysqld", "mariadb-install-db", "mysql_install_db",
                   "postgres", "initdb", "pg_ctl", "moto_server", "ssh-agent", "vsftpd"}


def _is_fast(item):
    return item.get_closest_marker("fast") is not None


def pytest_ignore_collect(collection_path, config):
    """With -m fast, a test file that marks nothing fast is not even
    imported (the tier's time is mostly imports)."""
    if (config.getoption("markexpr", "") == "fast" and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_")):
        try:
            return "mark.fast" not in collection_path.read_text(errors="replace") or None
        except OSError:
            return None
    return None


def _server_fixtures(item):
    """The server fixtures ``item`` requests, directly or through others."""
    info = getattr(item, "_fixtureinfo", None)
    found = []
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            module = getattr(fixturedef.func, "__module__", "") or ""
            if name in SERVER_FIXTURES or module == "tests.servers" or module.startswith("tests.servers."):
                found.append(name)
                break
    return found


_POPEN = subprocess.Popen  # the real one (pytest-subprocess's fp replaces subprocess.Popen)


class _NoServers:
    """While a fast test runs: listen() on an IPv4/IPv6 socket and starting a
    server program raise, and are remembered (a server thread's error does
    not reach the test by itself). The threads of servers that earlier tests
    of the session started (an FTP server's passive listener) are not the
    test's."""

    def __init__(self):
        import threading
        self.seen = []
        self.earlier = {t.ident for t in threading.enumerate()} - {threading.main_thread().ident}

    def refuse(self, what):
        self.seen.append(what)
        raise RuntimeError("fast test: %s (servers belong to the server tier)" % what)

    def __enter__(self):
        import socket
        guard = self
        self.listen = socket.socket.listen
        self.execute_child = _POPEN._execute_child

        def listen(sock, *args):
            import threading
            if (sock.family in (socket.AF_INET, socket.AF_INET6)
                    and threading.get_ident() not in guard.earlier):
                guard.refuse("listens on a network socket")
            return guard.listen(sock, *args)

        def execute_child(popen, args, executable, *rest, **kw):
            words = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
            program = os.path.basename(os.fsdecode(executable or words[0])) if words else ""
            if program in SERVER_PROGRAMS:
                guard.refuse("starts the server program %s" % program)
            return guard.execute_child(popen, args, executable, *rest, **kw)

        socket.socket.listen = listen
        _POPEN._execute_child = execute_child
        return self

    def __exit__(self, *exc):
        import socket
        socket.socket.listen = self.listen
        _POPEN._execute_child = self.execute_child
        return False


def _guarded(item, check_fixtures=False):
    if not _is_fast(item):
        return (yield)
    if check_fixtures:
        servers = _server_fixtures(item)
        if servers:
            pytest.fail("a fast test uses server fixtures (%s): remove its fast mark or its servers"
                        % ", ".join(sorted(servers)), pytrace=False)
    with _NoServers() as guard:
        result = yield
    if guard.seen:
        pytest.fail("fast test: %s" % "; ".join(guard.seen), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _guarded(item, check_fixtures=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _guarded(item))
