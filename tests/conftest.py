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
def smtp_server():
    yield from serve(SmtpServer())


@pytest.fixture
def smtp(smtp_server):
    smtp_server.clear()
    yield smtp_server


@pytest.fixture
def penv(tmp_path, smtp):
    return PackratEnv(tmp_path, smtp)
