"""systemd: install.sh installs packrat.service and packrat.timer (with the
drop-in of the paths a run writes, made from the config); it enables the
timer on a fresh install, not where cron already runs packrat, nor with
--no-timer. The units pass ``systemd-analyze verify``; what their hardening
asks of the run (no memory both writable and executable, sockets on a
read-only tree) is tried on the real programs."""
import os
import shutil
import socket
import subprocess
import threading

import pytest

from tests.conftest import ROOT

ANALYZE = shutil.which("systemd-analyze")
BASH_PACKRAT = "#!/bin/bash\n# the original packrat\necho bash packrat\n"
LIB = "usr/lib/packrat"


def install(root, *extra, lib_from=None):
    """install.sh into ``root`` (usr, etc, var under it). ``lib_from``: a
    root whose installed Python package is copied first (no pip again)."""
    if lib_from is not None and not (root / LIB).exists():
        shutil.copytree(lib_from / LIB, root / LIB, symlinks=True)
    cmd = [os.path.join(ROOT, "install.sh"), "--no-apt", "--prefix", str(root / "usr"),
           "--sysconfdir", str(root / "etc"), "--localstatedir", str(root / "var")] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wants(root):
    return root / "etc/systemd/system/timers.target.wants/packrat.timer"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, fresh_install):
    root = tmp_path_factory.mktemp("fresh")
    (root / "backup").mkdir()
    proc = install(root, lib_from=fresh_install[0])  # its Python package: no second pip install
    return root, proc


def test_fresh_install_enables_the_timer(fresh):
    root, proc = fresh
    units = root / "usr/lib/systemd/system"
    service = (units / "packrat.service").read_text()
    assert "ExecStart=%s\n" % (root / "usr/bin/packrat") in service
    assert (units / "packrat.timer").read_text() == open(os.path.join(ROOT, "systemd/packrat.timer")).read()
    assert os.readlink(wants(root)) == str(units / "packrat.timer")
    assert "enabled packrat.timer" in proc.stdout
    # the stock config's BACKUP_DIR is writable for the service; /run/packrat is its own
    dropin = (root / "etc/systemd/system/packrat.service.d/50-paths.conf").read_text()
    assert 'ReadWritePaths="-/var/backup"' in dropin.splitlines()
    assert "/run/packrat" not in dropin.replace("besides /run/packrat", "")
    for page in ("man8/packrat.8", "man5/packrat.conf.5"):
        assert (root / "usr/share/man" / page).stat().st_size > 1000


