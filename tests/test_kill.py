"""A killed run leaves nothing behind (issue 11): packrat is killed with
SIGKILL while ``DUMP | bzip2 | openssl`` runs (the dump blocked on a table
lock another session holds). Its children die with it, at once, while the
lock is still held; the password was never in a file; the next run removes
the killed run's temporary dump and private directory and makes its dump.
And core.temp.sweep_stale, the next run's broom, removes only what a dead run
of ours left: never through a link, never another user's, never a live run's."""
import datetime
import os
import pwd
import signal
import subprocess
import tempfile

import pytest

from pypackrat.core import temp
from tests.databases import configure, engine, server  # noqa: F401
from tests.servers.mariadb import mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401
from tests.test_databases import KEY, TableLock, children, source_db, start_packrat, wait_until

TODAY = datetime.date.today().strftime("%Y%m%d")


def started(pid):
    """The start time of process ``pid`` (to tell it from a later one with its PID), or None."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def private_dirs(pid):
    found = []
    for base in ("/dev/shm", tempfile.gettempdir()):
        found += [os.path.join(base, n) for n in os.listdir(base) if n.startswith("packrat-%d-" % pid)]
    return found


def files_holding(secret, paths):
    hits = []
    for top in paths:
        for where, _, files in os.walk(top):
            for name in files:
                path = os.path.join(where, name)
                try:
                    with open(path, "rb") as fh:
                        if secret in fh.read(1 << 20):
                            hits.append(path)
                except OSError:
                    pass
    return hits


def secret_descriptors(pid):
    """Where the /dev/fd/N a process was given (argv or PGPASSFILE) lead."""
    with open("/proc/%d/cmdline" % pid, "rb") as fh:
        words = fh.read().split(b"\0")
    with open("/proc/%d/environ" % pid, "rb") as fh:
        words += fh.read().split(b"\0")
    out = []
    for word in words:
        if b"/dev/fd/" in word:
            fd = word.split(b"/dev/fd/", 1)[1].decode()
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
    return out


def test_sigkill_during_a_dump_leaves_nothing_behind(penv, engine, server):
    db = source_db(server)
    configure(penv, engine, server, [db], ENCRYPTION_KEY=KEY, DB_CIPHER="aes-256-cbc")
    dump_names = {"mysqldump", "mariadb-dump"} if engine == "mysql" else {"pg_dump"}
    secret = server.password.encode()
    lock = TableLock(engine, server, db)
    try:
        proc = start_packrat(penv)
        wait_until(lock.dump_is_waiting, "the dump to block on the table lock")

        def pipeline():
            kids = children(proc.pid)
            names = {n for _, n in kids}
            return kids if names & dump_names and {"bzip2", "openssl"} <= names else None
        kids = [(pid, name, started(pid)) for pid, name in wait_until(pipeline, "the whole pipeline")]
        # the password reaches the dump through a memory file, never a file on disk
        dumper = [pid for pid, name, _ in kids if name in dump_names][0]
        assert [t for t in secret_descriptors(dumper) if not t.startswith("/memfd:")] == []
        assert secret_descriptors(dumper), "no password file descriptor given to the dump"
        assert files_holding(secret, private_dirs(proc.pid) + ["/dev/shm"]) == []
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        # its children die with it, though the dump is still blocked on the lock
        wait_until(lambda: all(started(pid) != start for pid, _, start in kids),
                   "the killed run's children to die", timeout=10)
        left = [n for n in os.listdir(penv.backup_dir) if n.startswith(".packrat-tmp-%d-" % proc.pid)]
        assert left, "the killed run left no temporary dump: nothing to sweep"
    finally:
        lock.release()
    penv.run(date=TODAY, check=0)
    assert os.listdir(penv.backup_dir) == ["testhost-%s-%s-%s.sql.bz2" % (engine, db, TODAY)]
    assert private_dirs(proc.pid) == []
    assert files_holding(secret, ["/dev/shm"]) == []


# -- the broom ---------------------------------------------------------------------

def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def make(path, content=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content)
    return path


@pytest.mark.fast
def test_sweep_removes_only_what_dead_runs_of_ours_left(tmp_path):
    nobody = pwd.getpwnam("nobody")
    top = tmp_path / "backup"
    outside = tmp_path / "outside"
    victim = make(str(outside / "victim.txt"), b"keep me")
    dead = dead_pid()
    live = subprocess.Popen(["bash", "-c", "exec -a packrat-live sleep 60"])
    try:
        wait_until(lambda: b"packrat-live" in open("/proc/%d/cmdline" % live.pid, "rb").read(),
                   "the live run")
        gone = [make(str(top / (".packrat-tmp-%d-host-mysql-db-20250101.sql.bz2" % dead))),
                make(str(top / "sub" / "deeper" / (".packrat-tmp-%d-host-etc-20250101.1.dar" % dead))),
                make(str(top / (".packrat-tmp-%d-work" % dead) / "inner" / "file"))]
        kept = [make(str(top / (".packrat-tmp-%d-running.sql.bz2" % live.pid))),
                make(str(top / (".packrat-tmp-%d-mine.sql.bz2" % os.getpid()))),
                make(str(top / ".packrat-tmp-restore-abc" / "x")),
                make(str(top / "photos" / "IMG_20200101_1234.jpg")),
                make(str(top / (".packrat-tmp-%d" % dead))),
                make(str(top / (".packrat-tmp-%dx-not-a-pid" % dead)))]
        theirs = make(str(top / (".packrat-tmp-%d-theirs" % dead)))
        os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
        kept.append(theirs)
        link = top / (".packrat-tmp-%d-link" % dead)
        os.symlink(victim, link)
        dirlink = top / "sub" / (".packrat-tmp-%d-dirlink" % dead)
        os.symlink(outside, dirlink)
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        private = make(os.path.join(shm, "packrat-%d-abc123" % dead, "my.cnf-x"), b"password=x")
        foreign = os.path.join(shm, "packrat-%d-foreign" % dead)
        os.mkdir(foreign)
        os.chown(foreign, nobody.pw_uid, nobody.pw_gid)
        shm_link = os.path.join(shm, "packrat-%d-link" % dead)
        os.symlink(str(outside), shm_link)
        live_private = make(os.path.join(shm, "packrat-%d-live12" % live.pid, "f"))
        try:
            temp.sweep_stale(top)
            assert [p for p in gone if os.path.lexists(p)] == []
            assert not os.path.exists(top / (".packrat-tmp-%d-work" % dead))
            assert [p for p in kept if not os.path.exists(p)] == []
            assert os.path.islink(link) and os.path.islink(dirlink)
            with open(victim, "rb") as fh:
                assert fh.read() == b"keep me"
            assert not os.path.exists(os.path.dirname(private))
            assert os.path.isdir(foreign) and os.path.islink(shm_link) and os.path.exists(live_private)
        finally:
            import shutil
            for path in (os.path.dirname(private), foreign, os.path.dirname(live_private)):
                shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(shm_link):
                os.unlink(shm_link)
    finally:
        live.kill()
        live.wait()


def test_a_child_dies_with_packrat(tmp_path):
    """execute.run from a process that is then SIGKILLed: its child goes too."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom pypackrat import execute\n"
        "execute.run(['sleep', '60'])\n" % os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sys
    parent = subprocess.Popen([sys.executable, str(script)])
    kid = wait_until(lambda: [pid for pid, name in children(parent.pid) if name == "sleep"], "the child")[0]
    start = started(kid)
    parent.kill()
    parent.wait()
    wait_until(lambda: started(kid) != start, "the child to die", timeout=10)
