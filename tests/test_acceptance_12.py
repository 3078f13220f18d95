"""Acceptance of issue 12 ("every failure survived and explained"), tried
through the real packrat command as an operator's bad night would: what
the audit found still failing, each with the fix's test.

- A background job that the config moves out of its process group
  (``setsid sleep &``) does not outlive the evaluation either.
- A config whose evaluation never finishes (a hang, ``exec``) stops the
  nightly run with a configuration error that is mailed too, to the
  ADMIN_EMAIL the file sets (bash never reported it back).
"""
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.attack import processes_with
from tests.conftest import PACKRAT
from tests.servers.sshd import sshd_server, sshd  # noqa: F401
from tests.servers.mariadb import mariadb_server  # noqa: F401


def run_nightly(penv, env=None):
    """An unattended nightly run (no terminal: the configuration error is mailed)."""
    penv.write()
    full = dict(os.environ, PACKRAT_DATE="20261126", **(env or {}))
    return subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)],
                          capture_output=True, text=True, env=full, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("start", ["setsid sleep %s &", "(setsid sleep %s &)",
                                   "setsid -f sleep %s", "sleep %s &"])
def test_a_job_the_config_moves_out_of_its_group_does_not_outlive_packrat(penv, start):
    # a unique duration names the job (1000.xxx seconds)
    duration = "1000.%d" % (uuid.uuid4().int % 10 ** 9)
    penv.extra = start % duration + "\n"
    proc = penv.run("check")
    try:
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 3
        while processes_with("sleep\0" + duration) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with("sleep\0" + duration) == []
    finally:
        for pid in processes_with("sleep\0" + duration):
            os.kill(pid, 9)


@pytest.mark.parametrize("extra, said", [
    ("sleep 100\n", "took longer than 1 seconds"),
    ("while :; do :; done\n", "took longer than 1 seconds"),
    ("exec /bin/true\n", "does it call exec"),
    ("exec sleep 100\n", "took longer than 1 seconds"),
])
def test_a_config_that_never_finishes_is_mailed_on_a_nightly_run(penv, extra, said):
    penv.settings["SMTP_PASS"] = "smtp-secret-12"  # read from the file, masked
    penv.settings["SMTP_USER"] = ""
    penv.extra = extra
    started = time.monotonic()
    proc = run_nightly(penv, {"PACKRAT_CONFIG_TIMEOUT": "1"})
    assert time.monotonic() - started < 20
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert said in proc.stderr
    assert len(penv.mails()) == 1
    msg = penv.smtp.messages[0]
    assert msg["To"] == "admin@example.org"
    body = penv.smtp.bodies()[0]
    assert said in body and "smtp-secret-12" not in body + proc.stderr + proc.stdout


def test_a_config_that_exits_on_its_first_line_is_mailed_to_its_admin(penv):
    """``exit 0`` before any setting: bash defined nothing, the file's
    literal ADMIN_EMAIL still gets the mail."""
    penv.write()
    text = penv.config_path.read_text()
    penv.config_path.write_text("exit 0\n" + text)
    env = dict(os.environ, PACKRAT_DATE="20261126")
    proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)],
                          capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "line 1: the file exited before its end" in proc.stderr
    assert len(penv.mails()) == 1
    assert penv.smtp.messages[0]["To"] == "admin@example.org"


def test_check_of_a_config_that_hangs_is_not_mailed(penv):
    penv.extra = "sleep 100\n"
    proc = penv.run("check", env={"PACKRAT_CONFIG_TIMEOUT": "1"})
    assert proc.returncode == 1 and "took longer than 1 seconds" in proc.stderr
    assert penv.mails() == []


