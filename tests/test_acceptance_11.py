"""Acceptance checks of issue 11 that the first round left open, each played
as the attacker or the accident it is about, through the real ``packrat``
command."""
import contextlib
import datetime
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from tests.attack import as_nobody, processes_with
from tests.conftest import PACKRAT
from tests.databases import configure
from tests.servers.ftp import ftp_server, ftpd  # noqa: F401
from tests.servers.mariadb import mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401
from tests.servers.sshd import sshd, sshd_server  # noqa: F401
from tests.test_hostile_databases import FakePostgres

TODAY = datetime.date.today().strftime("%Y%m%d")


# -- a killed run leaves nothing behind, on the remote either ----------------------

def test_sigkill_during_upload_leaves_no_partial_on_the_remote(penv, tmp_path):
    """packrat is killed (SIGKILL) while it copies an archive to LOCAL_DIR:
    the temporary NAME.partial stays there. The next run (here a purge)
    removes it; another host's temporary copy on the shared remote is left
    alone (its upload may be running), even with PURGE_REMOTE_ALL_HOSTS."""
    nas = tmp_path / "nas"
    nas.mkdir()
    target = tmp_path / "data"
    target.mkdir()
    name = "testhost%s-%s.master.1.dar" % (str(target).replace("/", "-"), TODAY)
    big = penv.backup_dir / name
    with open(big, "wb") as fh:  # sparse: quick to make, long enough to copy
        fh.truncate(4 << 30)
    foreign = nas / ("web-db-etc-%s.master.1.dar.partial" % TODAY)
    foreign.write_bytes(b"another host's upload in progress")
    penv.write(FS_TARGETS=[str(target)], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas),
               PURGE_REMOTE_ALL_HOSTS=True)
    partial = nas / (name + ".partial")
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path), "-U", TODAY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not partial.exists():
            assert proc.poll() is None, "packrat ended before its upload began"
            assert time.monotonic() < deadline, "no upload seen"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert partial.exists() and not (nas / name).exists()  # what the killed run left
    big.unlink()

    penv.run("-P", check=0)
    assert not partial.exists()
    assert foreign.read_bytes() == b"another host's upload in progress"
    assert sorted(os.listdir(nas)) == [foreign.name]


# -- modes 0600 on every remote that has modes: FTP too --------------------------


def test_ftp_copies_are_private(penv, ftpd, tmp_path):
    """The FTP server creates files with its own umask (0644 here: every
    account of the server could read an unencrypted archive of /etc/shadow).
    packrat makes each copy 0600 with SITE CHMOD before its rename."""
    old = os.umask(0o022)  # the server's (it runs in this process)
    try:
        target = tmp_path / "etc"
        target.mkdir()
        (target / "shadow").write_text("root:$6$secret:19000::::::\n")
        penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(target)], UPLOAD_MODULES=["ftp"],
                   **ftpd.settings())
        penv.run(check=0)
    finally:
        os.umask(old)
    copies = os.listdir(ftpd.files_dir)
    assert copies and all(n.endswith(".dar") for n in copies), copies
    for name in copies:
        assert stat.S_IMODE(os.lstat(os.path.join(ftpd.files_dir, name)).st_mode) == 0o600, name


# -- restore: the database name is data too ----------------------------------------


@pytest.fixture
def fake_pg():
    server = FakePostgres()
    yield server
    server.close()


def people(engine, server, db):
    """The rows of the table ``people`` of ``db`` (named whatever way)."""
    if engine == "mysql":
        return server.sql("SELECT * FROM `%s`.people ORDER BY 1" % db.replace("`", "``"))
    conninfo = "dbname='%s'" % db.replace("\\", "\\\\").replace("'", "\\'")
    argv = server.psql_argv("-At", "-c", "SELECT * FROM people ORDER BY 1")
    argv[argv.index("-d") + 1] = conninfo
    return subprocess.run(argv, capture_output=True, check=True).stdout


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_restore_into_a_hostile_name(penv, engine, request, tmp_path, fake_pg):
    """The operator restores a tenant's dump into a database named as the
    tenant chose (``--into NAME``), then over it (``--force``, which drops
    and creates it again). Before: mysqladmin, createdb and dropdb took
    ``-f...`` and ``--...`` as options, and psql took ``host=... port=...``
    as the server to connect to. Each name must be a database and nothing
    else: the bait stays, the fake server sees no connection, and the
    database holds the dump."""
    server = request.getfixturevalue("mariadb_server" if engine == "mysql" else "postgres_server")
    source = server.new_database("src")
    server.fill(source, rows=3)
    configure(penv, engine, server, [source])
    penv.run(check=0)
    short = tempfile.mkdtemp(prefix="pr", dir="/tmp")  # database names are <= 63 bytes
    request.addfinalizer(lambda: shutil.rmtree(short))
    bait, absent = os.path.join(short, "x"), os.path.join(short, "y")
    with open(bait, "w") as fh:
        fh.write("precious\n")
    names = ["-f" + bait, "--result-file=" + absent, "-e",
             "host=127.0.0.1 port=%d user=postgres" % fake_pg.port]
    for name in names:
        try:
            penv.run("restore", "--into=" + name, engine, source, check=0)
            penv.run("restore", "--force", "--into=" + name, engine, source, check=0)
            want = people(engine, server, source)
            assert want and people(engine, server, name) == want, name
        finally:
            if engine == "mysql":
                server.sql("DROP DATABASE IF EXISTS `%s`" % name)
            else:
                server.sql('DROP DATABASE IF EXISTS "%s"' % name)
    assert open(bait).read() == "precious\n"
    assert not os.path.exists(absent)
    assert fake_pg.connections == 0


