"""The config fuzzer: seeded random mutations of valid configurations (the
shipped packrat.conf and a test config with every module and every secret)
and of modules.d files, run through `packrat check` and `packrat -n`.

Every case must end in bounded time with status 0 or 1, status 1 must come
with a non-empty message, no output may hold a traceback, and no secret may
appear in any output.

A few hundred cases run in CI, most in this process through cli.main (a
case is a bash evaluation and a validation: milliseconds), some as real
subprocesses. More with PACKRAT_FUZZ_CASES=5000; another series with
PACKRAT_FUZZ_SEED=N. A failure names the seed and case that reproduce it.
"""
import contextlib
import io
import os
import random
import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import PACKRAT, ROOT, shell_value

CASES = int(os.environ.get("PACKRAT_FUZZ_CASES", "400"))
SUBPROCESS_CASES = int(os.environ.get("PACKRAT_FUZZ_SUBPROCESS_CASES", "24"))
SEED = int(os.environ.get("PACKRAT_FUZZ_SEED", "20261129"))
CASE_SECONDS = 30  # a case that takes longer is a hang

SECRETS = {
    "ENCRYPTION_KEY": "SeCrEt-enc-Qx81",
    "MYSQL_PASS": "SeCrEt-my-Zu22",
    "POSTGRESQL_PASS": "SeCrEt-pg-Kw93",
    "FTP_PASS": "SeCrEt-ftp-Lr47",
    "S3_SECRET_KEY": "SeCrEt-s3-Hd55",
    "SMTP_PASS": "SeCrEt-smtp-Bn06",
}

# values that have broken parsers before: numbers of other scripts, floats
# that are no number, options, line breaks, bytes that are not UTF-8,
# quotes, option-like words, paths out of place, huge and empty values
VALUES = [
    "", "0", "1", "-1", "10", "65536", "99999999999999999999999", "nan", "inf", "-inf", "1e3",
    "1_000", "0x10", " 7", "7 ", "\u0969", "\uff11\uff12", "3.5", ".5", "yes", "no", "YES",
    "maybe", "dar", "tar", "weekly", "monthly", "Sun", "Mon", "32", "00", "1000M", "12Q",
    "aes256", "blowfish", "aes-256-cbc", "bzip2", "zstd", "gzip", "openssh", "paramiko",
    "starttls", "ssl", "/", "/tmp", "relative/dir", "../..", "-oProxyCommand=id", "--help",
    "a b", "a\nb", "a\rb", "\t", "x\x01y", "\x7f", "caf\u00e9", "\u202e", "//", "http://",
    "http://127.0.0.1:9", "ftp://x", "us-east-1", "bucket", "bucket/prefix", "Bucket_",
    "root", "a@b", "-froot", "127.0.0.1", "::1", "[::1]", "localhost", "__ALL__", "*", "?",
    "$HOME", "'", '"', "\\", "`", "x" * 5000, "web1", "HOST-1.example.org", "%s", "{}",
]
BYTES_VALUES = [b"\xff\xfe", b"caf\xe9", b"\xc3", b"a\x00b", b"\xef\xbb\xbfbom"]
SNIPPETS = [
    "exit 0", "exit 3", "false", "true", "set -e", "set -u", "echo junk", "echo junk >&2",
    "echo $MYSQL_PASS", "echo \"$ENCRYPTION_KEY\" >&2", "return 1", "unset BACKUP_DIR",
    "declare -A ASSOC=([a]=b [c]=d)", "readonly PURGE_LOCAL_ARCHIVES", "FS_TARGETS+=(/srv)",
    "shopt -s nullglob", "trap 'exit 7' EXIT", "printf() { :; }", "declare() { :; }",
    "exec 3>&-", "echo x >&3", "printf 'S\\0BACKUP_DIR\\0/evil\\0' >&3", "cd /",
    "exec /bin/true", "X=$(printf 'a\\nb')", "$'\\xff'", "if", "fi", "((", "FS_TARGET=/etc",
    "HOSTNAM=web", "hostname=web", "MYMODULE_WIDGETS=(a b)", "LOCAL_DIR=\"$MYSQL_PASS\"",
    "S3_BUCKET=\"$S3_SECRET_KEY\"", "ADMIN_EMAIL=\"$FTP_PASS\"", "HOSTNAME=\"$ENCRYPTION_KEY\"",
    "FS_TARGETS=(\"/$SMTP_PASS\")", "BACKUP_MODULES=(\"$POSTGRESQL_PASS\")",
]
# what would hang an unbounded evaluation: only in the subprocess cases,
# under a short PACKRAT_CONFIG_TIMEOUT
HANGS = ["sleep 100", "exec sleep 100", "while :; do :; done", "sleep 60 &", "read -r line",
         "cat", "kill -STOP $$"]