@pytest.mark.parametrize("line", ["S3_SECRET-KEY=key-word-913", "MYSQL-PASS=key-word-913",
                                  "S3_SECRET_KE/Y=key-word-913", "export FTP.PASS=key-word-913",
                                  "S)3_SECRET_KEY=key-word-913", "*SMTP_PASS=key-word-913",
                                  "MYSQL_P]ASS='key-word-913 x'", "MYSQL_PSS=key-word-913 b c",
                                  "FS_TARGETS=(/a) ENCRYPTION)KEY=key-word-913",
                                  "S3_SECRET_KEYkey-word-913", 'ENCRYPTION_KEY"key-word-913 b"',
                                  "MYSQL_PASS=\n'key-word-913 x'", "ENCRYPTION_KEY=\n  key-word-913 horse"])
def test_a_secret_under_a_name_bash_does_not_take_is_not_shown(penv, line):
    """A slip in a secret's name makes bash run the line as a command, and
    its message ('S3_SECRET-KEY=...: command not found') repeats the value."""
    penv.extra = line + "\n"
    for args in (["check"], ["-n"]):
        proc = penv.run(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "key-word-913" not in proc.stdout + proc.stderr
        assert "its message is not shown" in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == len(set(lines))  # bash's two lines of a syntax error: one


def test_check_names_the_origin_of_a_default_as_the_built_in_default(penv):
    proc = penv.run("check", check=0)
    assert "SSH_PORT=22    # the built-in default" in proc.stdout.splitlines()
    assert "BACKUP_DIR='%s'    # %s" % (penv.backup_dir, penv.config_path) in proc.stdout.splitlines()
    assert not any(line.endswith("# default") for line in proc.stdout.splitlines())


def test_verify_without_dar_says_so_once(penv, tmp_path):
    from tests.test_missing_tools import shadow_path
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(tree)], ENCRYPTION_KEY="verify-key-12")
    for day in ("20261122", "20261123"):
        penv.run(date=day, check=0, stdin=subprocess.DEVNULL)
    penv.smtp.clear()
    env = dict(os.environ, PATH=shadow_path(tmp_path, ["dar"]), PACKRAT_DATE="20261123")
    proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path), "verify", "--sample", "1"],
                          capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [l for l in proc.stderr.splitlines() if "not installed" in l or "dar exited" in l] == [
        "  dar is not installed (not found in PATH): 2 archive(s) not tested"]
    assert len(penv.mails()) == 1


def test_a_backup_dir_that_cannot_be_created_is_named_not_the_lock(penv):
    penv.settings["BACKUP_DIR"] = "/proc/packrat-backups"
    proc = run_nightly(penv)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["%s: BACKUP_DIR=/proc/packrat-backups cannot be created: No such "
                                        "file or directory" % penv.config_path]
    assert len(penv.mails()) == 1 and "BACKUP_DIR=/proc/packrat-backups" in penv.smtp.bodies()[0]


@pytest.mark.parametrize("raw", [b"/srv/backup-\xe9t\xe9", b"/srv/a\\nb"])
def test_an_ssh_dir_sftp_cannot_carry_is_a_configuration_error(penv, tmp_path, raw):
    key = tmp_path / "key"
    key.write_text("not read by check\n")
    penv.write(UPLOAD_MODULES=["ssh"], SSH_HOST="127.0.0.1", SSH_KEY=str(key), SSH_DIR="/x")
    with open(penv.config_path, "ab") as fh:
        fh.write(b"SSH_DIR=$'" + raw + b"'\n")
    for args in (["check"], []):
        proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)] + args,
                              capture_output=True, env=dict(os.environ, PACKRAT_DATE="20261126"),
                              stdin=subprocess.DEVNULL, timeout=120)
        assert proc.returncode == 1 and b"Traceback" not in proc.stderr
        lines = [l for l in proc.stderr.decode("utf-8", "replace").splitlines() if "SSH_DIR" in l]
        assert len(lines) == 1 and "SFTP and scp cannot carry" in lines[0], proc.stderr


