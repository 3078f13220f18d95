"""OpenSSH's sshd on 127.0.0.1 on a free port, with its own host key, its own
config and a client key pair made for the test, and a known_hosts file for
the client. It runs as root (the tests do) with root as the login user.

Fixtures: ``sshd_server`` (one sshd for the session; each test module gets
it with its sessions cut, its upload directory emptied, the connection
count reset) and ``sshd`` (the same, per test: the upload directory
emptied, the connection count reset).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from tests.servers import empty_dir, free_port, shared, wait_for_port

SSHD = "/usr/sbin/sshd"


def _keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "packrat-test", "-f", path],
                   check=True, stdin=subprocess.DEVNULL)


class SshServer:
    user = "root"
    host = "127.0.0.1"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="packrat-sshd-")
        os.chmod(self.dir, 0o700)
        self.port = free_port()
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.client_key = os.path.join(self.dir, "id_ed25519")
        self.other_key = os.path.join(self.dir, "id_other")
        self.authorized = os.path.join(self.dir, "authorized_keys")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.config = os.path.join(self.dir, "sshd_config")
        self.log = os.path.join(self.dir, "sshd.log")
        self.pidfile = os.path.join(self.dir, "sshd.pid")
        self.root = os.path.join(self.dir, "uploads")  # SSH_DIR
        self.proc = None

    # -- life ------------------------------------------------------------
    def start(self):
        os.makedirs(self.root)
        os.makedirs("/run/sshd", exist_ok=True)
        _keygen(self.host_key)
        _keygen(self.client_key)
        _keygen(self.other_key)  # a key the server does not know
        shutil.copy(self.client_key + ".pub", self.authorized)
        with open(self.host_key + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        with open(self.known_hosts, "w") as fh:
            fh.write("[%s]:%d %s %s\n" % (self.host, self.port, kind, blob))
        sftp_server = "/usr/lib/openssh/sftp-server"
        with open(self.config, "w") as fh:
            fh.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress %s" % self.host,
                "HostKey %s" % self.host_key,
                "AuthorizedKeysFile %s" % self.authorized,
                "PidFile %s" % self.pidfile,
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "LogLevel VERBOSE",
                "MaxStartups 100",
                "MaxSessions 100",
                "Subsystem sftp %s" % (sftp_server if os.path.exists(sftp_server) else "internal-sftp"),
                "",
            ]))
        self.logfh = open(self.log, "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config],
                                     stdout=self.logfh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            self.cut()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.logfh.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the tests look at ------------------------------------------
    def settings(self, **over):
        """The packrat settings that reach this server."""
        out = {"SSH_HOST": self.host, "SSH_PORT": self.port, "SSH_USER": self.user,
               "SSH_KEY": self.client_key, "SSH_DIR": self.root,
               "SSH_KNOWN_HOSTS": self.known_hosts}
        out.update(over)
        return out

    def sessions(self):
        """Pids of the per-connection processes: every descendant of ours."""
        if self.proc is None:
            return []
        parent = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as fh:
                    stat = fh.read()
            except OSError:
                continue
            parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        out, wanted = [], {self.proc.pid}
        changed = True
        while changed:
            changed = False
            for pid, ppid in parent.items():
                if ppid in wanted and pid not in wanted:
                    wanted.add(pid)
                    out.append(pid)
                    changed = True
        return out

    def cut(self):
        """Drop every open connection at once (the listener stays up)."""
        for pid in self.sessions():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def connections(self):
        """How many logins the server accepted since the last reset()."""
        with open(self.log, "rb") as fh:
            fh.seek(self._mark)
            text = fh.read().decode("utf-8", "replace")
        return len(re.findall(r"Accepted publickey for ", text))

    def reset(self):
        self.logfh.flush()
        self._mark = os.path.getsize(self.log)
        empty_dir(self.root)

    _mark = 0

    def wait_sessions_gone(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.sessions() and time.monotonic() < deadline:
            time.sleep(0.05)


def _renew(server):
    """For the next test module: no session left, nothing uploaded, no login counted."""
    server.cut()
    server.wait_sessions_gone()
    server.reset()


@pytest.fixture(scope="session")
def sshd_server():
    yield from shared("sshd", lambda: SshServer().start(), _renew)


@pytest.fixture
def sshd(sshd_server):
    sshd_server.reset()
    yield sshd_server