INI_LINES = [
    "[filesystem]", "[ssh]", "[[nested]]", "[", "]", "FS_TARGETS = /etc, /srv", "FS_TARGETS = etc,",
    "SSH_PORT = 22, 23", "SSH_PORT = many", "SSH_PORT = \u0969", "UPLOAD_RETRY_WAIT = nan",
    "PURGE_REMOTE_ARCHIVES = 4", "FS_SLICE_SIZE = ", "key = 'unbalanced", 'key = """triple',
    "key = value = other", "; a comment", "# a hash comment", "", "   ", "DB_CIPHER = rot13",
    "MYSQL_PASS = SeCrEt-ini-Vv31", "FTP_PASS = SeCrEt-ini-Vv31, SeCrEt-ini-Vv31x", "ENCRYPTION_KEY = SeCrEt-ini-Vv31, two",
    "S3_REGION = //", "LOCAL_DIR = relative", "HOSTNAME = bad\\nname", "ssh_host = x",
    "FS_TARGET = /etc", "UPLOAD_MODULES = local,", "BACKUP_MODULES = nosuch", "x=1", "x=2",
    "include = /etc/passwd", "FS_METHOD = tar",
]
INI_SECRETS = ["SeCrEt-ini-Vv31"]


class Env:
    """The directories one series of cases shares."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.backup = tmp / "backup"
        self.modules = tmp / "modules"
        self.modules_d = tmp / "modules.d"
        self.nas = tmp / "nas"
        self.target = tmp / "target"
        for d in (self.backup, self.modules, self.modules_d, self.nas, self.target):
            d.mkdir()
        (self.target / "file").write_text("data\n")
        (self.modules / "hello.sh").write_text(
            'mod_hello() {\n    echo "hello $HOSTNAME"\n}\n')
        self.config = tmp / "packrat.conf"

    def shipped(self):
        """The shipped packrat.conf, its paths moved here, with secrets set."""
        with open(os.path.join(ROOT, "packrat.conf")) as fh:
            text = fh.read()
        lines = text.splitlines()
        lines += self._assign(dict(
            BACKUP_DIR=str(self.backup), MODULE_PATH=str(self.modules), MODULES_D=str(self.modules_d),
            LOCK_FILE=str(self.tmp / "lock"), HOSTNAME="fuzzhost", FS_TARGETS=[str(self.target)],
            ADMIN_EMAIL="", LOCAL_DIR=str(self.nas), **SECRETS))
        return lines

    def full(self):
        """A test config with every module enabled and every secret set."""
        settings = {
            "ADMIN_EMAIL": "admin@example.org", "BACKUP_DIR": str(self.backup),
            "BACKUP_MODULES": ["filesystem", "mysql", "postgresql", "hello"],
            "UPLOAD_MODULES": ["local", "ssh", "ftp", "s3"], "PURGE_LOCAL_ARCHIVES": 10,
            "PURGE_REMOTE_ARCHIVES": 10, "HOSTNAME": "fuzzhost", "MODULE_PATH": str(self.modules),
            "MODULES_D": str(self.modules_d), "LOCK_FILE": str(self.tmp / "lock"),
            "FS_TARGETS": [str(self.target)], "FS_SLICE_SIZE": "100M", "FS_MASTER_FREQ": "weekly",
            "FS_MASTER_DAY": "Sun", "MYSQL_TARGETS": ["db1"], "MYSQL_USER": "u", "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": 9, "POSTGRESQL_TARGETS": ["db1"], "POSTGRESQL_HOST": "127.0.0.1",
            "POSTGRESQL_PORT": 9, "SSH_HOST": "127.0.0.1", "SSH_PORT": 9, "SSH_DIR": "/backup",
            "SSH_USER": "packrat", "FTP_HOST": "127.0.0.1", "FTP_PORT": 9, "FTP_USER": "packrat",
            "FTP_DIR": "/backup", "S3_BUCKET": "bucket/prefix", "S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "S3_REGION": "us-east-1", "S3_ACCESS_KEY": "AKIAFUZZ", "LOCAL_DIR": str(self.nas),
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": 9, "SMTP_TLS": "starttls", "SMTP_USER": "mailer",
            "UPLOAD_RETRIES": 0, "UPLOAD_RETRY_WAIT": 0, "DB_CIPHER": "aes-256-cbc",
        }
        settings.update(SECRETS)
        return self._assign(settings)

    @staticmethod
    def _assign(settings):
        return ["%s=%s" % (name, shell_value(value)) for name, value in settings.items()]


def quote(rng, value):
    if isinstance(value, bytes):
        return "$'%s'" % "".join("\\x%02x" % b for b in value)
    style = rng.random()
    if style < 0.5 or "\n" in value or any(ord(c) < 32 for c in value):
        return "$'%s'" % "".join(c if c.isalnum() or c in "/._-@:" else "\\x%02x" % ord(c)
                                 if ord(c) < 128 else c for c in value)
    if style < 0.8:
        return shell_value(value)
    return value  # unquoted: whatever bash makes of it


def mutate_shell(rng, lines, hangs=False):
    lines = list(lines)
    if hangs and rng.random() < 0.25:
        lines.insert(rng.randint(0, len(lines)), rng.choice(HANGS))
    for _ in range(rng.randint(1, 4)):
        assignments = [i for i, l in enumerate(lines) if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", l)]
        kind = rng.random()
        if kind < 0.35 and assignments:  # a new value
            i = rng.choice(assignments)
            name = lines[i].split("=", 1)[0]
            value = rng.choice(BYTES_VALUES) if rng.random() < 0.1 else rng.choice(VALUES)
            lines[i] = "%s=%s" % (name, quote(rng, value))
        elif kind < 0.45 and assignments:  # an array where one value goes, or the reverse
            i = rng.choice(assignments)
            name = lines[i].split("=", 1)[0]
            items = [quote(rng, rng.choice(VALUES)) for _ in range(rng.randint(0, 3))]
            if rng.random() < 0.3:
                items.append(shell_value(rng.choice(list(SECRETS.values()))))
            lines[i] = "%s=(%s)" % (name, " ".join(items))
        elif kind < 0.55 and assignments:  # a typo in the name
            i = rng.choice(assignments)
            name, rest = lines[i].split("=", 1)
            j = rng.randrange(len(name))
            typo = rng.choice([name[:j] + name[j + 1:], name[:j] + "X" + name[j:], name.lower(),
                               name + "S"])
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", typo):
                lines[i] = "%s=%s" % (typo, rest)
        elif kind < 0.65 and assignments:  # a line gone
            del lines[rng.choice(assignments)]
        elif kind < 0.75 and lines:  # a line twice
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
        else:  # a line of shell
            lines.insert(rng.randint(0, len(lines)), rng.choice(SNIPPETS))
    text = "\n".join(lines) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    crlf = rng.random()
    if crlf < 0.03:
        data = data.replace(b"\n", b"\r\n")
    elif crlf < 0.05:
        data = data.replace(b"\n", b"\r")
    return data


def mutate_modules_d(rng, directory):
    for old in directory.iterdir():
        if old.is_dir() and not old.is_symlink():
            old.rmdir()
        else:
            old.unlink()
    if rng.random() < 0.5:
        return
    from pypackrat import config
    known = sorted(config._spec_types())
    for n in range(rng.randint(1, 2)):
        lines = [rng.choice(INI_LINES) for _ in range(rng.randint(0, 6))]
        for _ in range(rng.randint(0, 3)):  # any setting, any value, as configobj reads it
            value = rng.choice(VALUES)
            if rng.random() < 0.5:
                value = '"%s"' % value if rng.random() < 0.5 else "%s, %s" % (value, rng.choice(VALUES))
            lines.insert(rng.randint(0, len(lines)), "%s = %s" % (rng.choice(known), value))
        text = "\n".join(lines) + "\n"
        kind = rng.random()
        path = directory / ("%02d.conf" % n)
        if kind < 0.05:
            path.write_bytes(text.encode("utf-16"))
        elif kind < 0.1:
            path.write_bytes(b"[x]\nKEY = \xff\xfe\xfd\n")
        elif kind < 0.12:
            path.mkdir()
        elif kind < 0.14:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(200)))
        else:
            path.write_text(text)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def in_process(config, args):
    """``packrat -c CONFIG ARGS`` through cli.main: (status, stdout, stderr)."""
    from pypackrat import cli
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    sigterm = signal.getsignal(signal.SIGTERM)
    umask = os.umask(0o022)  # cli.main sets 077: given back after the case
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(["-c", str(config)] + args)
            except Hang:
                status = "hang"
            except SystemExit as exc:
                status = "SystemExit(%r)" % exc.code
            except BaseException as exc:  # what the operator would see as a traceback
                import traceback
                status = "exception"
                err.write("Traceback (in process): %s\n" % "".join(traceback.format_exception(exc)))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGTERM, sigterm)
        os.umask(umask)
    return status, out.getvalue(), err.getvalue()


def as_subprocess(config, args):
    env = {k: v for k, v in os.environ.items() if k != "PACKRAT_DATE"}
    env["PACKRAT_CONFIG_TIMEOUT"] = "2"
    try:
        proc = subprocess.run([sys.executable, PACKRAT, "-c", str(config)] + args, capture_output=True,
                              env=env, timeout=CASE_SECONDS * 2, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "hang", "", ""
    return (proc.returncode, proc.stdout.decode("utf-8", "surrogateescape"),
            proc.stderr.decode("utf-8", "surrogateescape"))


def live_secrets(data):
    """The secrets the mutated config still holds in a secret's setting (or
    one whose name is a typo of a secret's): those no output may show."""
    from pypackrat import config
    text = data.decode("utf-8", "surrogateescape").replace("\\\n", "")  # bash joins such lines
    found = []
    for secret in list(SECRETS.values()) + INI_SECRETS:
        for line in text.splitlines():
            name = line.split("=", 1)[0].strip()
            if secret in line and "=" in line and config._looks_secret(name):
                found.append(secret)
                break
    return found


