"""packrat verify: real dar -t, real remote copies (the local upload
module), the failure mail; each kind of damage named, exit 1."""
import os
import shutil

import pytest

from tests.archives import HOST, KEY, WEEK, archive_prefix, flip_byte, mirror_to_local, week_dar_name
from tests.archives import blowfish_week, plain_week, use  # noqa: F401


@pytest.fixture
def shared(penv, plain_week, tmp_path):
    """The week, with copies on a 'local' remote (test_restore uploads with
    packrat -U; here a copy is enough)."""
    src, snaps = use(penv, plain_week)
    return src, mirror_to_local(penv, tmp_path / "share")


def test_good_archives_exit_0(penv, shared):
    src, share = shared
    proc = penv.run("-v", "verify", check=0)
    assert "[VERIFY] testing %s-%s.master (3 slices)" % (archive_prefix(HOST, src), WEEK[0]) in proc.stdout
    assert "[VERIFY] testing %s-%s (2 slices)" % (archive_prefix(HOST, src), WEEK[-1]) in proc.stdout
    # master (3 slices) + the last incremental (2), each compared on the remote
    assert "verify 20240113: all good: 2 archive(s) tested, 0 dump(s) decoded, 5 remote copies" \
        in proc.stdout
    assert penv.mails() == []
    penv.run("verify", "-d", WEEK[2], check=0)


def test_flipped_byte_in_a_slice(penv, shared):
    src, share = shared
    victim = week_dar_name(src, WEEK[0], 2)
    flip_byte(penv.backup_dir / victim)
    proc = penv.run("verify", check=1)
    assert victim in proc.stderr
    assert "dar exited with status" in proc.stderr
    # the remote copy no longer matches the local one either (same size, other checksum)
    assert "%s: the copy on local differs from the local file (sha256)" % victim in proc.stderr
    (mail,) = penv.mails()
    assert mail["Subject"] == "Packrat: Error"
    assert victim in penv.smtp.bodies()[0]


def test_truncated_remote_copy(penv, shared):
    src, share = shared
    victim = week_dar_name(src, WEEK[-1], 1)
    with open(share / victim, "r+b") as fh:
        fh.truncate(1000)
    proc = penv.run("verify", check=1)
    assert "%s: the copy on local has 1000 bytes, the local file %d" \
        % (victim, os.path.getsize(penv.backup_dir / victim)) in proc.stderr
    assert len(penv.mails()) == 1
    # a remote copy that is missing altogether
    os.unlink(share / victim)
    proc = penv.run("verify", check=1)
    assert "%s: not on local" % victim in proc.stderr
    # --local skips the remotes
    penv.run("verify", "--local", check=0)


def test_missing_master(penv, shared):
    src, share = shared
    for directory in (penv.backup_dir, share):
        for n in os.listdir(directory):
            if ".master." in n:
                os.unlink(directory / n)
    proc = penv.run("verify", check=1)
    assert "%s: its master is missing" % week_dar_name(src, WEEK[-1]) in proc.stderr
    assert "Traceback" not in proc.stderr
    # gone locally only: it is fetched from the remote and tested there
    penv.settings["UPLOAD_MODULES"] = []
    proc = penv.run("verify", check=1)
    assert "its master is missing" in proc.stderr


def test_master_only_on_the_remote_is_fetched(penv, shared):
    src, share = shared
    for n in os.listdir(penv.backup_dir):
        if ".master." in n:
            os.unlink(penv.backup_dir / n)
    proc = penv.run("-v", "verify", check=0)
    assert "is not in BACKUP_DIR: fetching it from local" in proc.stdout


def test_missing_slice(penv, shared):
    src, share = shared
    for directory in (penv.backup_dir, share):
        os.unlink(directory / week_dar_name(src, WEEK[0], 2))
    proc = penv.run("verify", check=1)
    assert "%s-%s.master: slice 2 is missing" % (archive_prefix(HOST, src), WEEK[0]) in proc.stderr


def test_encrypted_archives_and_wrong_key(penv, blowfish_week):
    use(penv, blowfish_week, KEY)
    proc = penv.run("verify", check=0)
    assert "all good: 2 archive(s) tested" in proc.stdout
    penv.settings["ENCRYPTION_KEY"] = "not the key"
    proc = penv.run("verify", check=1)
    assert "dar exited with status" in proc.stderr
    assert "not the key" not in proc.stderr + penv.smtp.bodies()[0]


def test_sample_compares_with_live_files(penv, plain_week):
    src, snaps = use(penv, plain_week)
    proc = penv.run("-v", "verify", "--sample", "50", check=0)
    assert "restoring 6 sample file(s) of %s" % src in proc.stdout  # every plain file of the tree
    assert "changed since" not in proc.stdout
    # a file changed after the backup is reported, and is no failure
    live = os.path.join(src, "sub", "e.txt")
    st = os.stat(live)
    with open(live, "w") as fh:
        fh.write("changed after the backup\n")
    os.utime(live, (st.st_atime, st.st_mtime + 100))
    proc = penv.run("verify", "--sample", "50", check=0)
    assert "%s: changed since the backup" % live in proc.stdout
    # the same size and mtime, other bytes: the backup (or the disk) is wrong
    with open(live, "w") as fh:
        fh.write("echo\n".upper())
    os.utime(live, (st.st_atime, st.st_mtime))
    proc = penv.run("verify", "--sample", "50", check=1)
    assert "%s: the copy restored from" % live in proc.stderr
    assert "differs from the live file, which has not changed since the backup" in proc.stderr
    # restore state for the module's other tests
    with open(live, "w") as fh:
        fh.write("echo\n")
    os.utime(live, (st.st_atime, st.st_mtime))


