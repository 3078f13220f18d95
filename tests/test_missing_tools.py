"""A missing program is one module's failure, not the night's: that module
fails at run time with a clear line, the others run, one mail goes out;
`packrat check` lists it as a warning and exits 0."""
import datetime
import os
import subprocess
import sys

import pytest

from tests.conftest import PACKRAT
from tests.servers.mariadb import mariadb_server  # noqa: F401

TODAY = datetime.date.today().strftime("%Y%m%d")

HELLO = """\
mod_hello() {
    local f="$BACKUP_DIR/$HOSTNAME-hello-$TODAY.txt"
    echo hello > "$f"
    NEW_BACKUPS="$NEW_BACKUPS $f"
}
"""


def shadow_path(tmp_path, without):
    """A PATH of one directory that holds every program of this PATH but
    those named in ``without``."""
    bindir = tmp_path / ("bin-without-" + "-".join(without))
    bindir.mkdir()
    dirs = os.environ["PATH"].split(":") + ["/usr/sbin", "/sbin"]
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            if name in without or (bindir / name).exists() or not os.access(target, os.X_OK):
                continue
            (bindir / name).symlink_to(target)
    return str(bindir)


def run(penv, *args, path):
    penv.write()
    env = dict(os.environ, PATH=path)
    env.pop("PACKRAT_DATE", None)
    # the interpreter by its own path: PATH lacks the programs under test only
    return subprocess.run([sys.executable, PACKRAT, "-c", str(penv.config_path)] + list(args),
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def no_dar(tmp_path):
    return shadow_path(tmp_path, ["dar"])


def test_without_dar_the_other_modules_run_and_one_mail_says_so(penv, tmp_path, no_dar):
    (penv.module_path / "hello.sh").write_text(HELLO)
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem", "hello"], UPLOAD_MODULES=["local"],
                         FS_TARGETS=[str(tmp_path / "modules")], LOCAL_DIR=str(nas))
    proc = run(penv, "check", path=no_dar)
    assert proc.returncode == 0, proc.stderr
    assert ("Warning: %s: the filesystem module needs dar, which is not installed (not found in PATH): "
            "the filesystem backup will fail" % penv.config_path) in proc.stderr.splitlines()

    proc = run(penv, path=no_dar)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[FS] dar is not installed (not found in PATH): no filesystem archive was made" in proc.stderr
    made = "testhost-hello-%s.txt" % TODAY
    assert (penv.backup_dir / made).exists() and (nas / made).exists()  # the others ran, uploads too
    assert not [n for n in os.listdir(penv.backup_dir) if ".dar" in n]
    assert len(penv.mails()) == 1
    assert "dar is not installed" in penv.smtp.bodies()[0]


def test_without_dar_a_dry_run_warns_and_plans_the_rest(penv, tmp_path, no_dar):
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=["/etc"])
    proc = run(penv, "-n", path=no_dar)
    assert "Traceback" not in proc.stderr
    assert "needs dar, which is not installed" in proc.stderr
    assert penv.mails() == []


def test_without_dar_and_with_mysql_the_dump_is_made(penv, tmp_path, no_dar, mariadb_server):  # noqa: F811
    db = mariadb_server.new_database()
    mariadb_server.fill(db, rows=5)
    penv.settings.update(BACKUP_MODULES=["filesystem", "mysql"], FS_TARGETS=["/etc"],
                         MYSQL_TARGETS=[db], MYSQL_USER=mariadb_server.user,
                         MYSQL_PASS=mariadb_server.password, MYSQL_HOST="127.0.0.1",
                         MYSQL_PORT=mariadb_server.port)
    proc = run(penv, path=no_dar)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert os.path.exists(penv.backup_dir / ("testhost-mysql-%s-%s.sql.bz2" % (db, TODAY)))
    assert len(penv.mails()) == 1
    body = penv.smtp.bodies()[0]
    assert "dar is not installed" in body and mariadb_server.password not in body


def test_missing_dump_programs_are_warnings_of_check(penv, tmp_path):
    path = shadow_path(tmp_path, ["dar", "mysqldump", "mariadb-dump", "bzip2"])
    penv.settings.update(BACKUP_MODULES=["filesystem", "mysql"], FS_TARGETS=["/etc"],
                         MYSQL_TARGETS=["db1"], COMPRESSOR="bzip2")
    proc = run(penv, "check", path=path)
    assert proc.returncode == 0, proc.stderr
    warnings = [l for l in proc.stderr.splitlines() if l.startswith("Warning: ")]
    assert any("dar" in l for l in warnings)
    assert any("mysqldump" in l for l in warnings)
    assert any("bzip2" in l for l in warnings)
    assert "Traceback" not in proc.stderr


def test_ionice_missing_with_ionice_set_is_a_warning_of_check(penv, tmp_path):
    """The run warns that IONICE cannot be applied; check said nothing."""
    penv.settings.update(IONICE="best-effort:7")
    proc = run(penv, "check", path=shadow_path(tmp_path, ["ionice"]))
    assert proc.returncode == 0, proc.stderr
    assert "%s: IONICE=best-effort:7: ionice is not installed" % penv.config_path in proc.stderr
    assert "ionice is not installed" not in run(penv, "check", path=os.environ["PATH"]).stderr


def test_scp_missing_with_ssh_client_openssh_is_a_warning(penv, tmp_path):
    path = shadow_path(tmp_path, ["scp"])
    key = tmp_path / "key"
    key.write_text("not really a key\n")
    penv.settings.update(UPLOAD_MODULES=["ssh"], SSH_HOST="127.0.0.1", SSH_DIR="/srv", SSH_KEY=str(key),
                         SSH_CLIENT="openssh")
    proc = run(penv, "check", path=path)
    assert proc.returncode == 0, proc.stderr
    assert ("Warning: %s: SSH_CLIENT=openssh, but scp is not installed (not found in PATH): the ssh "
            "upload will fail" % penv.config_path) in proc.stderr.splitlines()


@pytest.mark.parametrize("action", [["check"], []])
def test_a_python_without_packrats_packages_is_one_line(penv, tmp_path, action):
    """packrat run by a Python that lacks its packages (a checkout run with
    the system's python3, not the installed command): one line naming the
    package and the interpreter, exit 1, no traceback."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    penv.write()
    proc = subprocess.run([str(bare / "bin" / "python"), PACKRAT, "-c", str(penv.config_path)] + action,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == ("packrat: the Python package configobj is not installed for %s; install.sh "
                           "installs packrat with the packages it needs\n" % (bare / "bin" / "python"))
