"""Helpers for the restore/verify/list tests: a small tree that changes
every day of a week, its snapshots, and dar archives written with the Bash
original's own command lines (docs/ORIGINAL.md, "Filesystem archives"); and dated
files for the purge tests (day, touch)."""
import datetime
import os
import shutil
import stat
import subprocess

import pytest

HOST = "testhost"
KEY = "cost'anza \"key\" \\ $x\t`y`"  # quotes, backslash, space, tab, dollar: the DCF carries them
WEEK = ["20240107", "20240108", "20240109", "20240110", "20240111", "20240112", "20240113"]
# 20240107 is a Sunday: the master day of FS_MASTER_DAY=Sun
RUN_DAY = datetime.date(2026, 11, 26)  # the run date of the purge tests


def day(n):
    """The date n days before RUN_DAY, as YYYYMMDD."""
    return (RUN_DAY - datetime.timedelta(days=n)).strftime("%Y%m%d")


def touch(path, content=b"x"):
    """A file at ``path`` (pathlib), its directories made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def write(path, data, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    if mode is not None:
        os.chmod(path, mode)


def mutate(src, i):
    """Change the tree ``src`` the way day ``i`` (0..6) of the week does."""
    j = lambda *p: os.path.join(src, *p)  # noqa: E731
    if i == 0:
        write(j("a.txt"), "alpha\n")
        write(j("sub", "b.txt"), "bravo\n")
        write(j("sub", "deep", "c.txt"), "charlie\n")
        write(j("big.bin"), os.urandom(40000))
        write(j("secret.conf"), "mode 600\n", 0o600)
        os.symlink("a.txt", j("link"))
        os.makedirs(j("empty"))
    elif i == 1:
        write(j("a.txt"), "alpha, changed on day 1\n")
        write(j("new1.txt"), "new on day 1\n")
    elif i == 2:
        os.unlink(j("sub", "b.txt"))
        write(j("sub", "e.txt"), "echo\n")
    elif i == 3:
        shutil.rmtree(j("sub", "deep"))
    elif i == 4:
        write(j("big.bin"), os.urandom(30000))
        os.rename(j("new1.txt"), j("new2.txt"))
    elif i == 5:
        pass  # a day without changes
    elif i == 6:
        write(j("sub", "b.txt"), "bravo again, on day 6\n")
        os.chmod(j("a.txt"), 0o640)
        os.unlink(j("link"))
        os.symlink("new2.txt", j("link"))


def snapshot(top):
    """Every entry under ``top``: kind, content (or link target), mode, and a
    file's mtime (dar restores it)."""
    out = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", fh.read(), stat.S_IMODE(st.st_mode), int(st.st_mtime))
    return out


def archive_prefix(host, target):
    return host + target.rstrip("/").replace("/", "-")


def original_dar(backup_dir, host, target, day, key=None, master=None, slice_size=None):
    """One archive as the Bash original made it:
    ``dar -c BACKUP_DIR/NAME -n -z9 -D [-s SLICE] [-K blowfish:KEY] -R TARGET``
    plus ``-A BACKUP_DIR/<master> [-J blowfish:KEY]`` for an incremental.
    Returns the archive's base name."""
    name = "%s-%s%s" % (archive_prefix(host, target), day, ".master" if master is None else "")
    argv = ["dar", "-c", os.path.join(backup_dir, name), "-n", "-z9", "-D"]
    if slice_size:
        argv += ["-s", slice_size]
    if key:
        argv += ["-K", "blowfish:" + key]
    argv += ["-R", target]
    if master is not None:
        argv += ["-A", os.path.join(backup_dir, master)]
        if key:
            argv += ["-J", "blowfish:" + key]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode in (0, 11), proc.stderr
    return name


def original_week(backup_dir, src, host, key=None, slice_size=None, days=7):
    """A week of the original's runs over ``src`` (master on day 0, an
    incremental against it every other day), or its first ``days`` days.
    Returns {day: snapshot}."""
    snaps = {}
    master = None
    for i, day in enumerate(WEEK[:days]):
        mutate(src, i)
        name = original_dar(backup_dir, host, src, day, key, master, slice_size)
        if master is None:
            master = name
        snaps[day] = snapshot(src)
    return snaps


def flip_byte(path, offset=None):
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        at = size // 2 if offset is None else offset
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0xFF]))


_made = {}


def make_week(tmp_path_factory, key, days=7):
    """A week of the original's runs over a small tree, 20 KiB slices, made
    once per session (an encrypted dar archive costs a key derivation).
    Tests copy the archives (use()) and must leave the source tree as it is."""
    if (key, days) in _made:
        return _made[(key, days)]
    top = tmp_path_factory.mktemp("week")
    src, archives = str(top / "data" / "sites"), str(top / "archives")
    os.makedirs(src)
    os.makedirs(archives)
    snaps = original_week(archives, src, HOST, key=key, slice_size="20k", days=days)
    _made[(key, days)] = archives, src, snaps
    return _made[(key, days)]


@pytest.fixture(scope="module")
def plain_week(tmp_path_factory):
    return make_week(tmp_path_factory, None)


@pytest.fixture(scope="module")
def blowfish_week(tmp_path_factory):
    return make_week(tmp_path_factory, KEY, days=3)


def use(penv, made, key=None):
    archives, src, snaps = made
    for name in os.listdir(archives):
        shutil.copy(os.path.join(archives, name), penv.backup_dir / name)
    penv.settings.update(ENCRYPTION_KEY=key or "", FS_TARGETS=[src])
    return src, snaps


def week_dar_name(src, day, slice_no=1):
    """The name of a slice of ``make_week``'s chain (master on WEEK[0])."""
    master = ".master" if day == WEEK[0] else ""
    return "%s-%s%s.%d.dar" % (archive_prefix(HOST, src), day, master, slice_no)


def mirror_to_local(penv, share):
    """Copy everything in BACKUP_DIR to ``share`` and configure it as the
    'local' upload module's remote (a copy is enough where the upload itself
    is not under test)."""
    share.mkdir(exist_ok=True)
    for n in os.listdir(penv.backup_dir):
        shutil.copy(penv.backup_dir / n, share / n)
    penv.settings.update(UPLOAD_MODULES=["local"], LOCAL_DIR=str(share))
    return share