def test_nothing_to_verify_and_help(penv):
    proc = penv.run("verify", check=1)
    assert "nothing to verify" in proc.stderr
    proc = penv.run("verify", "--help", check=0)
    assert "--sample N" in proc.stdout and "cron" in proc.stdout


def make_dump(path, sql, cipher=None, compressor="bzip2", truncate=False):
    """A dump file as the dump module writes one: its compressor, then its
    openssl cipher (the module's own option lists); ``truncate``: the
    compressed data cut in half before encryption."""
    import subprocess
    from pypackrat import dumps
    data = subprocess.run(dumps.COMPRESSORS[compressor][0], input=sql, capture_output=True, check=True).stdout
    if truncate:
        data = data[: len(data) // 2]
    if cipher:
        data = subprocess.run(["openssl", "enc", "-e"] + dumps.CIPHERS[cipher] + ["-pass", "env:K"],
                              input=data, env=dict(os.environ, K=KEY), capture_output=True,
                              check=True).stdout
    path.write_bytes(data)


def test_dumps_decoded_in_full(penv, shared):
    src, share = shared
    day = WEEK[-1]
    sql = b"".join(b"INSERT INTO t VALUES (%d, 'row');\n" % i for i in range(20000))
    mysql = "%s-mysql-shop-%s.sql.bz2" % (HOST, day)
    pg = "%s-postgresql-all-%s.sql.zst" % (HOST, day)
    make_dump(penv.backup_dir / mysql, sql, "aes-256-cbc")
    make_dump(penv.backup_dir / pg, sql, "aes-256-cbc", "zstd")
    for n in (mysql, pg):
        shutil.copy(penv.backup_dir / n, share / n)
    # the week's archives are not encrypted: with ENCRYPTION_KEY set, verify
    # would refuse them (test_verify_failures); dumps only here
    for directory in (penv.backup_dir, share):
        for name in os.listdir(directory):
            if name.endswith(".dar"):
                os.unlink(directory / name)
    penv.settings.update(ENCRYPTION_KEY=KEY, DB_CIPHER="aes-256-cbc", FS_TARGETS=[])
    proc = penv.run("verify", check=0)
    assert "0 archive(s) tested, 2 dump(s) decoded, 2 remote copies compared" in proc.stdout
    # a flipped byte in the middle of the encrypted dump (the remote copy too)
    for directory in (penv.backup_dir, share):
        flip_byte(directory / mysql)
    proc = penv.run("verify", check=1)
    assert "%s: " % mysql in proc.stderr
    assert pg not in proc.stderr
    # a truncated compressed dump
    make_dump(penv.backup_dir / mysql, sql, "aes-256-cbc")
    shutil.copy(penv.backup_dir / mysql, share / mysql)
    make_dump(penv.backup_dir / pg, sql, "aes-256-cbc", "zstd", truncate=True)
    shutil.copy(penv.backup_dir / pg, share / pg)
    proc = penv.run("verify", check=1)
    assert "%s: zstd exited with status" % pg in proc.stderr
    assert mysql not in proc.stderr
    # the original's blowfish dumps, with --cipher
    make_dump(penv.backup_dir / pg, sql, "blowfish", "zstd")
    shutil.copy(penv.backup_dir / pg, share / pg)
    proc = penv.run("verify", check=1)
    assert "%s: decrypting it gives no zst data: wrong ENCRYPTION_KEY or cipher?" % pg in proc.stderr
    penv.run("verify", "--cipher", "blowfish", check=1)  # now the aes-256-cbc one fails
    penv.settings["DB_CIPHER"] = "blowfish"
    make_dump(penv.backup_dir / mysql, sql, "blowfish")
    shutil.copy(penv.backup_dir / mysql, share / mysql)
    penv.run("verify", check=0)


def test_a_target_or_database_missing_from_the_run(penv, shared, tmp_path):
    src, share = shared
    other = tmp_path / "other"
    other.mkdir()
    gone = tmp_path / "gone"  # not there: the filesystem module skips it, so does verify
    penv.settings.update(BACKUP_MODULES=["filesystem", "mysql"],
                         FS_TARGETS=[src, str(other), str(gone)],
                         MYSQL_TARGETS=["shop", "__ALL__"])
    proc = penv.run("verify", check=1)
    assert "%s: no archive of it dated %s" % (other, WEEK[-1]) in proc.stderr
    assert "mysql database shop: no dump of it dated %s" % WEEK[-1] in proc.stderr
    assert str(gone) not in proc.stderr and "__ALL__" not in proc.stderr
    assert "2 problem(s)" in proc.stderr


def test_dry_run_still_tests_and_does_not_mail(penv, shared):
    src, share = shared
    flip_byte(penv.backup_dir / week_dar_name(src, WEEK[0], 2))
    proc = penv.run("-n", "verify", "--local", check=1)
    assert week_dar_name(src, WEEK[0], 2) in proc.stderr
    assert "[dry run] would mail admin@example.org: Packrat: Error" in proc.stdout
    assert penv.mails() == []
