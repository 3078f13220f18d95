"""packrat restore: real dar archives restored and compared byte for byte
with the source as it was on each day of a week of runs."""
import os
import shutil

import pytest

from tests.archives import HOST, KEY, WEEK, archive_prefix, snapshot
from tests.archives import blowfish_week, plain_week, use  # noqa: F401
from tests.databases import db_settings
from tests.servers.mariadb import mariadb_fresh, mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_fresh, postgres_server  # noqa: F401


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
        commands = [l for l in proc.stdout.splitlines() if l.startswith("/usr/bin/dar ") or l.startswith("dar ")]
        assert len(commands) == len(expected)
        for line in commands:  # the key in a memory file, never in argv
            assert " -K" not in line and ("-B /dev/fd/" in line) == bool(penv.settings["ENCRYPTION_KEY"])


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


def test_by_archive_prefix_of_another_host(penv, week, tmp_path):
    """An archive prefix (as the names show it) needs no FS_TARGETS entry and
    no --host: a replacement machine restores the old one's archives."""
    src, snaps = week
    penv.settings.update(HOSTNAME="newbox", FS_TARGETS=[])
    proc = penv.run("restore", "-d", WEEK[4], archive_prefix(HOST, src), tmp_path / "p", check=0)
    assert snapshot(str(tmp_path / "p")) == snaps[WEEK[4]]
    proc = penv.run("restore", src, tmp_path / "q", check=1)
    assert "no archive of newbox" in proc.stderr
    penv.run("restore", "--host", HOST, src, tmp_path / "q", check=0)
    assert snapshot(str(tmp_path / "q")) == snaps[WEEK[-1]]


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
    assert "packrat restore: dar exited with status" in proc.stderr
    assert "ENCRYPTION_KEY or cipher?" in proc.stderr
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


def test_dry_run_changes_nothing(penv, week, tmp_path):
    src, snaps = week
    proc = penv.run("-n", "restore", "-d", WEEK[3], src, tmp_path / "dry", check=0)
    prefix = archive_prefix(HOST, src)
    assert "[dry run] would restore %s-%s.master into" % (prefix, WEEK[0]) in proc.stdout
    assert "[dry run] would restore %s-%s into" % (prefix, WEEK[3]) in proc.stdout
    assert not (tmp_path / "dry").exists()


def test_help_and_bad_arguments(penv):
    proc = penv.run("restore", "--help", check=0)
    assert "--from MODULE" in proc.stdout and "examples:" in proc.stdout
    proc = penv.run("restore", "-d", "2024-01-01", "/etc", "/tmp/x", check=1)
    assert "YYYYMMDD" in proc.stderr and "Traceback" not in proc.stderr


# -- databases ---------------------------------------------------------------------

DAY1, DAY2 = "20240107", "20240108"


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_database_restored_into_a_new_one_as_of_each_day(penv, engine, request, tmp_path):
    """Two nights of dumps (encrypted: mysql aes-256-cbc + bzip2, postgresql
    the original's blowfish + zstd); each restored with --into beside the
    original equals the source tables of its night."""
    server = request.getfixturevalue("mariadb_server" if engine == "mysql" else "postgres_server")
    db = server.new_database("rs")
    server.fill(db, rows=20)
    more = {"ENCRYPTION_KEY": KEY, "DB_CIPHER": "aes-256-cbc"} if engine == "mysql" else \
        {"ENCRYPTION_KEY": KEY, "DB_CIPHER": "blowfish", "COMPRESSOR": "zstd"}
    share = tmp_path / "share"
    share.mkdir()
    db_settings(penv, engine, server, [db], UPLOAD_MODULES=["local"], LOCAL_DIR=str(share), **more)
    penv.run(date=DAY1, check=0)
    first = server.contents(db)
    server.sql("DELETE FROM people WHERE id < 10; INSERT INTO counters VALUES ('c', 3)", db)
    penv.run(date=DAY2, check=0)
    second = server.contents(db)
    assert first != second
    for name in os.listdir(penv.backup_dir):  # the first night's dump is on the remote only
        if DAY1 in name:
            os.unlink(penv.backup_dir / name)
    proc = penv.run("restore", "-d", DAY1, engine, db, "--into", db + "_x", check=1)
    assert "no %s dump of %s on or before %s" % (engine, db, DAY1) in proc.stderr
    assert "add --from MODULE" in proc.stderr
    penv.settings["UPLOAD_MODULES"] = []
    for day, want in ((DAY1, first), (DAY2, second)):
        into = "%s_%s" % (db, day)
        proc = penv.run("restore", "--from", "local", "-d", day, engine, db, "--into", into, check=0)
        assert "Restored testhost-%s-%s-%s.sql." % (engine, db, day) in proc.stdout
        assert server.contents(into) == want
    # the original's name exists: refused without --force, replaced with it
    proc = penv.run("restore", "-d", DAY2, engine, db, check=1)
    assert "database %s exists" % db in proc.stderr and "--into" in proc.stderr
    assert server.contents(db) == second
    penv.run("restore", "--from", "local", "-d", DAY1, engine, db, "--force", check=0)
    assert server.contents(db) == first
    assert KEY not in proc.stdout + proc.stderr and server.password not in proc.stderr