def test_units_pass_systemd_analyze_verify(fresh):
    if not ANALYZE:
        pytest.skip("systemd-analyze is not installed")
    root, _ = fresh
    units = root / "usr/lib/systemd/system"
    proc = subprocess.run([ANALYZE, "verify", "--man=no", str(units / "packrat.service"),
                           str(units / "packrat.timer")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
    # the check can fail: the same unit with a program that is not there
    broken = root / "broken" / "packrat.service"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text((units / "packrat.service").read_text().replace("/usr/bin/packrat", "/usr/bin/packrat-gone"))
    proc = subprocess.run([ANALYZE, "verify", "--man=no", str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0 and "packrat-gone" in proc.stderr


def test_service_runs_low_and_hardened():
    with open(os.path.join(ROOT, "systemd/packrat.service")) as fh:
        lines = set(fh.read().splitlines())
    for line in ("Type=oneshot", "Nice=19", "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch",
                 "After=network-online.target local-fs.target mariadb.service mysql.service postgresql.service",
                 "Wants=network-online.target", "ProtectSystem=strict", "ProtectHome=read-only",
                 "PrivateTmp=yes", "NoNewPrivileges=yes", "RuntimeDirectory=packrat",
                 "MemoryDenyWriteExecute=yes"):
        assert line in lines
    with open(os.path.join(ROOT, "systemd/packrat.timer")) as fh:
        timer = set(fh.read().splitlines())
    assert {"OnCalendar=daily", "Persistent=true", "RandomizedDelaySec=1h"} <= timer


CRON_PLACES = {
    "cron.d": ("etc/cron.d/packrat", "30 2 * * * root %s >/dev/null\n"),
    "crontab": ("etc/crontab", "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
                               "30 2 * * * root %s -v\n"),
    "root's": ("var/spool/cron/crontabs/root", "MAILTO=ops@example.org\n30 2 * * * %s\n"),
}


def bash_install(root):
    """A machine where the Bash packrat runs: its program and its config."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/packrat").write_text(BASH_PACKRAT)
    (root / "usr/bin/packrat").chmod(0o755)
    (root / "etc").mkdir()
    (root / "backup").mkdir()
    (root / "etc/packrat.conf").write_text(
        "ADMIN_EMAIL=root\nBACKUP_DIR=%s\nBACKUP_MODULES=()\nPURGE_LOCAL_ARCHIVES=7\n"
        "PURGE_REMOTE_ARCHIVES=7\nMODULE_PATH=%s\nMODULES_D=%s\n"
        % (root / "backup", root / "usr/share/packrat/modules", root / "etc/packrat/modules.d"))
    (root / "etc/packrat.conf").chmod(0o600)


@pytest.mark.parametrize("place", sorted(CRON_PLACES))
def test_a_cron_line_keeps_the_timer_off(tmp_path, fresh, place):
    root = tmp_path
    bash_install(root)
    path, text = CRON_PLACES[place]
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text % "/usr/bin/packrat")
    proc = install(root, lib_from=fresh[0])
    assert not os.path.lexists(wants(root))
    assert (root / "usr/lib/systemd/system/packrat.timer").exists()
    assert "NOT enabled: cron already runs packrat" in proc.stdout
    assert str(root / path) in proc.stdout
    assert "systemctl enable --now packrat.timer" in proc.stdout
    assert (root / "usr/lib/packrat/packrat.bash-original").read_text() == BASH_PACKRAT
    dropin = (root / "etc/systemd/system/packrat.service.d/50-paths.conf").read_text()
    assert 'ReadWritePaths="-%s"' % (root / "backup") in dropin.splitlines()


def test_a_commented_cron_line_or_another_program_is_no_cron_run(tmp_path, fresh):
    root = tmp_path
    bash_install(root)
    (root / "etc/cron.d").mkdir()
    (root / "etc/cron.d/old").write_text("# 30 2 * * * root /usr/bin/packrat\n"
                                         "0 4 * * * root /usr/local/bin/packrat-report\n")
    install(root, lib_from=fresh[0])
    assert os.path.lexists(wants(root))


def test_no_timer_and_an_operators_choice_are_kept(tmp_path, fresh):
    root = tmp_path
    proc = install(root, "--no-timer", lib_from=fresh[0])
    assert not os.path.lexists(wants(root))
    assert "--no-timer" in proc.stdout
    # the timer was installed before: a second install does not enable it behind the operator's back
    proc = install(root, lib_from=fresh[0])
    assert not os.path.lexists(wants(root))
    assert "installed before" in proc.stdout


def test_nightly_run_survives_memory_deny_write_execute(penv, tmp_path):
    """MemoryDenyWriteExecute=yes: python, bash (the config), dar run under
    the kernel's same rule (prctl PR_SET_MDWE, inherited by every child)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("data\n")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], ENCRYPTION_KEY="k3y-mdwe")
    mdwe = ("import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "if libc.prctl(65, 1, 0, 0, 0):\n"  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            "    sys.exit(99)\n"
            "os.execvp(sys.argv[1], sys.argv[1:])\n")
    proc = subprocess.run(["python3", "-c", mdwe, os.path.join(ROOT, "packrat"), "-c", str(penv.config_path)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode == 99:
        pytest.skip("the kernel has no PR_SET_MDWE")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in penv.backup_dir.iterdir() if p.name.endswith(".dar")]
    probe = subprocess.run(["python3", "-c", mdwe, "python3", "-c",
                            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0, "the rule was not in force: the test proves nothing"


def test_a_database_socket_on_the_read_only_tree_is_reachable(tmp_path):
    """ProtectSystem=strict mounts /run read-only: connecting to a server's
    socket there (mysqld's, PostgreSQL's) still works, writing does not."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    directory = tmp_path / "run"
    directory.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(directory / "mysqld.sock"))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.sendall(b"hello")
        conn.close()
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99\n'
              'touch "$1/x" 2>/dev/null && exit 98\n'
              'exec python3 -c "import socket, sys; s = socket.socket(socket.AF_UNIX); '
              's.connect(sys.argv[1] + \'/mysqld.sock\'); print(s.recv(5).decode())" "$1"\n')
    proc = subprocess.run(["unshare", "-m", "bash", "-c", script, "bash", str(directory)],
                          capture_output=True, text=True, timeout=30)
    server.close()
    if proc.returncode == 99:
        pytest.skip("no mount namespace here: %s" % proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"


def test_install_help_names_the_timer_options():
    proc = subprocess.run([os.path.join(ROOT, "install.sh"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--no-timer" in proc.stdout and "--localstatedir" in proc.stdout
    assert "set -e" not in proc.stdout
