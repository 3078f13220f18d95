"""The filesystem module with the real dar: names, the master schedule,
restores compared byte for byte with the tree as it stood at each run,
encryption (the key never on a command line), atomic slices, failures."""
import os
import re
import shutil
import subprocess
import threading

import pytest

from pypackrat.core import chains, darkey
from tests.archives import snapshot
from tests.conftest import processes

HOST = "testhost"
KEY = "k:ey \"dq\" 'sq' `bq` \\ # $x\tend"  # everything a dar command file must escape
WEEK = ["20240107", "20240108", "20240109", "20240110", "20240111", "20240112", "20240113",
        "20240114"]  # 20240107 and 20240114 are Sundays


# -- helpers ------------------------------------------------------------------

def write(path, data, day=0, mode=None):
    """Write ``data`` with an mtime that differs from day to day, so that dar
    sees every change whatever the clock's resolution."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    if mode is not None:
        os.chmod(path, mode)
    stamp = 1700000000 + day * 86400 + len(data)
    os.utime(path, (stamp, stamp))


def dar(*args, ok=(0, 11)):
    proc = subprocess.run(["dar", "-Q"] + [str(a) for a in args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode in ok, (args, proc.returncode, proc.stderr)
    return proc


def restore(backup_dir, chain, dest, key=None):
    """dar -x each archive of ``chain`` (master first) into ``dest``; -w lets
    the incremental overwrite what the master put there."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    for i, base in enumerate(chain):
        args = ["-x", os.path.join(backup_dir, base), "-R", dest]
        if i:
            args.append("-w")
        if key:
            args += ["-K", ":" + key]
        dar(*args)
    return snapshot(dest)


def dar_names(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".dar"))


def prefix(target):
    return HOST + str(target).replace("/", "-")


def mutate(src, day):
    """Day ``day`` (0 = the first Sunday) of a week of changes: files added,
    changed, renamed, deleted, a directory removed, a link retargeted."""
    j = lambda *p: os.path.join(src, *p)  # noqa: E731
    if day == 0:
        write(j("a.txt"), "alpha\n", day)
        write(j("sub", "b.txt"), "bravo\n", day)
        write(j("sub", "deep", "c.txt"), "charlie\n", day)
        write(j("big.bin"), os.urandom(30000), day)
        write(j("secret.conf"), "mode 600\n", day, 0o600)
        os.symlink("a.txt", j("link"))
        os.makedirs(j("empty"))
    elif day == 1:
        write(j("a.txt"), "alpha, changed on day 1\n", day)
        write(j("new1.txt"), "new on day 1\n", day)
    elif day == 2:
        os.unlink(j("sub", "b.txt"))
        write(j("sub", "e.txt"), "echo\n", day)
    elif day == 3:
        shutil.rmtree(j("sub", "deep"))
        os.rename(j("new1.txt"), j("renamed.txt"))
    elif day == 4:
        write(j("big.bin"), os.urandom(20000), day)
    elif day == 5:
        pass  # a day without changes
    elif day == 6:
        write(j("sub", "b.txt"), "bravo again, on day 6\n", day)
        os.chmod(j("a.txt"), 0o640)
        os.unlink(j("link"))
        os.symlink("renamed.txt", j("link"))
    elif day == 7:
        os.unlink(j("renamed.txt"))
        write(j("sunday.txt"), "the second Sunday\n", day)


@pytest.fixture
def fs(penv):
    """penv set up for the filesystem module over an empty ``src`` tree."""
    src = penv.tmp / "src"
    src.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)],
                         FS_SLICE_SIZE="1000M", ADMIN_EMAIL="admin@example.org")
    penv.src = src
    return penv


# -- the schedule, and restores as of every day ----------------------------------

