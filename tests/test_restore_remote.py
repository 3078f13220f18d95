"""Round trips through the real modules: a week of nightly runs of the
filesystem module (master on Sunday, incrementals after), uploaded by the
ssh, ftp and s3 modules to real servers; BACKUP_DIR emptied; each day
restored from each remote into an empty directory, equal to the source as
it was that day, deleted files included. (Unencrypted: every encrypted dar
run costs a key derivation; keys are covered by test_restore.py.)"""
import os
import shutil

import pytest

from tests.archives import WEEK, mutate, snapshot
from tests.servers.ftp import ftp_server  # noqa: F401
from tests.servers.s3 import s3_server  # noqa: F401
from tests.servers.sshd import sshd_server  # noqa: F401

REMOTES = ["ssh", "ftp", "s3"]


@pytest.fixture(scope="module")
def nightly_week(tmp_path_factory, sshd_server, ftp_server, s3_server):
    """Seven nightly runs (packrat, as from cron) with every upload module;
    the tree changes between nights. Returns (settings, src, snapshots, names)."""
    from tests.conftest import PackratEnv
    top = tmp_path_factory.mktemp("nightly")
    env = PackratEnv(top)
    src = str(top / "data" / "www")
    os.makedirs(src)
    env.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[src], FS_SLICE_SIZE="20k",
                        FS_MASTER_DAY="Sun", UPLOAD_MODULES=REMOTES,
                        ADMIN_EMAIL="")
    for server in (sshd_server, ftp_server, s3_server):
        env.settings.update(server.settings())
    snaps = {}
    for i, day in enumerate(WEEK):
        mutate(src, i)
        env.run(date=day, check=0)
        snaps[day] = snapshot(src)
    names = sorted(os.listdir(env.backup_dir))
    return env, src, snaps, names


@pytest.mark.parametrize("remote", REMOTES)
def test_each_day_restores_from_the_remote(nightly_week, remote, tmp_path):
    env, src, snaps, names = nightly_week
    assert any(".master.2.dar" in n for n in names) and len(names) > 8
    saved = tmp_path / "saved"
    shutil.copytree(env.backup_dir, saved)
    try:
        for n in names:
            os.unlink(env.backup_dir / n)
        for day in WEEK:
            dest = tmp_path / day
            proc = env.run("restore", "--from", remote, "-d", day, src, dest, check=0)
            assert snapshot(str(dest)) == snaps[day], (remote, day)
            assert "Restored %s as of %s" % (src, day) in proc.stdout
        assert os.listdir(env.backup_dir) == []  # fetched files do not stay
    finally:
        for n in names:
            shutil.copy(saved / n, env.backup_dir / n)


def test_list_and_verify_see_every_remote(nightly_week):
    env, src, snaps, names = nightly_week
    out = env.run("list", check=0).stdout
    assert "No problems found." in out
    header = [l for l in out.splitlines() if l.strip().startswith("date")][0].split()
    assert header == ["date", "kind", "slices", "BACKUP_DIR"] + REMOTES
    proc = env.run("verify", check=0)
    n = len([x for x in names if WEEK[0] + ".master." in x or WEEK[-1] + "." in x])
    assert "2 archive(s) tested, 0 dump(s) decoded, %d remote copies compared" % (3 * n) in proc.stdout


def test_verify_and_list_catch_damaged_remote_copies(nightly_week, sshd_server, s3_server):
    env, src, snaps, names = nightly_week
    victim = [n for n in names if WEEK[-1] + ".1.dar" in n][0]
    local = (env.backup_dir / victim).read_bytes()
    ssh_copy = os.path.join(sshd_server.root, victim)
    key = "%s/%s" % (s3_server.prefix, victim)
    try:
        with open(ssh_copy, "r+b") as fh:  # truncated on the ssh remote
            fh.truncate(100)
        flipped = bytearray(local)  # same size, one byte changed on s3
        flipped[len(flipped) // 2] ^= 0xFF
        s3_server.inject(key, bytes(flipped))
        proc = env.run("verify", check=1)
        assert "%s: the copy on ssh has 100 bytes, the local file %d" % (victim, len(local)) in proc.stderr
        assert "%s: the copy on s3 differs from the local file (md5)" % victim in proc.stderr
        assert "2 problem(s)" in proc.stderr
        out = env.run("list", check=0).stdout
        assert "%s: %d bytes in BACKUP_DIR, 100 on ssh" % (victim, len(local)) in out
    finally:
        with open(ssh_copy, "wb") as fh:
            fh.write(local)
        s3_server.inject(key, local)
