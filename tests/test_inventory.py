"""packrat list: chains and dumps, local and remote, and what is wrong."""
import bz2
import os
import shutil

import pytest

from tests.archives import HOST, WEEK, archive_prefix, mirror_to_local, week_dar_name
from tests.archives import plain_week, use  # noqa: F401


@pytest.fixture
def shared(penv, plain_week, tmp_path):
    src, snaps = use(penv, plain_week)
    for day in (WEEK[0], WEEK[3]):
        name = "%s-mysql-shop-%s.sql.bz2" % (HOST, day)
        (penv.backup_dir / name).write_bytes(bz2.compress(b"CREATE TABLE t (i int);\n"))
    (penv.backup_dir / ("%s-postgresql-all-%s.sql.bz2" % (HOST, WEEK[3]))).write_bytes(bz2.compress(b"--\n"))
    (penv.backup_dir / "otherhost-etc-20240107.master.1.dar").write_bytes(b"not ours")
    (penv.backup_dir / "notes.txt").write_text("no date, not an archive\n")
    return src, mirror_to_local(penv, tmp_path / "share")


def test_chains_and_dumps_all_in_order(penv, shared):
    src, share = shared
    proc = penv.run("list", check=0)
    out = proc.stdout
    assert "Filesystem %s: %s-*.dar" % (src, archive_prefix(HOST, src)) in out
    rows = [l.split() for l in out.splitlines() if l.strip().startswith("2024")]
    fs = [r for r in rows if r[1] in ("master", "incremental")]
    assert [(r[0], r[1], r[2]) for r in fs] == [(WEEK[0], "master", "3")] + [
        (d, "incremental", s) for d, s in zip(WEEK[1:], ["1", "1", "1", "2", "2", "2"])]
    # the size of the master: its three slices, in both places
    total = sum(os.path.getsize(penv.backup_dir / week_dar_name(src, WEEK[0], i)) for i in (1, 2, 3))
    assert fs[0][3:] == ["%.1f" % (total / 1024), "KiB", "%.1f" % (total / 1024), "KiB"]
    assert "  mysql shop" in out and "  postgresql all" in out
    assert "%s-mysql-shop-%s.sql.bz2" % (HOST, WEEK[3]) in out
    assert "otherhost" not in out and "notes.txt" not in out
    assert "No problems found." in out


def test_orphan_remote_only_local_only_and_size(penv, shared):
    src, share = shared
    for directory in (penv.backup_dir, share):
        for n in os.listdir(directory):
            if ".master." in n and n.startswith(HOST):
                os.unlink(directory / n)
    os.unlink(penv.backup_dir / week_dar_name(src, WEEK[2]))          # only remote now
    os.unlink(share / ("%s-mysql-shop-%s.sql.bz2" % (HOST, WEEK[3])))  # only local now
    with open(share / week_dar_name(src, WEEK[4], 2), "r+b") as fh:   # a torn copy
        fh.truncate(100)
    proc = penv.run("list", check=0)
    out = proc.stdout
    assert "%s: an incremental whose master is gone" % week_dar_name(src, WEEK[1]) in out
    assert "incremental, NO MASTER" in out
    assert "%s: only on local, not in BACKUP_DIR" % week_dar_name(src, WEEK[2]) in out
    assert "%s-mysql-shop-%s.sql.bz2: only in BACKUP_DIR, not on local" % (HOST, WEEK[3]) in out
    local_size = os.path.getsize(penv.backup_dir / week_dar_name(src, WEEK[4], 2))
    assert "%s: %d bytes in BACKUP_DIR, 100 on local" % (week_dar_name(src, WEEK[4], 2), local_size) in out
    # --local: no remote, so no copy problems; the orphans remain
    out = penv.run("list", "--local", check=0).stdout
    assert "only on" not in out and "an incremental whose master is gone" in out


def test_unreadable_remote_and_help(penv, shared, tmp_path):
    penv.settings["LOCAL_DIR"] = str(tmp_path / "not-mounted")
    proc = penv.run("list", check=1)
    assert "local: cannot connect" in proc.stdout
    assert "only in BACKUP_DIR" not in proc.stdout
    proc = penv.run("list", "--help", check=0)
    assert "incrementals whose master is gone" in proc.stdout


def test_a_bash_upload_module_lists_but_cannot_fetch(penv, plain_week, tmp_path):
    """A Bash upload module (the shipped example) lists and deletes only:
    list shows its copies without sizes, verify counts them present, and
    restore --from says it cannot fetch from it."""
    from tests.conftest import ROOT
    src, snaps = use(penv, plain_week)
    shutil.copy(os.path.join(ROOT, "modules", "example.sh"), penv.module_path / "example.sh")
    nas = tmp_path / "nas"
    nas.mkdir()
    for n in os.listdir(penv.backup_dir):
        shutil.copy(penv.backup_dir / n, nas / n)
    penv.settings.update(UPLOAD_MODULES=["example_upload"], EXAMPLE_UPLOAD_DIR=str(nas))
    out = penv.run("list", check=0).stdout
    assert "No problems found." in out
    master = [l.split() for l in out.splitlines() if " master " in l][0]
    assert master[-1] == "?"
    proc = penv.run("verify", check=0)
    assert "2 archive(s) tested, 0 dump(s) decoded, 5 remote copies compared" in proc.stdout
    os.unlink(penv.backup_dir / week_dar_name(src, WEEK[-1]))
    proc = penv.run("restore", "--from", "example_upload", src, tmp_path / "r", check=1)
    assert "whose module cannot fetch files" in proc.stderr