def test_week_of_runs_names_and_restores(fs):
    """Master on Sunday, incrementals Monday to Saturday against it, the next
    master on the following Sunday; master + that day's incremental gives the
    tree as it stood at that day's run, for every day."""
    src, bk = str(fs.src), str(fs.backup_dir)
    snaps = {}
    for i, day in enumerate(WEEK):
        mutate(src, i)
        proc = fs.run("-v", date=day, check=0)
        snaps[day] = snapshot(src)
        assert "[FS] backing up %s to %s" % (src, os.path.join(bk, prefix(src) + "-" + day)) in proc.stdout
    p = prefix(src)
    assert dar_names(bk) == sorted(
        ["%s-20240107.master.1.dar" % p, "%s-20240114.master.1.dar" % p]
        + ["%s-%s.1.dar" % (p, d) for d in WEEK[1:7]])
    assert not [n for n in os.listdir(bk) if n.startswith(".packrat-tmp-")]
    names = os.listdir(bk)
    for day in WEEK:
        if day in ("20240107", "20240114"):
            chain = ["%s-%s.master" % (p, day)]
        else:
            chain = ["%s-20240107.master" % p, "%s-%s" % (p, day)]
        import datetime
        assert chains.restore_chain(names, p, datetime.datetime.strptime(day, "%Y%m%d").date()) == chain
        got = restore(bk, chain, str(fs.tmp / "restore"))
        assert got == snaps[day], day
    # the week did change the tree in every way the test means to cover
    assert "new1.txt" in snaps["20240109"] and "renamed.txt" not in snaps["20240109"]
    assert "renamed.txt" in snaps["20240110"] and "new1.txt" not in snaps["20240110"]
    assert "sub/deep" in snaps["20240109"] and "sub/deep" not in snaps["20240110"]
    assert "sub/b.txt" not in snaps["20240109"] and "sub/b.txt" in snaps["20240113"]


def test_monthly_schedule(fs):
    """FS_MASTER_FREQ=monthly: a master on FS_MASTER_DAY (given as 1, read as
    01) or when none exists yet; incrementals against the newest master."""
    fs.settings.update(FS_MASTER_FREQ="monthly", FS_MASTER_DAY="1", PURGE_LOCAL_ARCHIVES=100)
    src, bk = str(fs.src), str(fs.backup_dir)
    days = ["20240130", "20240131", "20240201", "20240202", "20240229", "20240301"]
    snaps = {}
    for i, day in enumerate(days):
        mutate(src, i)
        fs.run(date=day, check=0)
        snaps[day] = snapshot(src)
    p = prefix(src)
    assert dar_names(bk) == sorted([
        "%s-20240130.master.1.dar" % p, "%s-20240131.1.dar" % p,
        "%s-20240201.master.1.dar" % p, "%s-20240202.1.dar" % p, "%s-20240229.1.dar" % p,
        "%s-20240301.master.1.dar" % p])
    chains = {"20240130": ["20240130.master"], "20240131": ["20240130.master", "20240131"],
              "20240201": ["20240201.master"], "20240202": ["20240201.master", "20240202"],
              "20240229": ["20240201.master", "20240229"], "20240301": ["20240301.master"]}
    for day, chain in chains.items():
        got = restore(bk, ["%s-%s" % (p, c) for c in chain], str(fs.tmp / "restore"))
        assert got == snaps[day], day


def test_full_archives_when_incremental_is_off(fs):
    """FS_INCREMENTAL=no: a full archive every run, named without .master,
    each restoring on its own."""
    fs.settings.update(FS_INCREMENTAL=False)
    src, bk = str(fs.src), str(fs.backup_dir)
    snaps = {}
    for i, day in enumerate(WEEK[:3]):
        mutate(src, i)
        fs.run(date=day, check=0)
        snaps[day] = snapshot(src)
    p = prefix(src)
    assert dar_names(bk) == ["%s-%s.1.dar" % (p, d) for d in WEEK[:3]]
    for day in WEEK[:3]:
        assert restore(bk, ["%s-%s" % (p, day)], str(fs.tmp / "restore")) == snaps[day]


def test_targets_decide_on_their_own(fs):
    """A target added on Monday gets its master while the target that has
    one gets an incremental, whatever their order (the original forced every
    later target to a master)."""
    old = fs.src
    new = fs.tmp / "added"
    mutate(str(old), 0)
    fs.run(date="20240107", check=0)
    mutate(str(old), 1)
    write(str(new / "n.txt"), "new target\n")
    fs.settings["FS_TARGETS"] = [str(new), str(old)]
    fs.run(date="20240108", check=0)
    mutate(str(old), 2)
    fs.run(date="20240109", check=0)
    po, pn = prefix(old), prefix(new)
    assert dar_names(str(fs.backup_dir)) == sorted([
        "%s-20240107.master.1.dar" % po, "%s-20240108.1.dar" % po, "%s-20240109.1.dar" % po,
        "%s-20240108.master.1.dar" % pn, "%s-20240109.1.dar" % pn])
    got = restore(str(fs.backup_dir), ["%s-20240107.master" % po, "%s-20240109" % po], str(fs.tmp / "r"))
    assert got == snapshot(str(old))
    got = restore(str(fs.backup_dir), ["%s-20240108.master" % pn, "%s-20240109" % pn], str(fs.tmp / "r"))
    assert got == snapshot(str(new))


