"""Dump failures name their cause and stay one module's failure (issue 12).

- A full disk during a dump (BACKUP_DIR on a 256 KiB tmpfs, real servers,
  the real pipeline): the message names the compressor's "No space left on
  device" (or that BACKUP_DIR is full, when openssl writes the file), not
  the dump's broken pipe it caused; no file is left.
- A program missing from PATH (the compressor, the dump program): the
  database module fails when it runs with one clear line, the other
  modules run and upload, one mail goes out; it is not a configuration
  error (``packrat check`` passes; ``requirements()`` lists it).
- execute.pipeline: the stage that failed for a reason of its own is
  reported before the ones its exit broke; nothing starts when a stage's
  program is missing."""
import datetime
import os
import shutil
import subprocess
import sys

import pytest

from pypackrat import execute
from pypackrat.errors import PackratError
from pypackrat.backup import mysql, postgresql
from tests.conftest import PACKRAT
from tests.databases import Settings, configure, engine, server  # noqa: F401
from tests.servers.mariadb import mariadb_server  # noqa: F401
from tests.servers.postgres import postgres_server  # noqa: F401
from tests.test_databases import KEY

TODAY = datetime.date.today().strftime("%Y%m%d")


def big_database(engine, server):
    """About 1.5 MB that bzip2 cannot shrink below 256 KiB."""
    db = server.new_database("big")
    if engine == "mysql":
        blob = os.urandom(1536 * 1024).hex()
        server.client(db, input="CREATE TABLE big (b LONGBLOB); INSERT INTO big VALUES (UNHEX('%s'));\n" % blob)
    else:
        server.sql("CREATE TABLE big AS SELECT string_agg(md5(random()::text), '') AS t "
                   "FROM generate_series(1, 50000)", db)
    return db


@pytest.fixture
def small_backup_dir(tmp_path):
    path = tmp_path / "small"
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("encrypted", [False, True])
def test_full_disk_names_the_cause(penv, engine, server, small_backup_dir, encrypted):
    db = big_database(engine, server)
    configure(penv, engine, server, [db], BACKUP_DIR=str(small_backup_dir),
              **({"ENCRYPTION_KEY": KEY} if encrypted else {}))
    proc = penv.run(date=TODAY)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(penv.mails()) == 1
    body = penv.smtp.bodies()[0]
    assert "%s backup of %s failed" % (engine, db) in body
    if encrypted:
        # openssl writes the file; its own words are "error writing output file"
        assert "openssl" in body and "the file system of BACKUP_DIR %s is full" % small_backup_dir in body
    else:
        assert "bzip2 exited with status" in body and "No space left on device" in body, body
    assert "errno 32" not in body and "Broken pipe" not in body, body
    assert os.listdir(small_backup_dir) == []


# -- a missing program ---------------------------------------------------------------

STAMP = r'''
mod_stamp() {
    f="$BACKUP_DIR/$HOSTNAME-stamp-$TODAY.txt"
    echo stamped > "$f" || diemail "cannot write $f"
    NEW_BACKUPS="$NEW_BACKUPS $f"
}
'''


