"""install.sh over an existing Bash install: config and custom modules kept,
the Python packrat in place, a second run changes nothing."""
import hashlib
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

BASH_PACKRAT = "#!/bin/bash\n# the original packrat\necho bash packrat\n"


def tree_digest(top):
    h = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            h.update(path.encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def installed(tmp_path_factory, fresh_install):
    root = tmp_path_factory.mktemp("inst")
    prefix, etc = root / "usr", root / "etc"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "share/packrat/modules").mkdir(parents=True)
    etc.mkdir()
    (prefix / "bin/packrat").write_text(BASH_PACKRAT)
    (prefix / "share/packrat/modules/custom.sh").write_text("mod_custom() { :; }\n")
    conf = ("ADMIN_EMAIL=ops@example.org\nBACKUP_DIR=%s\nBACKUP_MODULES=('custom')\n"
            "PURGE_LOCAL_ARCHIVES=7\nPURGE_REMOTE_ARCHIVES=7\nMODULE_PATH=%s\nMODULES_D=%s\n"
            % (root / "backup", prefix / "share/packrat/modules", etc / "packrat/modules.d"))
    (etc / "packrat.conf").write_text(conf)
    # the Python package as the fresh install made it (pip once a session)
    shutil.copytree(fresh_install[0] / "usr/lib/packrat/python", prefix / "lib/packrat/python", symlinks=True)
    cmd = [os.path.join(ROOT, "install.sh"), "--no-apt", "--prefix", str(prefix), "--sysconfdir", str(etc)]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    return root, prefix, etc, conf, cmd


def test_existing_config_and_modules_are_kept(installed):
    root, prefix, etc, conf, _ = installed
    assert (etc / "packrat.conf").read_text() == conf
    assert (prefix / "share/packrat/modules/custom.sh").read_text() == "mod_custom() { :; }\n"
    assert (prefix / "share/packrat/modules/example.sh").read_text() == open(
        os.path.join(ROOT, "modules/example.sh")).read()
    assert (prefix / "lib/packrat/packrat.bash-original").read_text() == BASH_PACKRAT
    assert (prefix / "share/packrat/packrat.conf.dist").read_text() == open(
        os.path.join(ROOT, "packrat.conf")).read()


def test_installed_packrat_runs_with_the_kept_config(installed):
    root, prefix, etc, conf, _ = installed
    proc = subprocess.run([str(prefix / "bin/packrat"), "-c", str(etc / "packrat.conf"), "check"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "# Bash backup module custom: %s" % (prefix / "share/packrat/modules/custom.sh") in proc.stdout


def test_second_install_is_idempotent(installed):
    root, prefix, etc, conf, cmd = installed
    before = tree_digest(root)
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "installing the Python package" not in again.stdout
    assert tree_digest(root) == before


def test_fresh_install_puts_a_root_only_config(fresh_install):
    """No existing config: the stock one is installed, mode 0600."""
    dest, proc = fresh_install
    assert "installing the Python package" in proc.stdout  # the real pip install
    conf = dest / "etc/packrat.conf"
    assert conf.read_text() == open(os.path.join(ROOT, "packrat.conf")).read()
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    assert (dest / "usr/bin/packrat").exists()
    assert (dest / "usr/lib/packrat/python/pypackrat/cli.py").exists()
