"""Heavy libraries (boto3, paramiko, ftputil) are imported only when their
module runs: not by `packrat -h`, `packrat check`, or a run without them."""
import subprocess
import sys

import pytest

from tests.conftest import PACKRAT

HEAVY = {"boto3", "botocore", "paramiko", "ftputil"}


def imported(argv):
    proc = subprocess.run([sys.executable, "-X", "importtime", PACKRAT] + argv,
                          capture_output=True, text=True)
    names = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    return proc, names


@pytest.mark.parametrize("args", [["-h"], ["check"], []], ids=["help", "check", "run"])
def test_no_heavy_imports(penv, args, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.write(UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas), S3_BUCKET="b", SSH_HOST="h")
    proc, names = imported(["-c", str(penv.config_path)] + args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pypackrat" in names  # the measurement itself works
    assert not (names & HEAVY), names & HEAVY


@pytest.mark.fast
def test_help_does_not_import_sh_or_configobj():
    proc, names = imported(["-h"])
    assert proc.returncode == 0
    assert "pypackrat" in names
    assert not (names & {"sh", "configobj", "validate"})