def test_reference_is_the_newest_master_by_name(fs):
    """The reference is the newest master by the date in its name, not by
    the files' times: an older master touched last is not taken."""
    src, bk = str(fs.src), str(fs.backup_dir)
    mutate(src, 0)
    fs.run(date="20240107", check=0)
    mutate(src, 1)
    fs.run(date="20240114", check=0)
    p = prefix(src)
    old = os.path.join(bk, "%s-20240107.master.1.dar" % p)
    os.utime(old, (2000000000, 2000000000))  # newest access and modification times
    mutate(src, 2)
    proc = fs.run("-v", date="20240115", check=0)
    assert "against %s-20240114.master" % p in proc.stdout
    got = restore(bk, ["%s-20240114.master" % p, "%s-20240115" % p], str(fs.tmp / "r"))
    assert got == snapshot(src)


# -- options: excludes, spaces, slices --------------------------------------------

def test_excludes(fs):
    """FS_EXCLUDE_FILES are name masks (-X), FS_EXCLUDE_PATHS paths relative
    to the target (-P); excluded directories come back empty (-D)."""
    src = str(fs.src)
    for rel in ("keep.txt", "drop.tmp", "sub/also.tmp", "sub/keep2.txt", "cache/x.txt",
                "sub/cache/y.txt", "logs/old/z.log", "logs/keep.log"):
        write(os.path.join(src, rel), rel + "\n")
    fs.settings.update(FS_EXCLUDE_FILES=["*.tmp"], FS_EXCLUDE_PATHS=["cache", "logs/old"])
    fs.run(date="20240107", check=0)
    got = restore(str(fs.backup_dir), ["%s-20240107.master" % prefix(src)], str(fs.tmp / "r"))
    expected = snapshot(src)
    for rel in ("drop.tmp", "sub/also.tmp", "cache/x.txt", "logs/old/z.log"):
        del expected[rel]
    assert got == expected
    assert got["cache"][0] == "dir" and got["logs/old"][0] == "dir" and "sub/cache/y.txt" in got


def test_target_with_spaces(fs):
    src = fs.tmp / "my data dir"
    fs.settings["FS_TARGETS"] = [str(src)]
    mutate(str(src), 0)
    fs.run(date="20240107", check=0)
    mutate(str(src), 1)
    fs.run(date="20240108", check=0)
    p = prefix(src)
    assert " " in p
    assert dar_names(str(fs.backup_dir)) == ["%s-20240107.master.1.dar" % p, "%s-20240108.1.dar" % p]
    got = restore(str(fs.backup_dir), ["%s-20240107.master" % p, "%s-20240108" % p], str(fs.tmp / "r"))
    assert got == snapshot(str(src))


def test_slices_and_a_rerun_the_same_day(fs):
    """A tree bigger than FS_SLICE_SIZE makes .master.1.dar, .master.2.dar...
    A second run the same day replaces the archive, leaving no slice of the
    first one behind."""
    src, bk = str(fs.src), str(fs.backup_dir)
    write(os.path.join(src, "random.bin"), os.urandom(100000))
    write(os.path.join(src, "small.txt"), "small\n")
    fs.settings["FS_SLICE_SIZE"] = "20k"
    fs.run(date="20240107", check=0)
    p = prefix(src)
    names = dar_names(bk)
    assert len(names) >= 5
    assert names == sorted("%s-20240107.master.%d.dar" % (p, n) for n in range(1, len(names) + 1))
    assert all(os.path.getsize(os.path.join(bk, n)) <= 20 * 1024 for n in names)
    assert restore(bk, ["%s-20240107.master" % p], str(fs.tmp / "r")) == snapshot(src)
    os.unlink(os.path.join(src, "random.bin"))
    fs.run(date="20240107", check=0)
    assert dar_names(bk) == ["%s-20240107.master.1.dar" % p]
    assert restore(bk, ["%s-20240107.master" % p], str(fs.tmp / "r")) == snapshot(src)


