"""Bash modules run as root: a MODULE_PATH directory or *.sh file that
another user owns or can write is refused before anything is sourced; what a
module prints passes through the mask of secrets, line by line, bytes intact."""
import contextlib
import os
import subprocess
import time
import uuid

import pytest

from tests.attack import NOBODY, as_nobody, reachable_env, refused
from tests.conftest import PACKRAT

DATE = "20261126"
# a Bash backup module making one file
NOTES = ('mod_notes() {\n    f="$BACKUP_DIR/$HOSTNAME-notes-$TODAY.txt"\n    echo made > "$f"\n'
         '    NEW_BACKUPS="$NEW_BACKUPS $f"\n}\n')


def _notes_module(env):
    env.mark = env.tmp / "pwned"
    (env.module_path / "notes.sh").write_text(NOTES)
    env.settings.update(BACKUP_MODULES=["notes"])


@pytest.fixture
def open_env(smtp):
    """A PackratEnv in a directory the attacker can reach (0755 from /tmp)."""
    yield from reachable_env(smtp, "packrat-shim-trust-", _notes_module)


def test_module_writable_by_others_is_refused_and_never_sourced(open_env):
    env = open_env
    module = env.module_path / "notes.sh"
    os.chmod(module, 0o666)
    attack = as_nobody("sh", "-c", 'echo "touch %s" >> "$1"' % env.mark, "sh", module)
    assert attack.returncode == 0, attack.stderr
    for args in (["check"], []):
        proc = env.run(*args, date=DATE)
        refused(proc, module)
        assert "can be written by group and others (mode 0666)" in proc.stderr
    assert not env.mark.exists()
    assert os.listdir(env.backup_dir) == []


def test_module_owned_by_another_user_is_refused(open_env):
    env = open_env
    planted = env.module_path / "zz-helpers.sh"
    planted.write_text("touch %s\n" % env.mark)
    os.chown(planted, NOBODY, NOBODY)
    proc = env.run(date=DATE)
    refused(proc, planted)
    assert "owned by nobody" in proc.stderr
    assert not env.mark.exists()
    # a nightly run refused: the admin hears of it
    assert len(env.mails()) == 1 and "%s: refusing" % planted in env.smtp.bodies()[0]


def test_module_path_directory_writable_by_others_is_refused(open_env):
    env = open_env
    os.chmod(env.module_path, 0o777)
    attack = as_nobody("sh", "-c", 'echo "touch %s" > "$1"' % env.mark, "sh", env.module_path / "zz.sh")
    assert attack.returncode == 0, attack.stderr
    os.chown(env.module_path / "zz.sh", 0, 0)  # even made root's, the directory lets anyone swap it
    proc = env.run(date=DATE)
    refused(proc, env.module_path)
    assert not env.mark.exists()
    os.chmod(env.module_path, 0o1777)  # sticky: anyone may still add a file
    refused(env.run(date=DATE), env.module_path)
    assert not env.mark.exists()


def test_trusted_module_path_runs(open_env):
    proc = open_env.run(date=DATE)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(open_env.backup_dir) == ["testhost-notes-%s.txt" % DATE]


# -- the output of a module, masked ---------------------------------------------------

LOUD = r'''
mod_loud() {
    echo "mysql: $MYSQL_PASS"
    echo "token: $LOUD_TOKEN and module's own: $LOUD_PASSWORD" >&2
    printf 'bytes \xff\xfe kept, secret %s\n' "$FTPX_PASS"
    verbose "verbose line with $MYSQL_PASS"
    # a long line: the secret straddles the 64 KiB piece boundary
    head -c 65530 /dev/zero | tr '\0' 'a'
    printf '%s' "$MYSQL_PASS"
    printf 'tail without a newline %s' "$LOUD_TOKEN"
}
'''


def test_module_output_is_masked_line_by_line(penv):
    (penv.module_path / "loud.sh").write_text(LOUD)
    (penv.modules_d / "ftpx.conf").write_text("[ftpx]\nFTPX_PASS = 'modules-d s3cret'\n")
    penv.write(BACKUP_MODULES=["loud"], MYSQL_PASS="mysql-s3cret-pw", LOUD_TOKEN="tok-s3cret-42",
               LOUD_PASSWORD="own-s3cret")
    proc = subprocess.run([PACKRAT, "-v", "-c", str(penv.config_path)], capture_output=True,
                          env=dict(os.environ, PACKRAT_DATE=DATE))
    out, err = proc.stdout, proc.stderr
    assert b"Traceback" not in err
    for secret in (b"mysql-s3cret-pw", b"tok-s3cret-42", b"own-s3cret", b"modules-d s3cret", b"s3cret"):
        assert secret not in out + err, secret
    assert b"mysql: ****\n" in out
    assert b"token: **** and module's own: ****\n" in err
    assert b"bytes \xff\xfe kept, secret ****\n" in out
    assert b"verbose line with ****\n" in out
    assert b"a" * 65530 + b"****" in out
    assert b"tail without a newline ****" in out