def test_mysql_restore_fails_cleanly_on_a_damaged_dump(penv, mariadb_server):
    db = mariadb_server.new_database("dmg")
    mariadb_server.fill(db, rows=5)
    db_settings(penv, "mysql", mariadb_server, [db])
    penv.run(date=DAY1, check=0)
    dump = penv.backup_dir / ("testhost-mysql-%s-%s.sql.bz2" % (db, DAY1))
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    proc = penv.run("restore", "mysql", db, "--into", db + "_x", check=1)
    assert "bzip2 exited with status" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = penv.run("restore", "mysql", "nosuchdb", "--into", "y", check=1)
    assert "no mysql dump of nosuchdb" in proc.stderr


def test_pg_dumpall_restores_through_psql(penv, postgres_fresh):
    server = postgres_fresh
    for prefix in ("one", "two"):
        server.fill(server.new_database(prefix), rows=10)
    names = [d for d in server.databases() if d.startswith(("one_", "two_"))]
    want = {d: server.contents(d) for d in names}
    db_settings(penv, "postgresql", server, ["__ALL__"])
    penv.run(date=DAY1, check=0)
    for d in names:
        server.sql('DROP DATABASE "%s"' % d)
    proc = penv.run("-v", "restore", "postgresql", "all", check=0)
    assert "Restored testhost-postgresql-all-%s.sql.bz2 into the server" % DAY1 in proc.stdout
    assert {d: server.contents(d) for d in names} == want
    proc = penv.run("restore", "postgresql", "all", "--into", "x", check=1)
    assert "whole-server dump" in proc.stderr


def test_mysql_all_restores_into_the_server(penv, mariadb_fresh):
    server = mariadb_fresh
    db = server.new_database("every")
    server.fill(db, rows=10)
    want = server.contents(db)
    db_settings(penv, "mysql", server, ["__ALL__"])
    penv.run(date=DAY1, check=0)
    server.sql("DROP DATABASE `%s`" % db)
    proc = penv.run("restore", "mysql", "all", check=0)
    assert "Restored testhost-mysql-all-%s.sql.bz2 into the server" % DAY1 in proc.stdout
    assert server.contents(db) == want


def test_full_archives_when_incremental_is_off(penv, tmp_path):
    """FS_INCREMENTAL=no: the original names every archive without .master,
    each a full one: restored alone, listed as full, no orphan reported."""
    from tests.archives import mutate, original_dar
    src = str(tmp_path / "data" / "full")
    os.makedirs(src)
    snaps = {}
    for i, day in enumerate(WEEK[:3]):
        mutate(src, i)
        name = original_dar(str(penv.backup_dir), HOST, src, day)
        os.rename(penv.backup_dir / (name + ".1.dar"),  # the original's name for a full archive
                  penv.backup_dir / (name.replace(".master", "") + ".1.dar"))
        snaps[day] = snapshot(src)
    penv.settings.update(FS_INCREMENTAL=False, FS_TARGETS=[src])
    for day in WEEK[:3]:
        proc = penv.run("restore", "-d", day, src, tmp_path / day, check=0)
        assert "(full %s)" % day in proc.stdout
        assert snapshot(str(tmp_path / day)) == snaps[day]
    out = penv.run("list", check=0).stdout
    assert out.count(" full ") == 3 and "No problems found." in out
    penv.run("verify", check=0)


