"""The lock file as an unprivileged user would attack it: a symbolic link
planted where LOCK_FILE will be (root must not truncate its target), a lock
file created and held by another user (refused with one clear line, not
"another run holds the lock"), and the default in a root-only directory."""
import os
import stat
import subprocess
import sys
import time

import pytest

from pypackrat import run
from pypackrat.errors import LockedError
from tests.attack import NOBODY, SETPRIV, as_nobody
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plays an unprivileged user: needs root")


@pytest.fixture
def reachable(tmp_path):
    """A directory of root's that nobody can reach (pytest's tmp_path is
    under a 0700 directory): removed after the test."""
    import pathlib
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="packrat-lock-test-")
    os.chmod(top, 0o755)
    yield pathlib.Path(top)
    shutil.rmtree(top, ignore_errors=True)


def shared_dir(top, name="lock", mode=0o1777):
    """A directory like /run/lock: root's, world-writable, sticky."""
    d = top / name
    d.mkdir()
    os.chmod(d, mode)
    return d


def test_a_symlink_planted_at_lock_file_leaves_its_target_untouched(penv, reachable):
    d = shared_dir(reachable)
    victim = reachable / "victim"
    victim.write_text("root's precious data\n")
    lock = d / "packrat.lock"
    planted = as_nobody("ln", "-s", victim, lock)
    assert planted.returncode == 0, planted.stderr
    penv.write(LOCK_FILE=str(lock))
    proc = penv.run()
    assert proc.returncode == 1
    assert victim.read_text() == "root's precious data\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(lock) in lines[0] and "symbolic link" in lines[0], proc.stderr
    assert "LOCK_FILE" in lines[0] and "Traceback" not in proc.stderr
    assert lock.is_symlink()  # not followed, not replaced


@pytest.mark.fast
def test_a_symlink_at_lock_file_is_refused_even_in_roots_own_directory(reachable):
    """O_NOFOLLOW itself (fs.protected_symlinks aside): a link is never followed."""
    victim = reachable / "victim"
    victim.write_text("data\n")
    (reachable / "packrat.lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        with run.lock(str(reachable / "packrat.lock")):
            pass
    assert victim.read_text() == "data\n"


def test_a_lock_file_owned_by_another_user_is_refused(penv, reachable, smtp):
    """nobody creates the lock file first and holds it: without the check
    no backup would ever run again (exit 75 every night)."""
    d = shared_dir(reachable)
    lock = d / "packrat.lock"
    holder = subprocess.Popen(SETPRIV + ["flock", "-x", str(lock), "sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.stat().st_uid == NOBODY
        penv.write(LOCK_FILE=str(lock))
        proc = penv.run()
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    assert proc.returncode == 1, proc.stderr  # not 75: nobody is not a packrat run
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(lock) in lines[0] and "owned by nobody" in lines[0] and "remove it" in lines[0]
    assert len(smtp.messages) == 1  # mailed: at 3 a.m. nobody reads stderr


def test_a_lock_directory_of_another_user_or_writable_by_others_is_refused(penv, reachable):
    theirs = reachable / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    open_to_all = shared_dir(reachable, "open", mode=0o777)  # not sticky: files can be swapped
    for directory, why in ((theirs, "owned by nobody"), (open_to_all, "writable by other users")):
        penv.write(LOCK_FILE=str(directory / "packrat.lock"))
        proc = penv.run()
        assert proc.returncode == 1
        assert str(directory) in proc.stderr and why in proc.stderr, proc.stderr
        assert "remove it" not in proc.stderr  # a directory may hold anything
        assert not (directory / "packrat.lock").exists()


@pytest.mark.fast
def test_default_lock_is_in_a_root_only_directory(reachable):
    from pypackrat import settings
    spec = "\n".join(settings.spec_lines())  # was configspec.ini: generated from the declarations
    assert 'LOCK_FILE = string(default="/run/packrat/packrat.lock")' in spec
    path = reachable / "run" / "packrat" / "packrat.lock"
    with run.lock(str(path)):
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.read_text() == "%d\n" % os.getpid()
        # a second holder in this process: refused as "another run" (exit 75 in cli)
        with pytest.raises(LockedError):
            with run.lock(str(path)):
                pass


@pytest.mark.fast
def test_an_old_world_readable_lock_file_of_roots_becomes_private(reachable):
    """A lock file an older packrat left 0644 in /run/lock: anyone could open
    it and hold the lock; it is made 0600 before it is used."""
    d = shared_dir(reachable)
    lock = d / "packrat.lock"
    lock.write_text("123\n")
    os.chmod(lock, 0o644)
    with run.lock(str(lock)):
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    held = as_nobody("flock", "-n", lock, "true")
    assert held.returncode != 0  # nobody cannot even open it now


@pytest.mark.fast
def test_not_as_root_the_invoking_users_own_lock(reachable):
    """Run by another user, the lock file must be that user's: root's file
    in that user's directory is refused, the user's own is taken."""
    home = reachable / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    roots = home / "roots.lock"
    roots.write_text("")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pypackrat import run\n"
            "for name in ('roots.lock', 'mine.lock'):\n"
            "    try:\n"
            "        with run.lock(%r + '/' + name): print(name, 'taken')\n"
            "    except OSError as exc: print(name, 'refused', exc)\n" % (ROOT, str(home)))
    proc = as_nobody(sys.executable, "-c", code)
    out = proc.stdout.splitlines()
    assert out[0].startswith("roots.lock refused") and "owned by root" in out[0], proc.stdout + proc.stderr
    assert out[1] == "mine.lock taken", proc.stdout + proc.stderr
