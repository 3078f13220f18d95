"""Restore never trusts the remote more than the local (issue 11), played
as the attacker: an unprivileged user who can write to the upload share
plants dumps and archives there or in BACKUP_DIR (given to root, see plant()). Real servers, real psql,
mysql and dar.

- a planted dump dated after today is never taken as the newest;
- with ENCRYPTION_KEY set, a plain dump or archive is refused, loudly,
  naming the file;
- a dump cannot run shell or client commands: psql runs restricted
  (``\\restrict``), mysql with --binary-mode (and --sandbox): no file is
  created, the restore fails cleanly, and the database it made is gone.
"""
import bz2
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from tests.archives import HOST, KEY, WEEK, archive_prefix, original_dar, use
from tests.archives import blowfish_week  # noqa: F401
from tests.attack import as_nobody
from tests.databases import db_settings, server_for
from tests.servers.mariadb import mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401

DAY = "20240107"
FUTURE = "20991231"


@pytest.fixture
def share():
    """An upload share any local user can write to (a NAS export, a shared
    directory), where the unprivileged attacker can reach it: the way in."""
    path = tempfile.mkdtemp(prefix="packrat-share-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def write_as_nobody(path, data):
    as_nobody("sh", "-c", 'cat > "$1"', "sh", path, input=data, check=True, capture_output=False, text=False)


def plant(path, data):
    """``data`` at ``path``, written by the unprivileged user nobody: where
    nobody can reach the directory (the share) directly; elsewhere
    (BACKUP_DIR here, under root's private test directory) written in a
    directory of its own and moved in. Then given to root: a file nobody
    owns is passed over before any of these checks (tests/test_planted_owner.py);
    these are for the planted files whose owner cannot be told (an FTP or
    S3 remote's operator, a file root copied in)."""
    path = pathlib.Path(path)
    try:
        write_as_nobody(path, data)
    except subprocess.CalledProcessError:
        staging = tempfile.mkdtemp(prefix="packrat-plant-", dir="/tmp")
        try:
            os.chmod(staging, 0o1777)
            write_as_nobody(os.path.join(staging, path.name), data)
            shutil.move(os.path.join(staging, path.name), path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    assert os.stat(path).st_uid != 0
    os.chown(path, 0, 0)


def exists(server, engine, db):
    return db in server.databases()


def shell_lines(engine, marker):
    """Client commands that would each create a file named ``marker``-N."""
    if engine == "postgresql":
        return ["\\! touch %s-1" % marker,
                "\\o |touch %s-2" % marker,
                "SELECT 1;",
                "\\o",
                "\\copy (SELECT 1) TO PROGRAM 'touch %s-3'" % marker,
                "\\setenv X y",
                "\\unrestrict guessed",
                "\\! touch %s-4" % marker]
    return ["\\! touch %s-1" % marker,
            "system touch %s-2" % marker,
            "\\! touch %s-3" % marker]


def planted_sql(engine, marker):
    first = "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);\n"
    return (first + "\n".join(shell_lines(engine, marker)) + "\nINSERT INTO t VALUES (2);\n").encode()


def no_marker(marker):
    directory = os.path.dirname(marker)
    base = os.path.basename(marker)
    return [n for n in os.listdir(directory) if n.startswith(base)] == []


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_planted_future_dump_is_not_the_newest_and_plain_is_refused(penv, engine, request, share,
                                                                   tmp_path):
    """The real dump is encrypted; the attacker plants a plain one dated
    2099 on the share. Without -d the real one is restored; with -d 2099 the
    plain one is refused by name, before any database is made."""
    server = server_for(request, engine)
    db = server.new_database("hz")
    server.fill(db, rows=5)
    want = server.contents(db)
    db_settings(penv, engine, server, [db], ENCRYPTION_KEY=KEY, UPLOAD_MODULES=["local"],
                LOCAL_DIR=str(share))
    penv.run(date=DAY, check=0)
    marker = str(tmp_path / "pwned")
    planted = "%s-%s-%s-%s.sql.bz2" % (HOST, engine, db, FUTURE)
    plant(share / planted, bz2.compress(planted_sql(engine, marker)))
    proc = penv.run("restore", "--from", "local", engine, db, "--into", db + "_a", check=0)
    assert "Restored %s-%s-%s-%s.sql.bz2" % (HOST, engine, db, DAY) in proc.stdout
    assert server.contents(db + "_a") == want
    proc = penv.run("restore", "--from", "local", "-d", FUTURE, engine, db, "--into", db + "_b",
                    check=1)
    assert "%s is not encrypted, but ENCRYPTION_KEY is set: refused" % planted in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not exists(server, engine, db + "_b")
    assert no_marker(marker)
    # list names the planted file as a problem
    out = penv.run("list", check=0).stdout
    assert "%s: dated after today" % planted in out
    # the same plain dump dated before the real one and chosen by -d: refused too
    old = planted.replace(FUTURE, "20240101")
    plant(share / old, bz2.compress(planted_sql(engine, marker)))
    proc = penv.run("restore", "--from", "local", "-d", "20240101", engine, db, "--into", db + "_c",
                    check=1)
    assert "%s is not encrypted" % old in proc.stderr
    assert not exists(server, engine, db + "_c") and no_marker(marker)


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_a_dump_cannot_run_client_commands(penv, engine, request, tmp_path):
    """No key: the planted dump is taken (it is the newest), and its client
    commands (psql's \\! \\o| \\copy ... PROGRAM, mysql's \\! and system)
    must not run as root: none of them creates its file, the restore fails
    with a clear line, and the database it created is dropped."""
    server = server_for(request, engine)
    db = server.new_database("sh")
    db_settings(penv, engine, server, [db])
    marker = str(tmp_path / "pwned")
    planted = penv.backup_dir / ("%s-%s-%s-%s.sql.bz2" % (HOST, engine, db, DAY))
    plant(planted, bz2.compress(planted_sql(engine, marker)))
    proc = penv.run("restore", engine, db, "--into", db + "_x", check=1)
    assert no_marker(marker), os.listdir(tmp_path)
    assert "Traceback" not in proc.stderr
    if engine == "postgresql":
        assert "the dump holds psql commands, which packrat does not run" in proc.stderr
    else:
        assert "restore into database %s_x failed" % db in proc.stderr
    assert "created for this restore, was dropped again" in proc.stderr
    assert not exists(server, engine, db + "_x")
    # the same commands, run by the same client without packrat's guard,
    # do create the files: the test can fail
    if engine == "mysql":
        argv = ["mysql", "--no-defaults", "-S", server.socket, "-uroot", db]
    else:
        argv = server.psql_argv(db=db)
        argv = [a for a in argv if a != "ON_ERROR_STOP=1" and a != "-v"]
    subprocess.run(argv, input="\n".join(shell_lines(engine, marker)).encode(), capture_output=True)
    assert not no_marker(marker)


def test_pg_dumpall_keeps_its_connects_but_not_a_shell(penv, postgres_server, tmp_path):
    """A whole-server dump needs \\connect between databases: its exact forms
    pass, the restriction lifted around each with packrat's key; a \\! in
    it, or a \\connect with more than a database name, does not run."""
    server = postgres_server
    marker = str(tmp_path / "pwned")
    db = server.new_database("wh")
    db_settings(penv, "postgresql", server, ["__ALL__"])
    sql = ("\\restrict abcdef\nSELECT 1;\n\\unrestrict abcdef\n"
           "\\connect -reuse-previous=on \"dbname='%s'\"\n"
           "CREATE TABLE marker_table (id INT);\n"
           "\\connect -reuse-previous=on \"dbname='postgres'\" host=10.255.255.1\n"
           "\\! touch %s-1\n" % (db, marker))
    planted = penv.backup_dir / ("%s-postgresql-all-%s.sql.bz2" % (HOST, DAY))
    plant(planted, bz2.compress(sql.encode()))
    proc = penv.run("restore", "postgresql", "all", check=1)
    assert no_marker(marker)
    assert "the dump holds psql commands, which packrat does not run" in proc.stderr
    # the allowed \connect did run: the table is in the named database
    assert server.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'marker_table'", db) \
        .strip() == "1"


def test_planted_plain_archive_is_refused(penv, blowfish_week, tmp_path):
    """The real chain is encrypted (the original's blowfish); the attacker
    plants a plain master dated after it and one dated 2099. Without -d the
    2099 one is passed over; the newest one up to today is the planted
    plain master: refused by name, loudly, nothing restored."""
    src, snaps = use(penv, blowfish_week, KEY)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "evil").write_text("planted\n")
    day = "20240120"
    for when in (day, FUTURE):
        name = original_dar(str(tmp_path), HOST, str(victim), when)
        planted = "%s-%s.master.1.dar" % (archive_prefix(HOST, src), when)
        plant(penv.backup_dir / planted, (tmp_path / (name + ".1.dar")).read_bytes())
    dest = tmp_path / "out"
    proc = penv.run("restore", src, dest, check=1)
    assert "%s-%s.master is not encrypted, but ENCRYPTION_KEY is set: refused" \
        % (archive_prefix(HOST, src), day) in proc.stderr
    assert not dest.exists()
    proc = penv.run("restore", "-d", FUTURE, src, dest, check=1)
    assert "%s-%s.master is not encrypted" % (archive_prefix(HOST, src), FUTURE) in proc.stderr
    assert not dest.exists()
    # the real chain still restores as of its own days
    penv.run("restore", "-d", WEEK[2], src, dest, check=0)
    from tests.archives import snapshot
    assert snapshot(str(dest)) == snaps[WEEK[2]]


def test_a_psql_without_restricted_mode_is_refused(penv, postgres_server, tmp_path):
    """A psql older than \\restrict (emulated: it answers as such a psql
    does) cannot keep a dump from running commands: packrat refuses to
    restore with it, with one clear line, before it creates anything."""
    server = postgres_server
    db = server.new_database("old")
    db_settings(penv, "postgresql", server, [db])
    penv.run(date=DAY, check=0)
    bin_dir = tmp_path / "oldbin"
    bin_dir.mkdir()
    real = shutil.which("psql")
    (bin_dir / "psql").write_text(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in '\\restrict '*|'\\unrestrict '*)\n"
        "  echo \"psql: invalid command ${a%% *}\" >&2; exit 1;; esac; done\n"
        "exec %s \"$@\"\n" % real)
    os.chmod(bin_dir / "psql", 0o755)
    before = sorted(server.databases())
    proc = penv.run("restore", "postgresql", db, "--into", db + "_x", check=1,
                    env={"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])})
    assert "this psql cannot run in restricted mode (\\restrict" in proc.stderr
    assert "Update the PostgreSQL client" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(server.databases()) == before
