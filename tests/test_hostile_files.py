"""Files where others can write, and file modes (issue 11): a symlink an
unprivileged user plants at the ``local`` upload's temporary name, a file
swapped in before the rename, a link in LOCAL_DIR fetched back; archives
(real dar), dumps and remote copies (local, SFTP through paramiko and
through scp) are 0600; ``check`` warns about an open BACKUP_DIR.

The attacker is ``nobody``: LOCAL_DIR belongs to it (a share another host
writes to) and is not sticky, so the kernel's protected_symlinks does not
stand in for packrat's own care."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from pypackrat import config, log, plugins, run, transfer
from pypackrat.context import Context, Options
from pypackrat.errors import PackratError
from tests.attack import as_nobody
from tests.conftest import ROOT
from tests.servers.sshd import sshd_server, sshd  # noqa: F401

TODAY = "20261126"
NAME = "testhost-etc-%s.1.dar" % TODAY


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def nas():
    """A LOCAL_DIR owned by nobody (0755, not sticky), outside root's
    private pytest directory so that nobody can reach it."""
    top = tempfile.mkdtemp(prefix="packrat-nas-")
    os.chmod(top, 0o755)
    share = os.path.join(top, "share")
    os.mkdir(share, 0o755)
    os.chown(share, 65534, 65534)
    yield share
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "shadow"
    path.write_text("root's precious file\n")
    os.chmod(path, 0o600)
    return path


def context(penv, **settings):
    penv.write(**settings)
    return Context(config.load(str(penv.config_path)), Options())


def connect(ctx, name):
    return run.open_remote(ctx, plugins.resolve(ctx.settings, name, "upload"))


def archive(penv, data=b"archive data " * 1000, name=NAME):
    path = penv.backup_dir / name
    path.write_bytes(data)
    return str(path)


# -- the local upload in a share others write to -------------------------------

def test_symlink_planted_at_the_temporary_name_is_not_followed(penv, nas, victim):
    """nobody plants NAME.partial -> root's file before the run: the run
    removes the link, writes its own file, and the target is untouched."""
    data = os.urandom(300_000)
    archive(penv, data)
    as_nobody("ln", "-s", str(victim), os.path.join(nas, NAME + transfer.PARTIAL), check=True)
    penv.write(UPLOAD_MODULES=["local"], LOCAL_DIR=nas)
    proc = penv.run("-U", TODAY, date=TODAY)
    assert victim.read_text() == "root's precious file\n"
    assert mode(victim) == 0o600
    assert proc.returncode == 0, proc.stderr
    final = os.path.join(nas, NAME)
    assert stat.S_ISREG(os.lstat(final).st_mode) and open(final, "rb").read() == data
    assert mode(final) == 0o600
    assert sorted(os.listdir(nas)) == [NAME]


def test_planted_link_at_the_final_name_is_replaced_not_followed(penv, nas, victim):
    archive(penv, b"new")
    as_nobody("ln", "-s", str(victim), os.path.join(nas, NAME), check=True)
    penv.write(UPLOAD_MODULES=["local"], LOCAL_DIR=nas)
    penv.run("-U", TODAY, date=TODAY, check=0)
    assert victim.read_text() == "root's precious file\n"
    assert not os.path.islink(os.path.join(nas, NAME))
    assert open(os.path.join(nas, NAME), "rb").read() == b"new"


@pytest.mark.parametrize("swap", ["symlink", "file"])
def test_temporary_swapped_before_the_rename_is_refused(penv, nas, victim, swap):
    """nobody replaces NAME.partial after it was written and verified, just
    before the rename: lstat finds another inode, the upload fails cleanly
    (not retried), nothing gets the final name, the link's target is
    untouched."""
    ctx = context(penv, UPLOAD_MODULES=["local"], LOCAL_DIR=nas, UPLOAD_RETRIES=2)
    path = archive(penv)
    partial = os.path.join(nas, NAME + transfer.PARTIAL)
    with connect(ctx, "local") as remote:
        checksum = remote.checksum

        def checksum_then_swap(name):
            digest = checksum(name)
            os.unlink(partial)  # as nobody could (its directory); then its own thing in its place
            if swap == "symlink":
                as_nobody("ln", "-s", str(victim), partial, check=True)
            else:
                as_nobody("sh", "-c", 'printf planted > "$1"', "sh", partial, check=True)
            return digest
        remote.checksum = checksum_then_swap
        with pytest.raises(PackratError, match="no longer the file packrat wrote"):
            transfer.upload(remote, path)
    assert victim.read_text() == "root's precious file\n"
    assert not os.path.lexists(os.path.join(nas, NAME))
    assert not any("retrying" in line for line in log.transcript())


def test_a_link_in_the_share_is_never_fetched(penv, nas, victim, tmp_path):
    """A name in LOCAL_DIR that is a symlink to root's file: not listed, and
    a download of it fails instead of copying the target."""
    as_nobody("ln", "-s", str(victim), os.path.join(nas, NAME), check=True)
    ctx = context(penv, UPLOAD_MODULES=["local"], LOCAL_DIR=nas, UPLOAD_RETRIES=0)
    dest = tmp_path / "restored.dar"
    with connect(ctx, "local") as remote:
        assert transfer.listing(remote) == []
        with pytest.raises(PackratError):
            transfer.download(remote, NAME, str(dest))
    assert not dest.exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".packrat-tmp-")] == []


def test_download_is_private_and_leaves_no_temporary(penv, nas, tmp_path):
    with open(os.path.join(nas, NAME), "wb") as fh:
        fh.write(b"remote copy")
    ctx = context(penv, UPLOAD_MODULES=["local"], LOCAL_DIR=nas)
    dest = tmp_path / "fetched.dar"
    with connect(ctx, "local") as remote:
        transfer.download(remote, NAME, str(dest))
    assert dest.read_bytes() == b"remote copy" and mode(dest) == 0o600
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".packrat-tmp-")]


# -- modes ------------------------------------------------------------------------

def test_archives_and_local_copies_are_0600_in_an_open_backup_dir(penv, nas):
    """BACKUP_DIR is 0755 (as Debian's /var/backups): the real dar archive
    is 0600, and so is its copy in LOCAL_DIR."""
    src = penv.tmp / "src"
    src.mkdir()
    (src / "shadow").write_text("secret\n")
    os.chmod(penv.backup_dir, 0o755)
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], FS_SLICE_SIZE="1000M",
               UPLOAD_MODULES=["local"], LOCAL_DIR=nas)
    penv.run(date=TODAY, check=0)
    made = [n for n in os.listdir(penv.backup_dir) if n.endswith(".dar")]
    assert made
    for name in made:
        assert mode(penv.backup_dir / name) == 0o600, name
        assert mode(os.path.join(nas, name)) == 0o600, name


@pytest.mark.fast
def test_files_of_atomic_output_are_0600_under_packrat(tmp_path):
    """Dumps go through execute.atomic_output: under packrat's umask (set
    first thing by cli.main) what it creates is 0600."""
    final = tmp_path / ("testhost-mysql-db-%s.sql.bz2" % TODAY)
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from pypackrat import cli, execute\n"
            "cli.main(['--version'])\n"
            "with execute.atomic_output(%r) as tmp:\n"
            "    open(tmp, 'w').write('dump')\n" % (ROOT, str(final)))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert final.read_text() == "dump" and mode(final) == 0o600


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_sftp_copies_are_0600(penv, sshd, client):
    """The local archive is 0644 and the server's umask 022, and a stale
    0644 temporary waits on the server: the copy is 0600 all the same."""
    path = archive(penv, os.urandom(100_000))
    os.chmod(path, 0o644)
    stale = os.path.join(sshd.root, NAME + transfer.PARTIAL)
    with open(stale, "wb") as fh:
        fh.write(b"stale")
    os.chmod(stale, 0o644)
    ctx = context(penv, UPLOAD_MODULES=["ssh"], **sshd.settings(SSH_CLIENT=client))
    with connect(ctx, "ssh") as remote:
        assert remote.use_openssh() is (client == "openssh")
        transfer.upload(remote, path)
    assert sorted(os.listdir(sshd.root)) == [NAME]
    assert mode(os.path.join(sshd.root, NAME)) == 0o600


def test_check_warns_about_an_open_backup_dir(penv):
    os.chmod(penv.backup_dir, 0o755)
    proc = penv.run("check", check=0)
    assert "warning: BACKUP_DIR %s is accessible to group and others (mode 0755)" % penv.backup_dir in proc.stderr
    assert "chmod 700" in proc.stderr
    os.chmod(penv.backup_dir, 0o700)
    proc = penv.run("check", check=0)
    assert "BACKUP_DIR" not in proc.stderr
