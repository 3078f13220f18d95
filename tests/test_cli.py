"""The command line: flags as the original's getopts took them."""
import subprocess

import pytest

from tests.conftest import PACKRAT


def packrat(*args):
    return subprocess.run([PACKRAT] + list(args), capture_output=True, text=True)


@pytest.mark.fast
def test_help_exits_0_with_usage():
    proc = packrat("-h")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: packrat")
    assert "-U YYYYMMDD" in proc.stdout


@pytest.mark.fast
def test_unknown_flag_exits_1_with_usage():
    proc = packrat("-x")
    assert proc.returncode == 1
    assert "illegal option -- x" in proc.stderr
    assert "Usage: packrat" in proc.stderr


@pytest.mark.fast
def test_version():
    proc = packrat("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("packrat ")


@pytest.mark.fast
def test_unreadable_config():
    proc = packrat("-c", "/nonexistent/packrat.conf", "check")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Cannot read config file: /nonexistent/packrat.conf"


def test_r_is_accepted_and_overrides(penv):
    proc = penv.run("-r", "3", "check", check=0)
    assert "PURGE_REMOTE_ARCHIVES=3    # command line" in proc.stdout


def test_combined_flags_and_attached_arguments(penv):
    proc = penv.run("-vn", "-p3", "-m", "", "-u", "", "check", check=0)
    assert "PURGE_LOCAL_ARCHIVES=3    # command line" in proc.stdout
    assert "BACKUP_MODULES=()    # command line" in proc.stdout


@pytest.mark.fast
def test_bad_days_and_date():
    assert packrat("-p", "abc").returncode == 1
    proc = packrat("-U", "2026-11-01")
    assert proc.returncode == 1 and "YYYYMMDD" in proc.stderr
    proc = packrat("-U", "20261399")  # no such day
    assert proc.returncode == 1 and "-U needs a date as YYYYMMDD, not '20261399'" in proc.stderr


@pytest.mark.fast
def test_unknown_action():
    proc = packrat("frobnicate")
    assert proc.returncode == 1 and "unknown action" in proc.stderr
