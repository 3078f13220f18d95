"""packrat restore: real dar archives restored and compared byte for byte
with the source as it was on each day of a week of runs."""
import os
import shutil

import pytest

from tests.archives import HOST, KEY, WEEK, archive_prefix, snapshot
from tests.archives import blowfish_week, plain_week, use  # noqa: F401


@pytest.fixture
def week(penv, plain_week):
    return use(penv, plain_week)


@pytest.fixture
def encrypted_week(penv, blowfish_week):
    return use(penv, blowfish_week, KEY)


def names(directory):
    return sorted(os.listdir(directory))


def check_days(penv, src, snaps, days, tmp_path):
    prefix = archive_prefix(HOST, src)
    for day in days:
        dest = tmp_path / ("out-" + day)
        proc = penv.run("-v", "restore", "-d", day, src, dest, check=0)
        assert snapshot(str(dest)) == snaps[day], day
        assert "Restored %s as of %s" % (src, day) in proc.stdout
        # master and the newest incremental only, nothing between
        restored = [l for l in proc.stdout.splitlines() if l.startswith("[RESTORE] restoring")]
        expected = ["%s-%s.master" % (prefix, WEEK[0])] + (["%s-%s" % (prefix, day)] if day != WEEK[0] else [])
        assert [l.split()[2] for l in restored] == expected
        assert KEY not in proc.stdout + proc.stderr


def test_original_chain_restores_each_day(penv, week, tmp_path):
    src, snaps = week
    assert "%s-%s.master.2.dar" % (archive_prefix(HOST, src), WEEK[0]) in names(penv.backup_dir)  # sliced
    check_days(penv, src, snaps, WEEK, tmp_path)


def test_original_encrypted_chain_restores(penv, encrypted_week, tmp_path):
    """blowfish archives of the original; the key (with quotes, a backslash,
    a space) reaches dar through a DCF file, never argv."""
    src, snaps = encrypted_week
    check_days(penv, src, snaps, [WEEK[0], WEEK[2]], tmp_path)


def test_newest_by_default_and_dates_between(penv, week, tmp_path):
    src, snaps = week
    penv.run("restore", src, tmp_path / "newest", check=0)
    assert snapshot(str(tmp_path / "newest")) == snaps[WEEK[-1]]
    # a day after the last run: the newest before it
    penv.run("restore", "-d", "20240120", src, tmp_path / "later", check=0)
    assert snapshot(str(tmp_path / "later")) == snaps[WEEK[-1]]
    proc = penv.run("restore", "-d", "20240101", src, tmp_path / "before", check=1)
    assert "no archive of %s on or before 20240101" % archive_prefix(HOST, src) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refuses_non_empty_destination_unless_forced(penv, week, tmp_path):
    src, snaps = week
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    (dest / "a.txt").write_text("will be overwritten\n")
    proc = penv.run("restore", src, dest, check=1)
    assert "is not empty" in proc.stderr and "--force" in proc.stderr
    assert (dest / "a.txt").read_text() == "will be overwritten\n"
    penv.run("restore", "--force", src, dest, check=0)
    got = snapshot(str(dest))
    assert got.pop("keep.txt")[1] == b"mine\n"
    assert got == snaps[WEEK[-1]]


def test_one_file_or_directory(penv, week, tmp_path):
    src, snaps = week
    penv.run("restore", "-d", WEEK[1], "--file", "sub/deep/c.txt", src, tmp_path / "one", check=0)
    assert snapshot(str(tmp_path / "one")) == {
        "sub": ("dir", snaps[WEEK[1]]["sub"][1]),
        "sub/deep": ("dir", snaps[WEEK[1]]["sub/deep"][1]),
        "sub/deep/c.txt": snaps[WEEK[1]]["sub/deep/c.txt"]}
    # an absolute path under the target; a directory with its content
    penv.run("restore", "--file", os.path.join(src, "sub"), src, tmp_path / "dir", check=0)
    want = {k: v for k, v in snaps[WEEK[-1]].items() if k == "sub" or k.startswith("sub/")}
    assert snapshot(str(tmp_path / "dir")) == want
    # deleted by day 3: not there as of day 3
    proc = penv.run("restore", "-d", WEEK[3], "--file", "sub/deep/c.txt", src, tmp_path / "gone", check=1)
    assert "not in the backup of %s as of %s: sub/deep/c.txt" % (src, WEEK[3]) in proc.stderr
    proc = penv.run("restore", "--file", "../etc/passwd", src, tmp_path / "bad", check=1)
    assert "inside the target" in proc.stderr


def test_wrong_key_and_missing_master(penv, encrypted_week, tmp_path):
    src, snaps = encrypted_week
    penv.settings["ENCRYPTION_KEY"] = "wrong"
    proc = penv.run("restore", src, tmp_path / "w", check=1)
    assert proc.stderr.startswith("packrat restore: dar exited with status")
    penv.settings["ENCRYPTION_KEY"] = KEY
    for name in names(penv.backup_dir):
        if ".master." in name:
            os.unlink(penv.backup_dir / name)
    proc = penv.run("restore", src, tmp_path / "m", check=1)
    assert "is an incremental, and no master of %s" % archive_prefix(HOST, src) in proc.stderr
    assert "--from MODULE" in proc.stderr


def test_missing_slice_is_named(penv, week, tmp_path):
    src, snaps = week
    victim = "%s-%s.master.2.dar" % (archive_prefix(HOST, src), WEEK[0])
    os.unlink(penv.backup_dir / victim)
    proc = penv.run("restore", src, tmp_path / "s", check=1)
    assert "%s-%s.master: slice 2 is missing" % (archive_prefix(HOST, src), WEEK[0]) in proc.stderr


def test_from_local_upload_module(penv, week, tmp_path):
    """Uploaded with the local module (packrat -U DATE for each day), BACKUP_DIR
    emptied, restored with --from local as of each day."""
    src, snaps = week
    share = tmp_path / "share"
    share.mkdir()
    penv.settings.update(UPLOAD_MODULES=["local"], LOCAL_DIR=str(share))
    for day in WEEK:
        penv.run("-U", day, date=day, check=0)
    uploaded = names(share)
    assert uploaded == names(penv.backup_dir)
    for name in names(penv.backup_dir):
        os.unlink(penv.backup_dir / name)
    proc = penv.run("restore", src, tmp_path / "x", check=1)
    assert "no archive of" in proc.stderr and "--from MODULE" in proc.stderr
    for day in (WEEK[0], WEEK[3], WEEK[6]):
        dest = tmp_path / ("from-" + day)
        penv.run("restore", "--from", "local", "-d", day, src, dest, check=0)
        assert snapshot(str(dest)) == snaps[day]
    # nothing fetched is left behind
    assert names(penv.backup_dir) == []
    # only the master local, the incremental fetched
    master = [n for n in uploaded if ".master." in n]
    for name in master:
        shutil.copy(share / name, penv.backup_dir / name)
    os.unlink(share / master[0])  # the local copy serves
    penv.run("restore", "--from", "local", src, tmp_path / "mixed", check=0)
    assert snapshot(str(tmp_path / "mixed")) == snaps[WEEK[-1]]


def test_help_and_bad_arguments(penv):
    proc = penv.run("restore", "--help", check=0)
    assert "--from MODULE" in proc.stdout and "examples:" in proc.stdout
    proc = penv.run("restore", "-d", "2024-01-01", "/etc", "/tmp/x", check=1)
    assert "YYYYMMDD" in proc.stderr and "Traceback" not in proc.stderr