def test_verify_sample_reads_a_listing_with_file_names_that_are_not_utf8(penv, tmp_path):
    """dar's XML listing holds file names as their bytes; a Linux file name
    need not be UTF-8 (before: 'cannot read dar's listing of it: not
    well-formed (invalid token)' on every verify --sample of such a target)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "plain").write_text("plain\n")
    with open(os.path.join(os.fsencode(tree), b"caf\xe9-\xfe.txt"), "wb") as fh:
        fh.write(b"latin-1 name\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(tree)], ENCRYPTION_KEY="sample-key-12")
    os.chmod(penv.config_path, 0o600)
    penv.run(date="20261126", check=0, stdin=subprocess.DEVNULL)
    proc = penv.run("-v", "verify", "--sample", "5", date="20261126", stdin=subprocess.DEVNULL,
                    errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "listing" not in proc.stderr
    assert "ok sample %s/plain" % tree in proc.stdout + proc.stderr


BYTES_MODULE = r"""
mod_bytesback() {
    local f="$BACKUP_DIR/$HOSTNAME-bytesback-$TODAY-"$'\xe9'".txt"
    echo data > "$f"
    NEW_BACKUPS="$NEW_BACKUPS $f"
}
mod_bytesup() {
    for f in $NEW_BACKUPS; do cp "$f" "$BYTES_DEST/" || die "cannot copy $f"; done
}
list_bytesup() { ls "$BYTES_DEST"; }
"""


def test_a_bash_module_file_name_that_is_not_utf8_is_carried(penv, tmp_path):
    """NEW_BACKUPS from a Bash module is file names, which are bytes: one
    that is not UTF-8 reaches the upload module as itself (before: turned
    into U+FFFD, 'NEW_BACKUPS names ..., which is not a file')."""
    (penv.module_path / "bytes.sh").write_text(BYTES_MODULE)
    dest = tmp_path / "dest"
    dest.mkdir()
    penv.extra = "BYTES_DEST=%s\n" % dest
    penv.write(BACKUP_MODULES=["bytesback"], UPLOAD_MODULES=["bytesup"])
    proc = penv.run(date="20261126", stdin=subprocess.DEVNULL, errors="replace")
    assert proc.returncode == 0, proc.stderr
    name = b"testhost-bytesback-20261126-\xe9.txt"
    assert os.listdir(os.fsencode(penv.backup_dir)) == [name]
    assert os.listdir(os.fsencode(dest)) == [name]


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_a_remote_name_that_is_not_utf8_does_not_break_the_sftp_purge(penv, sshd, client):
    """Another host's file on a shared SFTP directory, named in Latin-1:
    the listing keeps it as bytes (before: 'listing failed: utf-8 codec can't
    decode' and no purge at all); a name of ours that is not UTF-8 is deleted."""
    root = os.fsencode(sshd.root)
    for name in (b"caf\xe9-20261001.txt", b"old\xff-20261001.dar", b"old\xff-20261120.dar",
                 b"testhost-etc-20261001.1.dar", b"testhost-etc-20261120.master.1.dar"):
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(b"x")
    penv.write(UPLOAD_MODULES=["ssh"], BACKUP_MODULES=["filesystem"], FS_TARGETS=["/etc"], SSH_CLIENT=client,
               PURGE_PATTERNS=["old*"], **sshd.settings())
    proc = penv.run("-P", date="20261126", stdin=subprocess.DEVNULL, errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(root)) == [b"caf\xe9-20261001.txt", b"old\xff-20261120.dar",
                                        b"testhost-etc-20261120.master.1.dar"]


def test_a_read_only_backup_user_refused_a_restore_is_told_of_the_restore_user(penv, mariadb_server):
    """A least-privilege backup user cannot create the database to restore
    into: the error says which setting gives a user that may."""
    server = mariadb_server
    db = server.new_database("ro")
    server.fill(db, rows=5)
    reader, reader_pass = "ro12_%d" % os.getpid(), "ro-pass-12"
    for host in ("127.0.0.1", "localhost"):
        server.client(input="CREATE USER '%s'@'%s' IDENTIFIED BY %s; GRANT SELECT, LOCK TABLES, SHOW VIEW "
                      "ON *.* TO '%s'@'%s';\n" % (reader, host, server.quote(reader_pass), reader, host))
    penv.settings.update(BACKUP_MODULES=["mysql"], MYSQL_TARGETS=[db], MYSQL_USER=reader,
                         MYSQL_PASS=reader_pass, MYSQL_HOST="127.0.0.1", MYSQL_PORT=server.port)
    penv.run(date="20261126", check=0, stdin=subprocess.DEVNULL)
    before = sorted(server.databases())
    proc = penv.run("restore", "mysql", db, "--into", db + "_copy", date="20261126", check=1,
                    stdin=subprocess.DEVNULL)
    lines = [l for l in proc.stderr.splitlines() if not l.startswith("Warning: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "set MYSQL_RESTORE_USER and MYSQL_RESTORE_PASS" in lines[0]
    assert sorted(server.databases()) == before


def test_a_target_whose_path_is_not_utf8_is_backed_up_uploaded_and_restored(penv, tmp_path):
    """Names and paths are bytes on Linux: a target directory whose name is
    not UTF-8 reaches dar as those bytes (before: 'ForkException ...
    UnicodeEncodeError' with sh's traceback in the output and the mail)."""
    root = os.fsencode(tmp_path)
    tree = os.fsdecode(root + b"/caf\xe9")
    os.mkdir(tree)
    with open(os.path.join(tree, "a"), "w") as fh:
        fh.write("a\n")
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    penv.extra = "FS_TARGETS=(\"$(cat %s)\")\n" % (tmp_path / "target-name")
    with open(tmp_path / "target-name", "wb") as fh:
        fh.write(os.fsencode(tree))
    proc = penv.run(date="20261126", stdin=subprocess.DEVNULL,
                    errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and penv.mails() == []
    made = os.listdir(os.fsencode(nas))
    assert made == [b"testhost-" + root[1:].replace(b"/", b"-") + b"-caf\xe9-20261126.master.1.dar"]
    out = tmp_path / "restored"
    proc = penv.run("restore", "testhost-" + tree[1:].replace("/", "-"), str(out), date="20261126",
                    stdin=subprocess.DEVNULL, errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert (out / "a").read_text() == "a\n"


def test_a_database_name_that_is_not_utf8_fails_with_one_clean_line(penv):
    penv.write(BACKUP_MODULES=["mysql"], MYSQL_HOST="127.0.0.1", MYSQL_PORT=1, MYSQL_USER="u")
    with open(penv.config_path, "ab") as fh:
        fh.write(b"MYSQL_TARGETS=($'shop\\xff')\n")
    proc = subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)], capture_output=True,
                          env=dict(os.environ, PACKRAT_DATE="20261126"), stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 1
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "ForkException" not in err and "UnicodeEncodeError" not in err
    assert len(penv.mails()) == 1 and "ForkException" not in penv.smtp.bodies()[0]


def test_an_absolute_exclude_path_is_caught_by_check_not_by_dar_at_night(penv, tmp_path):
    """dar refuses an absolute -P ("Cannot add an absolute path"): check says
    so, naming FS_EXCLUDE_PATHS, and the relative form backs up without it."""
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "big").write_text("skip me\n")
    (src / "keep").write_text("keep me\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], FS_EXCLUDE_PATHS=[str(src / "cache")])
    for args in (["check"], []):
        proc = penv.run(*args, date="20240107")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "%s: FS_EXCLUDE_PATHS: %r is an absolute path" % (penv.config_path, str(src / "cache")) \
            in proc.stderr, proc.stderr
    assert os.listdir(penv.backup_dir) == []
    penv.write(FS_EXCLUDE_PATHS=["cache"])
    penv.run(date="20240107", check=0)
    listing = subprocess.run(["dar", "-l", str(penv.backup_dir / os.listdir(penv.backup_dir)[0]).rsplit(".", 2)[0],
                              "-Q"], capture_output=True, text=True)
    assert "keep" in listing.stdout and "big" not in listing.stdout
