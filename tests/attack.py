"""Helpers for the tests that play the attacker: the unprivileged user
nobody (uid and gid 65534), a PackratEnv in a directory nobody can reach,
and the check that a run refused an untrusted file."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import PackratEnv

NOBODY = 65534
SETPRIV = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]


def as_nobody(*argv, **kw):
    """Run ``argv`` as nobody:nogroup (the attacker). Output is captured as
    text and the command given 30 s unless ``kw`` says otherwise; other
    ``kw`` go to subprocess.run."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    return subprocess.run(SETPRIV + [str(a) for a in argv], **kw)


def reachable_env(smtp, prefix, prepare=None):
    """The body of a fixture: a PackratEnv in a directory the attacker can
    reach (a fresh 0755 directory in /tmp, unlike pytest's 0700 tmp_path),
    its directories 0755, its config 0600. ``prepare(env)`` runs before the
    config is written."""
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        os.chmod(base, 0o755)
        env = PackratEnv(Path(base), smtp)
        for d in (env.backup_dir, env.module_path, env.modules_d):
            os.chmod(d, 0o755)
        if prepare is not None:
            prepare(env)
        env.write()
        os.chmod(env.config_path, 0o600)
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def refused(proc, path):
    """The run was refused, naming ``path`` and the fix."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("%s: refusing" % path)]
    assert lines, proc.stderr
    assert "chown root %s; chmod go-w %s" % (path, path) in lines[0]


def processes_with(word):
    """Pids whose command line (NUL-separated words) holds ``word``: what a
    killed run may have left running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                if word.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found