def test_original_dump_command_lines_restore(penv, mariadb_server, tmp_path):
    """Dumps written by the original's own pipeline (docs/ORIGINAL.md):
    ``mysqldump -u USER --opt -h HOST -P PORT DB | bzip2 [| openssl enc -e -salt
    -bf -pass pass:KEY] > FILE`` (OpenSSL 3 needs the legacy provider for -bf:
    added, as on a machine where the original's encryption worked; the key
    from the environment here, the same key derivation as pass:KEY)."""
    import subprocess
    server = mariadb_server
    db = server.new_database("orig")
    server.fill(db, rows=15)
    want = server.contents(db)
    env = dict(os.environ, MYSQL_PWD=server.password, K=KEY)
    base = "mysqldump -u %s --opt -h 127.0.0.1 -P %d %s | bzip2" % (server.user, server.port, db)
    for day, encrypt in ((DAY1, ""), (DAY2, " | openssl enc -e -provider legacy -provider default "
                                             "-salt -bf -pass env:K")):
        out = penv.backup_dir / ("testhost-mysql-%s-%s.sql.bz2" % (db, day))
        subprocess.run(["bash", "-o", "pipefail", "-c", base + encrypt + ' > "$1"', "bash", str(out)],
                       env=env, check=True)
    db_settings(penv, "mysql", server, [db], ENCRYPTION_KEY=KEY, DB_CIPHER="blowfish")
    # with ENCRYPTION_KEY set, the plain dump of DAY1 is refused; without, restored
    proc = penv.run("restore", "-d", DAY1, "mysql", db, "--into", "%s_%s" % (db, DAY1), check=1)
    assert "is not encrypted, but ENCRYPTION_KEY is set: refused" in proc.stderr
    for day, key in ((DAY1, ""), (DAY2, KEY)):
        penv.settings["ENCRYPTION_KEY"] = key
        penv.run("restore", "-d", day, "mysql", db, "--into", "%s_%s" % (db, day), check=0)
        assert server.contents("%s_%s" % (db, day)) == want


def test_no_secret_in_any_argv_or_environment(penv, encrypted_week, mariadb_server, postgres_server,
                                              tmp_path):
    """Every program restore runs goes through a wrapper (first in PATH)
    that records its argv and environment: neither holds the key or a
    database password."""
    src, snaps = encrypted_week
    log = tmp_path / "calls.log"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    programs = ["dar", "openssl", "bzip2", "zstd", "mysql", "mariadb", "mysqladmin", "mariadb-admin",
                "psql", "createdb", "dropdb"]
    for program in programs:
        real = shutil.which(program)
        if real:
            (wrappers / program).write_text(
                '#!/bin/sh\n{ printf "%%s\\n" "$0 $*"; env; echo; } >> %s\nexec %s "$@"\n' % (log, real))
            (wrappers / program).chmod(0o755)
    path = {"PATH": "%s:%s" % (wrappers, os.environ["PATH"])}
    mdb, pdb = mariadb_server.new_database("sec"), postgres_server.new_database("sec")
    mariadb_server.fill(mdb, rows=3)
    postgres_server.fill(pdb, rows=3)
    db_settings(penv, "mysql", mariadb_server, [mdb], DB_CIPHER="aes-256-cbc")
    db_settings(penv, "postgresql", postgres_server, [pdb], BACKUP_MODULES=["mysql", "postgresql"])
    penv.run(date=DAY1, check=0)
    penv.run("restore", "-d", WEEK[2], src, tmp_path / "fs", env=path, check=0)
    penv.run("restore", "mysql", mdb, "--into", mdb + "_s", env=path, check=0)
    penv.run("restore", "postgresql", pdb, "--into", pdb + "_s", env=path, check=0)
    penv.run("verify", "-d", DAY1, env=path, check=0)  # the master of that day, and the dumps
    calls = log.read_text()
    called = {line.split()[0].rsplit("/", 1)[-1] for line in calls.splitlines()
              if line.startswith(str(wrappers))}
    assert {"dar", "openssl", "bzip2", "psql", "createdb"} <= called, called
    assert called & {"mysql", "mariadb"}, called  # it creates and drops databases too (SQL)
    for secret in (KEY, mariadb_server.password, postgres_server.password):
        assert secret not in calls
    assert mariadb_server.contents(mdb + "_s") == mariadb_server.contents(mdb)
