"""The shell config, read with exactly Bash's meaning, validated, merged
with modules.d, and reported problem by problem."""
import os
import subprocess
import textwrap

import pytest

from pypackrat import config
from pypackrat.errors import ConfigError

# A config in the style of the original's stock file (its stock values).
ORIGINAL_STYLE = textwrap.dedent("""\
    #!/bin/bash
    # Packrat config
    ADMIN_EMAIL="admin@example.org"
    BACKUP_DIR="{backup_dir}"
    BACKUP_MODULES=()
    UPLOAD_MODULES=('local')
    PURGE_LOCAL_ARCHIVES=10
    PURGE_REMOTE_ARCHIVES=10
    ENCRYPTION_KEY=""

    ## Filesystem
    FS_TARGETS=('/etc' '/home/sites')
    FS_METHOD="dar"
    FS_SLICE_SIZE="1000M"
    FS_INCREMENTAL="yes"
    FS_MASTER_FREQ="weekly"
    FS_MASTER_DAY="Sun"
    FS_EXCLUDE_FILES=('*.tmp' '*.log')
    FS_EXCLUDE_PATHS=('home/sites/cache')

    ## MySQL
    MYSQL_TARGETS=('__ALL__')
    MYSQL_USER="root"
    MYSQL_PASS="s3cr3t pass"
    MYSQL_HOST=""
    MYSQL_PORT=""

    ## SSH
    SSH_HOST=""
    SSH_USER=""
    SSH_KEY=""
    SSH_DIR=""
    SSH_BWLIMIT=""
    LOCAL_DIR="{backup_dir}"
    MODULES_D="{modules_d}"
    LOCK_FILE="{lock}"
    """)

# Multi-line arrays, $VAR expansion, quoting, comments, HOSTNAME set in the file.
TRICKY = textwrap.dedent("""\
    HOSTNAME="web1.example.org"
    BASE=/srv
    ADMIN_EMAIL=ops@example.org   # trailing comment
    BACKUP_DIR="$BASE/backup"
    BACKUP_MODULES=(
        # a comment inside the array
        'filesystem'
    )
    UPLOAD_MODULES=()
    PURGE_LOCAL_ARCHIVES=$((3 + 4))
    PURGE_REMOTE_ARCHIVES=30
    FS_TARGETS=(
        "$BASE/www"
        '/home/with space'
        "$HOSTNAME-dir"   "quoted \\"inner\\" and \\$dollar"
    )
    FS_EXCLUDE_FILES=('*.tmp'
      "*.swp")
    CUSTOM_VAR="ünïcode ✓"
    MULTI=$'line one\\nline two\\ttab'
    FS_METHOD=dar
    MODULES_D="{modules_d}"
    """)