# -- a killed run: what a Bash module started dies too -----------------------------

def test_sigkill_stops_what_a_bash_module_started(penv):
    """A Bash backup module writes its archive from a subshell (as a
    ``mysqldump > file`` would, in a process of its own). packrat is killed
    with SIGKILL: the module's shell dies with it, and so must every process
    the module started, at once: the file stops growing."""
    out = penv.backup_dir / "grows"
    tick = "0.0517"  # a mark of the module's processes
    module = penv.module_path / "slow.sh"
    module.write_text('mod_slow() { ( while :; do echo x >> %s; sleep %s; done ); }\n' % (out, tick))
    module.chmod(0o644)
    penv.write(BACKUP_MODULES=["slow"])
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 8):
            assert proc.poll() is None and time.monotonic() < deadline, "the module did not start"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(0.5)
    size = out.stat().st_size
    left = processes_with("sleep\0" + tick)
    time.sleep(0.5)
    for pid in processes_with("sleep\0" + tick):  # the test's own cleanup, by pid
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert out.stat().st_size == size, "the module's subshell kept writing after packrat died"
    assert not left


# -- the unquoted key, spelt over several lines or after another command ------------

def run_with_config_line(penv, tmp_path, line):
    """A run backing up a small /etc-like tree, ``line`` added to the config."""
    target = tmp_path / "etc"
    target.mkdir()
    (target / "shadow").write_text("root:$6$x:19000::::::\n")
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(target)])
    penv.extra = line + "\n"
    return penv.run()


@pytest.mark.parametrize("line", [
    'ENCRYPTION_KEY="correct\nh0rse" b4ttery st4ple',      # a quoted part over two lines
    'ENCRYPTION_KEY=correct\\\nh0rse b4ttery st4ple',        # a backslash continuation
    'HOSTNAME=testhost; ENCRYPTION_KEY=correct b4ttery st4ple',  # after another assignment
    'true && ENCRYPTION_KEY=correct b4ttery st4ple',
])
def test_unquoted_key_in_other_spellings(penv, tmp_path, line):
    """The unquoted key, written so that bash's complaint lands on a line
    after the one that starts the assignment, or on a line that assigns
    something else first: exit 1, no archive, and no word of the key in the
    output or the mail (before: 'line N: b4ttery: command not found')."""
    proc = run_with_config_line(penv, tmp_path, line)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "ENCRYPTION_KEY" in proc.stderr
    assert os.listdir(penv.backup_dir) == []
    shown = proc.stdout + proc.stderr + "".join(str(m) for m in penv.mails())
    for word in ("h0rse", "b4ttery", "st4ple"):
        assert word not in shown, (word, shown)


# -- names from a remote never drive the admin's terminal ----------------------------