def test_file_changing_while_read_is_a_success(fs):
    """dar exit 11 (a file changed while dar read it) counts as success: the
    archive gets its final name and the run exits 0."""
    src, bk = str(fs.src), str(fs.backup_dir)
    growing = os.path.join(src, "growing.log")
    write(growing, os.urandom(12 << 20))
    write(os.path.join(src, "still.txt"), "still\n")
    done = threading.Event()

    def grow():
        with open(growing, "ab") as fh:
            while not done.is_set():
                fh.write(b"x")
                fh.flush()
                done.wait(0.002)

    thread = threading.Thread(target=grow)
    thread.start()
    try:
        proc = fs.run("-v", date="20240107")
    finally:
        done.set()
        thread.join()
    assert proc.returncode == 0, proc.stderr
    assert "changed while dar read them (dar exit 11)" in proc.stdout
    p = prefix(src)
    assert dar_names(bk) == ["%s-20240107.master.1.dar" % p]
    got = restore(bk, ["%s-20240107.master" % p], str(fs.tmp / "r"))
    assert got["still.txt"] == snapshot(src)["still.txt"]


def test_missing_target_is_skipped(fs):
    missing = str(fs.tmp / "not-there")
    fs.settings["FS_TARGETS"] = [missing, str(fs.src)]
    write(str(fs.src / "f"), "f\n")
    proc = fs.run("-v", date="20240107", check=0)
    assert "[FS] %s does not exist" % missing in proc.stdout
    assert dar_names(str(fs.backup_dir)) == ["%s-20240107.master.1.dar" % prefix(fs.src)]


def test_dry_run_makes_nothing(fs):
    write(str(fs.src / "f"), "f\n")
    proc = fs.run("-n", date="20240107", check=0)
    assert "[FS] would back up %s" % fs.src in proc.stdout
    assert os.listdir(str(fs.backup_dir)) == []


# -- encryption ---------------------------------------------------------------------

