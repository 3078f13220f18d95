"""What runs as root must be root's: a config file, a modules.d directory or
file that another user owns or can write is refused before anything of it is
used, with the file named and the fix; a file holding a secret that others
can read is warned about. The attacker is the unprivileged user nobody."""
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.attack import NOBODY, as_nobody, reachable_env, refused
from tests.conftest import PACKRAT


@pytest.fixture
def open_env(smtp):
    """A PackratEnv in a directory the attacker can reach (/tmp/x, 0755),
    unlike pytest's 0700 tmp_path."""
    yield from reachable_env(smtp, "packrat-trust-")


def check(config):
    """``packrat -c config check``, run as root."""
    return subprocess.run([PACKRAT, "-c", str(config), "check"], capture_output=True, text=True)


def test_config_writable_by_others_is_refused_and_never_run(open_env):
    env = open_env
    mark = env.tmp / "pwned"
    os.chmod(env.config_path, 0o666)
    attack = as_nobody("sh", "-c", 'echo "touch %s" >> "$1"' % mark, "sh", env.config_path)
    assert attack.returncode == 0, attack.stderr  # the attacker could write it
    proc = check(env.config_path)
    refused(proc, env.config_path)
    assert "written by group and others (mode 0666)" in proc.stderr
    assert not mark.exists()


def test_config_owned_by_another_user_is_refused(open_env):
    env = open_env
    mark = env.tmp / "pwned"
    with open(env.config_path, "a") as fh:
        fh.write("touch %s\n" % mark)
    os.chown(env.config_path, NOBODY, NOBODY)
    proc = check(env.config_path)
    refused(proc, env.config_path)
    assert "owned by nobody" in proc.stderr
    assert not mark.exists()


def test_config_in_a_directory_others_can_write_is_refused(open_env):
    env = open_env
    etc = env.tmp / "etc"
    etc.mkdir()
    os.chmod(etc, 0o777)
    config = etc / "packrat.conf"
    shutil.copy(env.config_path, config)
    # the attacker can replace the root-owned file: rename it away, plant its own
    attack = as_nobody("mv", config, etc / "old.conf")
    assert attack.returncode == 0, attack.stderr
    shutil.copy(env.config_path, config)
    proc = check(config)
    refused(proc, etc)
    assert "it is above %s" % config in proc.stderr


def test_sticky_directory_above_a_root_config_is_fine(open_env):
    """/tmp is 1777: others cannot replace a file they do not own there."""
    env = open_env
    sticky = env.tmp / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    config = sticky / "packrat.conf"
    shutil.copy(env.config_path, config)
    os.chmod(config, 0o600)
    proc = check(config)
    assert proc.returncode == 0, proc.stderr


def test_modules_d_file_owned_by_another_user_is_refused(open_env):
    env = open_env
    planted = env.modules_d / "evil.conf"
    planted.write_text("[local]\nLOCAL_DIR = /tmp/attacker\n")
    os.chown(planted, NOBODY, NOBODY)
    proc = env.run("check")
    refused(proc, planted)
    assert "/tmp/attacker" not in proc.stdout


def test_modules_d_file_writable_by_others_is_refused(open_env):
    env = open_env
    conf = env.modules_d / "local.conf"
    conf.write_text("[local]\nLOCAL_DIR = %s\n" % env.tmp)
    os.chmod(conf, 0o666)
    attack = as_nobody("sh", "-c", 'echo "ENCRYPTION_KEY = attacker-known" >> "$1"', "sh", conf)
    assert attack.returncode == 0, attack.stderr
    proc = env.run("check")
    refused(proc, conf)


def test_modules_d_directory_writable_by_others_is_refused(open_env):
    env = open_env
    os.chmod(env.modules_d, 0o777)
    attack = as_nobody("sh", "-c", 'printf "[x]\\nLOCAL_DIR = /tmp/attacker\\n" > "$1"', "sh",
                       env.modules_d / "zz.conf")
    assert attack.returncode == 0, attack.stderr
    proc = env.run("check")
    refused(proc, env.modules_d)
    # a sticky bit does not help: anyone may still add a file
    os.chmod(env.modules_d, 0o1777)
    refused(env.run("check"), env.modules_d)


@pytest.mark.fast
def test_invoking_user_may_own_their_own_config(monkeypatch):
    """Run by a user other than root, the user's own files are trusted
    beside root's; another user's are not."""
    from pypackrat import config
    base = tempfile.mkdtemp(prefix="packrat-trust-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        home = os.path.join(base, "home")
        os.mkdir(home)
        config_path = os.path.join(home, "packrat.conf")
        with open(config_path, "w") as fh:
            fh.write("X=1\n")
        for path in (home, config_path):
            os.chown(path, NOBODY, NOBODY)
        assert config.untrusted(config_path, "is read")  # root does not trust nobody's file
        monkeypatch.setattr(os, "geteuid", lambda: NOBODY)
        assert config.untrusted(config_path, "is read") == []
        os.chown(config_path, 1, 1)  # daemon's file: trusted neither by root nor by nobody
        problems = config.untrusted(config_path, "is read")
        assert len(problems) == 1 and "owned by daemon" in problems[0]
        assert "chown nobody %s; chmod go-w %s" % (config_path, config_path) in problems[0]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_secret_in_a_file_others_can_read_is_a_warning(penv):
    penv.write(MYSQL_PASS="readable-secret")
    os.chmod(penv.config_path, 0o644)
    proc = check(penv.config_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning: %s sets MYSQL_PASS but can be read by group and others (mode 0644); " \
           "fix: chmod go-r %s" % (penv.config_path, penv.config_path) in proc.stderr
    assert "readable-secret" not in proc.stdout + proc.stderr
    os.chmod(penv.config_path, 0o600)
    proc = check(penv.config_path)
    assert proc.returncode == 0 and "can be read" not in proc.stderr

    conf = penv.modules_d / "s3.conf"
    conf.write_text("[s3]\nS3_SECRET_KEY = s3-secret-value\nS3_ACCESS_KEY = AKIDEXAMPLE\n")
    os.chmod(conf, 0o640)
    proc = check(penv.config_path)
    assert "Warning: %s sets S3_ACCESS_KEY, S3_SECRET_KEY but can be read by group" % conf in proc.stderr
    assert "s3-secret-value" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name,secret", [
    ("ENCRYPTION_KEY", True), ("S3_SECRET_KEY", True), ("S3_ACCESS_KEY", True),
    ("MYSQL_PASS", True), ("SMTP_PASS", True), ("FTP_PASSWORD", True), ("API_TOKEN", True),
    ("SSH_KEY_PASSPHRASE", True), ("my_secret_thing", True), ("APIKEY", True),
    ("SSH_KEY", False), ("RSYNC_SSH_KEY", False), ("MYSQL_USER", False), ("PASSAGE", False),
    ("BYPASS_CACHE", False), ("KEYS_DIR", False), ("LOCAL_DIR", False),
])
@pytest.mark.fast
def test_is_secret_is_the_one_rule(name, secret):
    from pypackrat import config
    assert config.is_secret(name) is secret


def test_a_fifo_under_a_conf_name_in_modules_d_does_not_hang_check(penv):
    """A FIFO (or device) named x.conf in modules.d is refused at once, not read."""
    os.mkfifo(str(penv.modules_d / "x.conf"), 0o600)
    penv.write()
    proc = penv.run("check", timeout=30)
    assert proc.returncode == 1
    assert "x.conf: not a regular file" in proc.stderr
    assert "Traceback" not in proc.stderr