def test_die_message_with_a_secret_is_masked(penv):
    (penv.module_path / "dies.sh").write_text('mod_dies() {\n    die "cannot log in with $DIES_PASS"\n}\n')
    penv.write(BACKUP_MODULES=["dies"], DIES_PASS="die-s3cret")
    proc = penv.run(date=DATE)
    assert proc.returncode == 1
    assert "cannot log in with ****" in proc.stderr
    assert "die-s3cret" not in proc.stdout + proc.stderr + "".join(penv.smtp.bodies())


class _Stream:
    def __init__(self):
        import io
        self.buffer = io.BytesIO()

    def flush(self):
        pass


@pytest.mark.parametrize("chunks", [
    [b"x" * 20 + b"split-s3", b"cret and more\nnext"],
    [b"x" * 20, b"split-s3cret", b" and more\nnext"],
    [b"x" * 20 + b"s", b"p", b"lit-s3cret and more\nne", b"xt"],
])
@pytest.mark.fast
def test_a_secret_split_across_reads_or_pieces_is_masked(monkeypatch, chunks):
    from pypackrat import log, shim
    monkeypatch.setattr(shim, "_LONG_LINE", 10)  # every read is over a "long line"
    log.setup()  # this test's run: its own secrets
    log.add_secret("split-s3cret")
    stream = _Stream()
    sink = shim._Masked(stream)
    for chunk in chunks:
        sink.feed(chunk)
    sink.feed(b"", final=True)
    assert stream.buffer.getvalue() == b"x" * 20 + b"**** and more\nnext"


def test_printf_function_of_the_config_does_not_silence_the_channel(penv, tmp_path):
    """A config or module file defining printf (or declare) still gets its
    NEW_BACKUPS uploaded and its die message reported."""
    nas = tmp_path / "nas"
    nas.mkdir()
    (penv.module_path / "notes.sh").write_text(
        NOTES +
        'mod_sad() {\n    diemail "sad module: first\\nsecond"\n}\n')
    penv.extra = "printf() { :; }\ndeclare() { :; }\n"
    penv.write(BACKUP_MODULES=["notes"], UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    proc = penv.run(date=DATE)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(nas) == ["testhost-notes-%s.txt" % DATE]
    penv.write(BACKUP_MODULES=["sad"], UPLOAD_MODULES=[])
    proc = penv.run(date=DATE)
    assert proc.returncode == 1
    assert "sad module: first\nsecond" in proc.stderr


def test_no_file_on_disk_holds_a_secret_while_a_module_runs(penv, tmp_path):
    """The settings a Bash module's shell sources (passwords among them) are
    memory files: while mod_NAME runs, no file under /dev/shm or /tmp (this
    test's own config file aside) holds the password, and the module still
    sees it. The secret is new to this test, so only a file changed since
    the run began can hold it: the scan reads those (changed: ctime, which
    no write, rename or utime leaves behind), not all of /tmp's gigabytes.
    Two files the module writes the secret into itself, one in /tmp (this
    test's directory) and one in /dev/shm, are the scan's control: it must
    name them, and nothing else."""
    seen = tmp_path / "seen"
    since = tmp_path / "since"
    controls = [tmp_path / "control", "/dev/shm/packrat-control-%s" % uuid.uuid4().hex]
    conf = penv.modules_d / "mysql.conf"
    (penv.module_path / "peek.sh").write_text(
        'mod_peek() {\n'
        '    for f in %s %s; do printf %%s "$MYSQL_PASS" > "$f"; done\n'
        '    find /dev/shm /tmp -type f -cnewer %s ! -path %s -print0 2>/dev/null |\n'
        '        xargs -0r grep -lsF -- "$MYSQL_PASS" > %s.files\n'
        '    rm -f %s %s\n'
        '    printf %%s "$MYSQL_PASS" > %s.value\n'
        '    true\n}\n' % (controls[0], controls[1], since, conf, seen, controls[0], controls[1], seen))
    # set in modules.d: the shell gets it from packrat, not from packrat.conf
    secret = "peek-%s" % uuid.uuid4().hex  # in no file but those of this test
    conf.write_text("[mysql]\nMYSQL_PASS = %s\n" % secret)
    os.chmod(conf, 0o600)
    penv.write(BACKUP_MODULES=["peek"])
    since.touch()
    start = time.time() - 2  # before the run, whatever the granularity of file times
    os.utime(since, (start, start))
    try:
        proc = penv.run(date=DATE)
    finally:
        for control in controls:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "seen.value").read_text() == secret
    assert sorted((tmp_path / "seen.files").read_text().splitlines()) == sorted(map(str, controls))