def path_without(tmp_path, *missing):
    """A PATH of one directory: links to every program of the usual
    directories, except ``missing``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in reversed(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            if name in missing or not os.access(target, os.X_OK) or os.path.isdir(target):
                continue
            link = bindir / name
            if os.path.lexists(link):
                link.unlink()
            link.symlink_to(target)
    for name in missing:
        assert shutil.which(name, path=str(bindir)) is None
    return str(bindir)


def run_with_path(penv, path, *args):
    penv.write()
    env = {"PATH": path, "PACKRAT_DATE": TODAY, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)] + list(args),
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("missing,line", [
    (("bzip2",), "the mysql module needs bzip2 (COMPRESSOR=bzip2), which is not installed"),
    (("mysqldump", "mariadb-dump"), "the mysql module needs mysqldump (or mariadb-dump), which is not installed"),
])
def test_missing_program_fails_the_module_not_the_night(penv, mariadb_server, tmp_path, missing, line):
    server = mariadb_server
    db = server.new_database("tool")
    server.fill(db, 3)
    nas = tmp_path / "nas"
    nas.mkdir()
    with open(penv.module_path / "stamp.sh", "w") as fh:
        fh.write(STAMP)
    configure(penv, "mysql", server, [db], BACKUP_MODULES=["mysql", "stamp"], UPLOAD_MODULES=["local"],
              LOCAL_DIR=str(nas))
    path = path_without(tmp_path, *missing)

    checked = run_with_path(penv, path, "check")
    assert checked.returncode == 0, checked.stderr  # not a configuration error
    assert "Traceback" not in checked.stderr
    assert line in checked.stdout + checked.stderr  # but listed

    proc = run_with_path(penv, path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert line in proc.stderr, proc.stderr
    assert len(penv.mails()) == 1 and line in penv.smtp.bodies()[0]
    stamp = "testhost-stamp-%s.txt" % TODAY
    assert os.listdir(penv.backup_dir) == [stamp]  # the other module ran, no dump and no temporary
    assert os.listdir(nas) == [stamp]  # and its file went offsite


def test_requirements_list_missing_programs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_without(tmp_path, "bzip2", "pg_dumpall", "openssl"))
    settings = Settings(COMPRESSOR="bzip2", ENCRYPTION_KEY="k", MYSQL_TARGETS=["db"], MYSQL_EXCLUDE=[],
                        POSTGRESQL_TARGETS=["__ALL__"], POSTGRESQL_EXCLUDE=[], POSTGRESQL_PASS="", DB_SPLIT_ALL=False)
    conf = "/etc/packrat/packrat.conf: "  # each line names the file to edit first
    assert mysql.requirements(settings) == [
        conf + "the mysql module needs bzip2 (COMPRESSOR=bzip2), which is not installed (not found in PATH)",
        conf + "the mysql module needs openssl (ENCRYPTION_KEY is set), which is not installed "
        "(not found in PATH)"]
    lines = postgresql.requirements(settings)
    assert lines[0] == conf + "the postgresql module needs pg_dumpall, which is not installed (not found in PATH)"
    assert len(lines) == 3
    assert mysql.check(settings) == [] and postgresql.check(settings) == []


# -- the pipeline itself -----------------------------------------------------------------

@pytest.mark.fast
def test_pipeline_reports_the_cause_not_the_broken_pipe():
    # the producer ignores SIGPIPE, like mysqldump, and complains of the broken pipe
    producer = ["sh", "-c", "trap '' PIPE; exec yes"]
    consumer = ["sh", "-c", "head -c 1000 >/dev/null; echo 'squeeze: No space left on device' >&2; exit 1"]
    with pytest.raises(execute.CommandFailed) as failed:
        execute.pipeline([producer, consumer], os.devnull)
    assert "No space left on device" in str(failed.value)
    assert failed.value.argv == consumer


@pytest.mark.fast
def test_pipeline_starts_nothing_when_a_program_is_missing(tmp_path):
    mark = tmp_path / "started"
    with pytest.raises(PackratError) as failed:
        execute.pipeline([["touch", str(mark)], ["no-such-program-packrat-test"]], os.devnull)
    assert str(failed.value) == "no-such-program-packrat-test is not installed (not found in PATH)"
    assert not mark.exists()


@pytest.mark.fast
def test_secrets_with_bytes_that_are_not_utf8_reach_programs_as_those_bytes():
    """A password read from the config with undecodable bytes (kept as
    surrogates) goes into the memory file as the original bytes."""
    from pypackrat import execute
    secret = b"pa\xffss".decode("utf-8", "surrogateescape")
    with execute.secret_fd(secret) as fd:
        assert os.read(fd, 100) == b"pa\xffss"
    with execute.secret_path(secret) as path:
        with open(path, "rb") as fh:
            assert fh.read() == b"pa\xffss"
