"""LOG: the nightly run's lines, each with its level, to syslog (facility
daemon, tag packrat) or to a file of root's (0600, never through a planted
symbolic link), masked as everywhere; with no terminal a good night prints
nothing on stdout (cron mails nothing)."""
import os
import re
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

KEY = "Sekr3t-log-key-4471"
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} packrat\[(\d+)\] (info|notice|warning|err): (.*)$")
ATTACKER = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def night(penv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("some data\n")
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], ENCRYPTION_KEY=KEY)
    (penv.module_path / "fail.sh").write_text('mod_fail() { echo "cannot reach $ENCRYPTION_KEY" >&2; return 1; }\n')
    penv.write()
    os.chmod(penv.config_path, 0o600)  # it holds a key
    return penv


def unattended(penv, *args, env=None):
    """A run as cron or a timer starts it: no terminal anywhere."""
    return penv.run(*args, env=env, stdin=subprocess.DEVNULL)


def test_file_log_has_levels_masks_and_is_root_only(night, tmp_path):
    log = tmp_path / "packrat.log"
    night.settings["LOG"] = str(log)
    proc = unattended(night)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # a good night: nothing for cron to mail
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines), text
    assert KEY not in text and "****" in text
    assert any("backing up %s" % (tmp_path / "src") in line for line in lines)
    assert {LINE.match(line).group(1) for line in lines} == {str(lines and LINE.match(lines[0]).group(1))}
    # a failing night appends its errors, level err, and says so on stderr
    night.settings["BACKUP_MODULES"] = ["filesystem", "fail"]
    proc = unattended(night)
    assert proc.returncode == 1
    new = log.read_text()[len(text):].splitlines()
    errors = [LINE.match(line).group(3) for line in new if LINE.match(line).group(2) == "err"]
    assert errors and all(e in proc.stderr for e in errors)
    assert KEY not in log.read_text()


def test_the_same_run_without_log_prints_nothing_on_stdout(night):
    proc = unattended(night)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    verbose = unattended(night, "-v")  # -v still shows the progress
    assert "backing up" in verbose.stdout


def test_planted_symlink_at_the_log_path_is_refused(night):
    """LOG in a sticky world-writable directory (as /tmp): a user plants a
    symbolic link to a root file there; the run neither follows it nor
    fails the backup: it warns."""
    shared = tempfile.mkdtemp(dir="/tmp", prefix="packrat-shared-")
    try:
        os.chmod(shared, 0o1777)
        victim = os.path.join(tempfile.mkdtemp(prefix="packrat-victim-"), "shadow")
        with open(victim, "w") as fh:
            fh.write("root:secret\n")
        log = os.path.join(shared, "packrat.log")
        subprocess.run(ATTACKER + ["ln", "-s", victim, log], check=True)
        assert os.lstat(log).st_uid != 0
        night.settings["LOG"] = log
        proc = unattended(night)
        assert proc.returncode == 0, proc.stderr
        assert "LOG=%s: refusing it" % log in proc.stderr
        with open(victim) as fh:
            assert fh.read() == "root:secret\n"
        assert [p.name for p in night.backup_dir.iterdir() if p.name.endswith(".dar")]
        # a file of the attacker's in its place is refused as well (or not even opened)
        os.unlink(log)
        subprocess.run(ATTACKER + ["sh", "-c", "echo planted > %s; chmod 666 %s" % (log, log)], check=True)
        proc = unattended(night)
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"LOG=%s: (refusing it: it is owned by nobody|cannot open it)" % re.escape(log),
                         proc.stderr), proc.stderr
        with open(log) as fh:
            assert fh.read() == "planted\n"
    finally:
        subprocess.run(["rm", "-rf", shared])


def test_a_log_not_absolute_is_a_config_error(night):
    night.settings["LOG"] = "packrat.log"
    proc = night.run("check")
    assert proc.returncode == 1
    assert "%s: LOG='packrat.log': must be empty, syslog or the absolute path of a file" % night.config_path \
        in proc.stderr


class Syslog:
    """A syslog socket that reads as the run writes (a datagram socket's
    queue is short: a writer waits while it is full)."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.server.bind(path)
        self.server.settimeout(0.2)
        self.packets, self.running = [], True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                self.packets.append(self.server.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                continue

    def take(self):
        time.sleep(0.3)
        out, self.packets = self.packets, []
        return out


@pytest.fixture
def syslog_socket(tmp_path):
    server = Syslog(str(tmp_path / "log.sock"))
    yield server.path, server
    server.running = False
    server.thread.join()
    server.server.close()


def received(server):
    return server.take()


def test_syslog_gets_levels_daemon_facility_tag_and_masks(night, syslog_socket):
    path, server = syslog_socket
    night.settings["LOG"] = "syslog"
    proc = unattended(night, env={"PACKRAT_SYSLOG_SOCKET": path})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    packets = received(server)
    assert packets
    daemon = 3 << 3
    seen = set()
    for packet in packets:
        m = re.match(r"<(\d+)>packrat\[(\d+)\]: (.*)", packet, re.S)
        assert m, packet
        priority = int(m.group(1))
        assert priority & ~7 == daemon
        seen.add(priority & 7)
        assert KEY not in packet
    assert 6 in seen  # info: the progress lines, without -v
    assert any("-K aes256:****" in p for p in packets)
    night.settings["BACKUP_MODULES"] = ["filesystem", "fail"]
    proc = unattended(night, env={"PACKRAT_SYSLOG_SOCKET": path})
    assert proc.returncode == 1
    packets = received(server)
    errors = [p for p in packets if int(re.match(r"<(\d+)>", p).group(1)) == daemon | 3]
    assert errors and all(re.sub(r"^<\d+>packrat\[\d+\]: ", "", p) in proc.stderr for p in errors)


def test_syslog_that_is_down_is_one_warning(night, tmp_path):
    night.settings["LOG"] = "syslog"
    proc = unattended(night, env={"PACKRAT_SYSLOG_SOCKET": str(tmp_path / "no-such-socket")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("Warning: LOG: cannot write to %s" % (tmp_path / "no-such-socket")) == 1
    assert [p.name for p in night.backup_dir.iterdir() if p.name.endswith(".dar")]


def test_a_stuck_syslog_does_not_stall_the_night(night, tmp_path):
    """A syslog socket nobody reads (its queue fills): one warning after a
    few seconds, and the backup is made."""
    path = str(tmp_path / "stuck.sock")
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(path)
    try:
        night.settings["LOG"] = "syslog"
        started = time.monotonic()
        proc = unattended(night, "-v", env={"PACKRAT_SYSLOG_SOCKET": path})
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 60
        assert proc.stderr.count("Warning: LOG: cannot write to %s" % path) == 1
        assert [p.name for p in night.backup_dir.iterdir() if p.name.endswith(".dar")]
    finally:
        stuck.close()