def original_master(backup_dir, target, day, key):
    """A master made by the Bash original's command line (docs/ORIGINAL.md):
    dar -c BACKUP_DIR/NAME -n -z9 -D -K blowfish:KEY -R TARGET"""
    name = "%s-%s.master" % (prefix(target), day)
    proc = subprocess.run(["dar", "-c", os.path.join(backup_dir, name), "-n", "-z9", "-D",
                           "-K", "blowfish:" + key, "-R", str(target)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return name


def cipher_of(path_base, key):
    """The cipher dar reports in the archive's summary."""
    # -v: the summary, then a question that dar answers "no" without a terminal (exit 4)
    out = dar("-l", path_base, "-K", ":" + key, "-v", ok=(0, 4)).stdout
    found = re.findall(r"Symmetric key encryption used\s*:\s*(.+)", out)
    assert len(found) == 1, out
    return found[0].strip()


def test_original_blowfish_master_serves_as_reference(fs):
    """A master written by the original (blowfish, key on its command line)
    is the reference of our incremental (aes256 by default); the pair
    restores the tree. With FS_CIPHER=blowfish new archives are blowfish."""
    src, bk = str(fs.src), str(fs.backup_dir)
    mutate(src, 0)
    master = original_master(bk, src, "20240107", KEY)
    mutate(src, 1)
    fs.settings["ENCRYPTION_KEY"] = KEY
    proc = fs.run("-v", date="20240108", check=0)
    assert KEY not in proc.stdout + proc.stderr
    assert "-K aes256:**** -J :****" in proc.stdout
    p = prefix(src)
    assert dar_names(bk) == ["%s-20240107.master.1.dar" % p, "%s-20240108.1.dar" % p]
    assert cipher_of(os.path.join(bk, "%s-20240108" % p), KEY) == "AES 256"
    got = restore(bk, [master, "%s-20240108" % p], str(fs.tmp / "r"), key=KEY)
    assert got == snapshot(src)
    # without the key, the incremental is unreadable: it really is encrypted
    dar("-t", os.path.join(bk, "%s-20240108" % p), ok=range(1, 256))

    fs.settings["FS_CIPHER"] = "blowfish"
    mutate(src, 2)
    fs.run(date="20240109", check=0)
    assert cipher_of(os.path.join(bk, "%s-20240109" % p), KEY) == "blowfish"


def test_key_never_on_a_command_line(fs):
    """While packrat and dar run with ENCRYPTION_KEY, no /proc/PID/cmdline
    holds the key; the sampler must have seen dar at work."""
    key = "cmdline-" + os.urandom(12).hex()
    src = str(fs.src)
    for i in range(4):  # incompressible: dar -z9 takes a while over it
        write(os.path.join(src, "r%d.bin" % i), os.urandom(6 << 20))
    fs.settings["ENCRYPTION_KEY"] = key
    needle = key.encode()
    mine = os.path.join(str(fs.backup_dir), ".packrat-tmp-").encode()
    seen = {"samples": 0, "dar": 0, "key": []}
    done = threading.Event()

    def sample():
        while not done.is_set():
            seen["samples"] += 1
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as fh:
                        cmdline = fh.read()
                except OSError:
                    continue
                if needle in cmdline:
                    seen["key"].append(cmdline)
                words = cmdline.split(b"\0")
                if os.path.basename(words[0]) == b"dar" and any(w.startswith(mine) for w in words):
                    seen["dar"] += 1  # this test's dar, not another test's

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fs.run(date="20240107", check=0)
        mutate(src, 0)
        fs.run(date="20240108", check=0)  # an incremental: -J for the reference as well
    finally:
        done.set()
        thread.join()
    assert seen["dar"] > 0, seen
    assert seen["key"] == []
    p = prefix(src)
    assert dar_names(str(fs.backup_dir)) == ["%s-20240107.master.1.dar" % p, "%s-20240108.1.dar" % p]
    assert not any(needle in open(os.path.join(str(fs.backup_dir), n), "rb").read()
                   for n in dar_names(str(fs.backup_dir)))


# -- failures: exit 1, one mail, nothing under a final name --------------------------

def test_unreadable_reference_fails_cleanly(fs):
    src, bk = str(fs.src), str(fs.backup_dir)
    mutate(src, 0)
    fs.run(date="20240107", check=0)
    p = prefix(src)
    master = os.path.join(bk, "%s-20240107.master.1.dar" % p)
    with open(master, "r+b") as fh:
        fh.seek(0)
        fh.write(b"\0" * 4096)  # the header and more: not a dar archive any more
    mutate(src, 1)
    proc = fs.run(date="20240108", check=1)
    assert "[FS] backup of %s failed: dar exited with status" % src in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(fs.mails()) == 1
    assert dar_names(bk) == ["%s-20240107.master.1.dar" % p]
    assert [n for n in os.listdir(bk) if n.startswith(".packrat-tmp-")] == []


def test_dar_failing_mid_archive_leaves_no_slice(fs):
    """dar killed after it wrote some slices -> exit 1, one mail, no slice
    under a final or a temporary name; the other target is still made, and
    uploaded."""
    import signal
    import time
    src, bk = str(fs.src), str(fs.backup_dir)
    other = fs.tmp / "other"
    write(str(other / "o.txt"), "other target\n")
    for i in range(4):
        write(os.path.join(src, "r%d.bin" % i), os.urandom(4 << 20))
    remote = fs.tmp / "remote"
    remote.mkdir()
    fs.settings.update(FS_TARGETS=[src, str(other)], FS_SLICE_SIZE="200k",
                       UPLOAD_MODULES=["local"], LOCAL_DIR=str(remote))
    killed = []
    done = threading.Event()

    def killer():
        while not done.is_set() and not killed:
            if any(n.startswith(".packrat-tmp-") and n.endswith(".3.dar") for n in os.listdir(bk)):
                # this test's dar only (its archive goes to a file, or to dar_xform while it is uploaded)
                for pid in processes(lambda words: os.path.basename(words[0]) == b"dar"
                                     and src.encode() in words):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(sorted(os.listdir(bk)))
            time.sleep(0.002)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        proc = fs.run(date="20240107")
    finally:
        done.set()
        thread.join()
    assert killed, "dar finished before the test could kill it"
    assert len([n for n in killed[0] if n.endswith(".dar")]) >= 3
    assert proc.returncode == 1, proc.stderr
    assert "[FS] backup of %s failed: dar was killed by signal 9" % src in proc.stderr
    assert len(fs.mails()) == 1
    po = prefix(other)
    assert dar_names(bk) == ["%s-20240107.master.1.dar" % po]
    assert [n for n in os.listdir(bk) if n.startswith(".packrat-tmp-")] == []
    assert sorted(os.listdir(str(remote))) == ["%s-20240107.master.1.dar" % po]


def test_stale_temporary_slices_are_removed(fs):
    bk = str(fs.backup_dir)
    with open("/proc/sys/kernel/pid_max") as fh:
        dead = int(fh.read()) - 1
    while os.path.exists("/proc/%d" % dead):
        dead -= 1
    stale = ".packrat-tmp-%d-%s-20240106.master.1.dar" % (dead, prefix(fs.src))
    alive = ".packrat-tmp-%d-other-20240106.master.1.dar" % os.getpid()
    for name in (stale, alive):
        open(os.path.join(bk, name), "wb").close()
    write(str(fs.src / "f"), "f\n")
    fs.run(date="20240107", check=0)
    assert not os.path.exists(os.path.join(bk, stale))
    assert os.path.exists(os.path.join(bk, alive))


# -- configuration ------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"FS_METHOD": "tar"}, "FS_METHOD=tar: tar is not supported"),
    ({"FS_TARGETS": []}, "FS_TARGETS is empty"),
    ({"FS_TARGETS": ["relative/dir"]}, "'relative/dir' is not an absolute path"),
    ({"FS_TARGETS": ["/a/b", "/a-b"]}, "would share archive names"),
    ({"FS_SLICE_SIZE": "1.5G"}, "FS_SLICE_SIZE='1.5G'"),
])
def test_configuration_errors(fs, settings, message):
    fs.settings.update(settings)
    proc = fs.run(date="20240107", check=1)
    assert message in proc.stderr
    assert str(fs.config_path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(str(fs.backup_dir)) == []


def test_dcf_word_carries_every_character(tmp_path):
    """The command file quoting, checked against dar: a master made with the
    key on dar's command line serves as the reference (-J from the command
    file) of an incremental encrypted with -K from the command file."""
    src = tmp_path / "src"
    write(str(src / "f"), "f\n")
    key = "".join(chr(c) for c in range(1, 128)) + "\u00e9\u20ac"
    master, inc = str(tmp_path / "m"), str(tmp_path / "i")
    dar("-c", master, "-K", "aes256:" + key, "-R", src, ok=(0,))
    write(str(src / "g"), "g\n")
    dcf = tmp_path / "dcf"
    dcf.write_text(darkey.key_lines(key, "blowfish", reference=True))
    dar("-c", inc, "-A", master, "-B", dcf, "-R", src, ok=(0,))
    dar("-t", inc, "-K", "blowfish:" + key, ok=(0,))
    dar("-t", inc, "-K", "blowfish:" + key[:-1], ok=(2,))  # a wrong key is refused


def test_stock_config(tmp_path):
    """The shipped packrat.conf: a dry run as it is, and a real run of its
    filesystem backup of /etc with BACKUP_DIR moved to a temporary directory."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    packrat = os.path.join(root, "packrat")
    env = dict(os.environ, PACKRAT_DATE="20240107")
    proc = subprocess.run([packrat, "-c", os.path.join(root, "packrat.conf"), "-n"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[FS] would back up /etc to " in proc.stdout
    with open(os.path.join(root, "packrat.conf")) as fh:
        text = fh.read()
    bk = tmp_path / "backup"
    for name, value in (("BACKUP_DIR", bk), ("LOCK_FILE", tmp_path / "lock"),
                        ("MODULES_D", tmp_path / "modules.d"), ("ADMIN_EMAIL", "")):
        text, n = re.subn(r'(?m)^%s=.*$' % name, '%s="%s"' % (name, value), text)
        assert n == 1, name
    conf = tmp_path / "packrat.conf"
    conf.write_text(text)
    proc = subprocess.run([packrat, "-c", str(conf), "-v"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    import socket
    name = "%s-etc-20240107.master" % socket.gethostname()
    assert dar_names(str(bk)) == [name + ".1.dar"]
    listing = dar("-l", bk / name).stdout
    assert "hostname" in listing or "passwd" in listing