def bash_values(path, names):
    """Ask bash itself what each variable holds (elements, NUL-separated)."""
    out = {}
    for name in names:
        script = 'source "$1" >/dev/null 2>&1; declare -p %s >/dev/null 2>&1 || exit 3; ' \
                 'for e in "${%s[@]}"; do printf "%%s\\0" "$e"; done' % (name, name)
        proc = subprocess.run(["bash", "-c", script, "bash", str(path)],
                              capture_output=True, env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"})
        if proc.returncode == 3:
            continue
        out[name] = proc.stdout.decode().split("\0")[:-1]
    return out


def as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.fast
@pytest.mark.parametrize("template", [ORIGINAL_STYLE, TRICKY], ids=["original-style", "tricky"])
def test_values_equal_what_bash_gives(tmp_path, template):
    path = tmp_path / "packrat.conf"
    path.write_text(template.format(backup_dir=tmp_path, modules_d=tmp_path / "none",
                                    lock=tmp_path / "lock"))
    raw, problems = config.read_shell(str(path))
    assert problems == []
    names = [n for n in raw if n != "HOSTNAME"] + ["HOSTNAME"]
    expected = bash_values(path, names)
    assert set(expected) == set(raw)
    for name in names:
        assert as_list(raw[name]) == expected[name], name
    if template is TRICKY:
        assert raw["FS_TARGETS"] == ["/srv/www", "/home/with space", "web1.example.org-dir",
                                     'quoted "inner" and $dollar']
        assert raw["MULTI"] == "line one\nline two\ttab"
        assert raw["CUSTOM_VAR"] == "ünïcode ✓"


@pytest.mark.fast
def test_validated_types_and_secret_masking(tmp_path):
    path = tmp_path / "packrat.conf"
    path.write_text(ORIGINAL_STYLE.format(backup_dir=tmp_path, modules_d=tmp_path / "none",
                                          lock=tmp_path / "lock"))
    settings = config.load(str(path))
    assert settings["PURGE_LOCAL_ARCHIVES"] == 10
    assert settings["FS_INCREMENTAL"] is True
    assert settings["BACKUP_MODULES"] == []
    assert settings["MYSQL_PORT"] is None          # empty: unset
    assert settings["SSH_BWLIMIT"] == 0            # empty: the default
    assert settings["FS_EXCLUDE_FILES"] == ["*.tmp", "*.log"]
    lines = "\n".join(config.effective(settings))
    assert "s3cr3t" not in lines and "MYSQL_PASS=****" in lines


def run_packrat(*args):
    from tests.conftest import PACKRAT
    return subprocess.run([PACKRAT] + list(args), capture_output=True, text=True)


@pytest.mark.fast
def test_broken_configs_report_every_problem_at_once(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(textwrap.dedent("""\
        ADMIN_EMAIL=root
        BACKUP_MODULES=()
        PURGE_LOCAL_ARCHIVES=abc
        PURGE_REMOTE_ARCHIVES=10
        FS_MASTER_FREQ=daily
        MODULES_D=/nonexistent
        """))
    proc = run_packrat("-c", str(path), "check")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert any("BACKUP_DIR is not defined" in l for l in lines)
    assert any("PURGE_LOCAL_ARCHIVES='abc'" in l and "whole number" in l for l in lines)
    assert any("FS_MASTER_FREQ='daily'" in l and "weekly, monthly" in l for l in lines)
    assert all(str(path) in l for l in lines)
    assert len(lines) == 3


@pytest.mark.fast
def test_unbalanced_quote_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text('ADMIN_EMAIL="root\nBACKUP_DIR=/tmp\n')
    proc = run_packrat("-c", str(path), "check")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr
    assert "unexpected EOF" in proc.stderr or "syntax error" in proc.stderr


def test_master_day_must_fit_the_frequency(penv):
    penv.write(FS_MASTER_FREQ="monthly", FS_MASTER_DAY="Sun")
    proc = penv.run("check", env={"LC_ALL": "C"})
    assert proc.returncode == 1 and "FS_MASTER_DAY='Sun'" in proc.stderr
    penv.write(FS_MASTER_FREQ="weekly", FS_MASTER_DAY="15")
    proc = penv.run("check", env={"LC_ALL": "C"})
    assert proc.returncode == 1 and "FS_MASTER_DAY='15'" in proc.stderr
    penv.write(FS_MASTER_FREQ="monthly", FS_MASTER_DAY="1")
    proc = penv.run("check", check=0)
    assert "FS_MASTER_DAY='01'" in proc.stdout


def test_empty_backup_modules_is_legitimate(penv):
    """The stock BACKUP_MODULES=() (an upload-only setup) is not 'not defined'."""
    proc = penv.run("check", check=0)
    assert "BACKUP_MODULES=()" in proc.stdout


def test_modules_d_merges_over_the_shell_file(penv):
    (penv.modules_d / "local.conf").write_text(
        "[local]\nLOCAL_DIR = %s\nPURGE_REMOTE_ARCHIVES = 4\n" % penv.tmp)
    (penv.modules_d / "ignored.conf.sample").write_text("[x]\nPURGE_REMOTE_ARCHIVES = 99\n")
    proc = penv.run("-u", "local", "check", check=0)
    assert "LOCAL_DIR='%s'    # %s" % (penv.tmp, penv.modules_d / "local.conf") in proc.stdout
    assert "PURGE_REMOTE_ARCHIVES=4    # %s" % (penv.modules_d / "local.conf") in proc.stdout


def test_modules_d_errors_name_the_file_and_setting(penv):
    (penv.modules_d / "ssh.conf").write_text("[ssh]\nSSH_PORT = many\n")
    proc = penv.run("check")
    assert proc.returncode == 1
    assert "%s: SSH_PORT='many': must be a whole number" % (penv.modules_d / "ssh.conf") in proc.stderr


def test_unknown_module_is_a_config_error(penv):
    proc = penv.run("-m", "nosuchmodule", "check")
    assert proc.returncode == 1
    assert "no backup module named 'nosuchmodule'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hostname_from_the_file_names_the_host(penv):
    penv.extra = 'HOSTNAME="fromfile"\n'
    proc = penv.run("check", check=0)
    assert "HOSTNAME='fromfile'" in proc.stdout