def test_list_shows_escape_sequences_of_planted_names_harmlessly(penv, request):
    """Someone who can write to the share plants files whose names hold
    terminal escape sequences (ESC, BEL, CSI): `packrat list` shows them
    with the control characters written out, never raw."""
    nas = pathlib.Path(tempfile.mkdtemp(prefix="packrat-nas-", dir="/tmp"))  # nobody reaches it
    request.addfinalizer(lambda: shutil.rmtree(nas))
    nas.chmod(0o1777)
    planted = ["testhost-postgresql-app\x1b]0;owned\x07\x1b[2J-%s.sql.bz2" % TODAY,
               "testhost-mysql-shop\x9b31m-%s.sql.bz2" % TODAY]
    for name in planted:
        as_nobody("touch", nas / name, check=True)
    penv.write(UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    proc = penv.run("list", check=0)
    shown = proc.stdout + proc.stderr
    assert "owned" in shown and "\\x1b]0;owned\\x07" in shown, shown
    for control in ("\x1b", "\x07", "\x9b"):
        assert control not in shown


# -- restore never writes as root into a directory another user controls -------------

@pytest.mark.parametrize("plant", ["directory", "symlink", "parent"])
def test_restore_refuses_a_destination_another_user_controls(penv, request, tmp_path, plant):
    """The admin restores /etc into /tmp/x. A local user got there first:
    an empty directory of theirs (where they could plant links for dar to
    write through, as root, while it restores), a link of theirs to a
    directory of root's (which they could point elsewhere meanwhile), or
    the directory above is theirs. The restore is refused, nothing is
    written, and the message names the place."""
    src = tmp_path / "etc"
    src.mkdir()
    (src / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)])
    penv.run(check=0)
    top = pathlib.Path(tempfile.mkdtemp(prefix="packrat-r-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(top))
    top.chmod(0o1777)
    victim = tmp_path / "root-only"
    victim.mkdir()
    dest = top / "x"
    if plant == "directory":
        as_nobody("mkdir", dest, check=True)
    elif plant == "symlink":
        as_nobody("ln", "-s", victim, dest, check=True)
    else:
        as_nobody("mkdir", top / "home", check=True)
        dest = top / "home" / "x"
    proc = penv.run("restore", src, dest)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "refusing" in proc.stderr and "nobody" in proc.stderr
    assert os.listdir(victim) == []
    assert not os.path.isdir(dest) or os.listdir(dest) == []
    # a new directory of root's in the sticky /tmp-like directory is fine
    penv.run("restore", src, top / "mine", check=0)
    assert (top / "mine" / "passwd").read_text().startswith("root:")


@pytest.mark.parametrize("line", [
    "export ENCRYPTION_KEY=correct h0rse b4ttery",
    "declare -x ENCRYPTION_KEY=correct h0rse b4ttery",
    "readonly ENCRYPTION_KEY=correct h0rse b4ttery",
])
def test_unquoted_key_after_export(penv, tmp_path, line):
    """``export ENCRYPTION_KEY=correct horse battery``: bash says nothing, the
    key would be "correct" alone, and "horse" and "battery" names of
    variables. A configuration error (exit 1, no archive), words not shown;
    a quoted value, or an export of several assignments, stays fine."""
    proc = run_with_config_line(penv, tmp_path, line)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "ENCRYPTION_KEY" in proc.stderr and "quote" in proc.stderr
    assert os.listdir(penv.backup_dir) == []
    shown = proc.stdout + proc.stderr + "".join(str(m) for m in penv.mails())
    assert "h0rse" not in shown and "b4ttery" not in shown
    penv.extra = 'export ENCRYPTION_KEY="correct h0rse b4ttery" OTHER=1\n'
    penv.run(check=0)
    assert len(os.listdir(penv.backup_dir)) == 1


# -- a neighbour on a sticky share cannot make the purge delete the real chain ------

# the purge's day: a fixed one, so that the backups 30 and 29 days before it
# fall in one month (a month's first day would start a new master)
SHARE_TODAY = datetime.date(2026, 11, 26)


def plant_newer_master(penv, share):
    """Backups ran 30 and 29 days before SHARE_TODAY (a master and its diff
    in ``share``); then nobody plants an empty master of this host's target
    dated the day before. The names of the real files and of the planted one."""
    days = [(SHARE_TODAY - datetime.timedelta(days=n)).strftime("%Y%m%d") for n in (30, 29, 1)]
    penv.run(date=days[0], check=0)
    penv.run(date=days[1], check=0)
    real = sorted(os.listdir(share))
    assert len(real) == 2, real
    planted = "%s-%s.master.1.dar" % (real[0].split("-%s." % days[0])[0], days[2])
    as_nobody("touch", share / planted, check=True)
    return real, planted


def test_planted_newer_master_on_a_sticky_share_does_not_purge_the_real_chain(penv, request,
                                                                              tmp_path):
    """LOCAL_DIR is a sticky share (/tmp-like): other users may create
    files there but not delete packrat's. Backups have failed for a month;
    the only chain on the share is 30 days old. A neighbour plants an empty
    'newer master' of this host's target: before, the purge took it as the
    newest chain and deleted the real one, the only offsite copy. Files of
    another user are neither deleted nor taken as this host's backups."""
    nas = pathlib.Path(tempfile.mkdtemp(prefix="packrat-nas-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(nas))
    nas.chmod(0o1777)
    target = tmp_path / "data"
    target.mkdir()
    (target / "f").write_text("data\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(target)], UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(nas), PURGE_REMOTE_ARCHIVES=10)
    real, planted = plant_newer_master(penv, nas)
    penv.run("-P", date=SHARE_TODAY.strftime("%Y%m%d"), check=0)
    assert sorted(os.listdir(nas)) == sorted(real + [planted])


def test_planted_newer_master_on_a_shared_sftp_directory(penv, sshd, tmp_path):
    """The same on an SFTP server whose backup directory other accounts may
    write to (sticky): a file another account owns is neither deleted nor
    taken as this host's newest backup."""
    root = pathlib.Path(sshd.root)
    above = root.parent
    old_modes = above.stat().st_mode, root.stat().st_mode
    above.chmod(0o711)
    root.chmod(0o1777)
    try:
        target = tmp_path / "data"
        target.mkdir()
        (target / "f").write_text("data\n")
        penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(target)], UPLOAD_MODULES=["ssh"],
                   PURGE_REMOTE_ARCHIVES=10, **sshd.settings())
        real, planted = plant_newer_master(penv, root)
        penv.run("-P", date=SHARE_TODAY.strftime("%Y%m%d"), check=0)
        assert sorted(os.listdir(root)) == sorted(real + [planted])
    finally:
        above.chmod(stat.S_IMODE(old_modes[0]))
        root.chmod(stat.S_IMODE(old_modes[1]))