def judge(status, out, err, secrets):
    """What is wrong with one case's outcome (empty: nothing)."""
    wrong = []
    if status not in (0, 1):
        wrong.append("status %s" % status)
    if "Traceback" in out + err:
        wrong.append("a traceback")
    if status == 1 and not err.strip() and not out.strip():
        wrong.append("status 1 without a message")
    for line in err.splitlines():
        # one line per problem: each names its file or says what it is
        if "****" in line:
            continue  # a one-letter secret masks letters everywhere: safe, if ugly
        if not re.match(r"(/|Warning: |Error: |packrat|Cannot read |\[dry run\]|the built-in default: |"
                        r"command line: |the kernel's host name: )", line):
            wrong.append("a line that is no message of its own: %r" % line[:200])
            break
    for secret in secrets:
        if secret in out + err:
            wrong.append("the secret %s in the output" % secret)
    return wrong


def series(tmp_path, cases, first, runner):
    env = Env(tmp_path)
    bases = {"shipped": env.shipped(), "full": env.full()}
    failures = []
    for case in range(first, first + cases):
        rng = random.Random("%d-%d" % (SEED, case))
        base = rng.choice(sorted(bases))
        data = mutate_shell(rng, bases[base], hangs=runner is as_subprocess)
        mutate_modules_d(rng, env.modules_d)
        env.config.write_bytes(data)
        os.chmod(env.config, 0o600)
        # a dry run: only the local upload (nothing may reach the network)
        args = rng.choice([["check"], ["-n", "-u", "local"], ["-n", "-P", "-u", "local"]])
        status, out, err = runner(env.config, args)
        secrets = live_secrets(data) + [
            v for p in env.modules_d.glob("*.conf") if p.is_file() for v in live_secrets(p.read_bytes())]
        wrong = judge(status, out, err, secrets)
        if wrong:
            failures.append("seed %d case %d (%s, %s): %s\n--- config:\n%s\n--- stderr:\n%s"
                            % (SEED, case, base, " ".join(args), "; ".join(wrong),
                               data.decode("utf-8", "backslashreplace")[-1500:], err[-1500:]))
    return failures


def test_fuzz_in_process(tmp_path):
    failures = series(tmp_path, CASES, 0, in_process)
    assert not failures, "%d of %d cases failed; the first:\n%s" % (
        len(failures), CASES, "\n\n".join(failures[:3]))


def test_fuzz_as_subprocesses(tmp_path):
    failures = series(tmp_path, SUBPROCESS_CASES, 1000000, as_subprocess)
    assert not failures, "%d of %d cases failed; the first:\n%s" % (
        len(failures), SUBPROCESS_CASES, "\n\n".join(failures[:3]))


@pytest.mark.fast
@pytest.mark.parametrize("base", ["shipped", "full"])
def test_unmutated_bases_are_valid(tmp_path, base):
    """The fuzzer starts from valid configurations (else it tests little)."""
    env = Env(tmp_path)
    env.config.write_text("\n".join(getattr(env, base)()) + "\n")
    status, out, err = in_process(env.config, ["check"])
    assert status == 0, err
    assert not judge(status, out, err, list(SECRETS.values()))
