"""A backup's name on a file another user owns is planted: never the
reference of the night's incremental, never a restore's source. Played as
the attacker: the unprivileged user nobody writes a real dar archive, of a
tree with its own bytes in a file of the victim's size and mtime (which
stat tells anyone), under a master's name dated before the night, in
BACKUP_DIR left open to all (1777) or in an upload share it owns. Before
(catalog.own_files, Remote.foreign in the catalog), the night's incremental
was made against the planted master (it saved no data: the file seemed
unchanged) and restore gave back the attacker's bytes."""
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.attack import as_nobody, reachable_env

SUNDAY, MONDAY, TUESDAY = "20240107", "20240108", "20240109"  # Sunday: FS_MASTER_DAY's default
SECRET = b"ROOT SECRET\n"
EVIL = b"EVIL CONTNT\n"  # the same size


@pytest.fixture
def open_env(smtp):
    """A PackratEnv under a 0755 directory of /tmp the attacker can reach."""
    yield from reachable_env(smtp, "packrat-planted-")


def victim_tree(env):
    src = env.tmp / "src"
    src.mkdir(mode=0o755)
    secret = src / "secret.txt"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    os.utime(secret, (1700000000, 1700000000))
    return src, secret


def plant_master(env, directory, src, day):
    """nobody's own dar archive, named as ``src``'s master of ``day``, in
    ``directory`` (which nobody can write to); returns its path."""
    from pypackrat.core import names
    tree = tempfile.mkdtemp(prefix="packrat-evil-", dir="/tmp")
    try:
        os.chmod(tree, 0o755)
        with open(os.path.join(tree, "secret.txt"), "wb") as fh:
            fh.write(EVIL)
        os.utime(os.path.join(tree, "secret.txt"), (1700000000, 1700000000))
        subprocess.run(["chown", "-R", "nobody:nogroup", tree], check=True)
        base = names.archive_base(names.archive_prefix("testhost", str(src)), day, master=True)
        proc = as_nobody("dar", "-N", "-c", os.path.join(str(directory), base), "-R", tree, "-Q", "-q")
        assert proc.returncode == 0, proc.stderr
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    path = os.path.join(str(directory), base + ".1.dar")
    assert os.stat(path).st_uid != 0
    return path


def test_a_master_planted_in_an_open_backup_dir_is_not_the_reference(open_env, tmp_path):
    env = open_env
    os.chmod(env.backup_dir, 0o1777)
    src, secret = victim_tree(env)
    env.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], FS_COMPRESSION="none")
    env.run(date=SUNDAY, check=0)
    planted = plant_master(env, env.backup_dir, src, MONDAY)
    proc = env.run("-v", date=TUESDAY, check=0)
    assert "against testhost-%s-%s.master" % (str(src).strip("/").replace("/", "-"), SUNDAY) in proc.stdout
    assert "%s is owned by uid" % planted in proc.stderr
    dest = tmp_path / "out"
    proc = env.run("restore", "-d", TUESDAY, src, dest, check=0)
    assert "master %s + incremental %s" % (SUNDAY, TUESDAY) in proc.stdout
    assert (dest / "secret.txt").read_bytes() == SECRET
    # the planted master is no restore's source either, even named by -d
    proc = env.run("restore", "-d", MONDAY, src, tmp_path / "out2", check=0)
    assert "as of %s (master %s)" % (MONDAY, SUNDAY) in proc.stdout
    assert (tmp_path / "out2" / "secret.txt").read_bytes() == SECRET


def test_a_master_planted_in_a_share_is_not_restored(open_env, tmp_path):
    env = open_env
    share = env.tmp / "share"
    share.mkdir()
    subprocess.run(["chown", "nobody:nogroup", str(share)], check=True)  # a share the attacker owns
    src, secret = victim_tree(env)
    env.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], FS_COMPRESSION="none",
              UPLOAD_MODULES=["local"], LOCAL_DIR=str(share))
    env.run(date=SUNDAY, check=0)
    env.run(date=TUESDAY, check=0)
    planted = plant_master(env, share, src, MONDAY)
    for name in os.listdir(env.backup_dir):
        os.unlink(env.backup_dir / name)
    dest = tmp_path / "out"
    proc = env.run("restore", "--from", "local", "-d", TUESDAY, src, dest, check=0)
    assert "master %s + incremental %s" % (SUNDAY, TUESDAY) in proc.stdout
    assert "%s is owned by another account" % os.path.basename(planted) in proc.stderr
    assert (dest / "secret.txt").read_bytes() == SECRET
    st = os.stat(dest / "secret.txt")
    assert st.st_uid == 0
