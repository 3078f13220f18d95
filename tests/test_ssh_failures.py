"""SSH as it fails on a bad night (issue 12), against a real OpenSSH sshd
with two host keys (ed25519 and RSA) and the real ssh, scp and ssh-agent:

- a known_hosts file with the right RSA key and a wrong ed25519 key is
  refused, as OpenSSH refuses it (checked against the real ssh client
  first); a file with only the right RSA key is accepted, as by OpenSSH;
- scp's failures show ssh's own message, and a changed host key or a
  refused key is not retried;
- a key protected by a passphrase works through a real ssh-agent (no
  passphrase in the config) and through SSH_KEY_PASSPHRASE (no agent),
  with paramiko and with scp; the passphrase is in no output.
"""
import os
import subprocess

import pytest

from pypackrat import config, log, plugins, run, transfer
from pypackrat.context import Context, Options
from pypackrat.errors import PackratError
from tests.servers import serve, wait_for_port
from tests.servers.sshd import SSHD, SshServer, _keygen

TODAY = "20261126"
NAME = "testhost-etc-%s.1.dar" % TODAY
PASSPHRASE = "correct horse 'battery' $staple"


class TwoKeyServer(SshServer):
    """The fixture's sshd with an RSA host key besides the ed25519 one, and
    a client key protected by a passphrase among the authorized keys."""

    def start(self):
        super().start()
        self.rsa_key = os.path.join(self.dir, "ssh_host_rsa_key")
        _keygen(self.rsa_key, "rsa")
        self.wrong_key = os.path.join(self.dir, "wrong_host_key")
        _keygen(self.wrong_key)
        self.pass_key = os.path.join(self.dir, "id_pass")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "packrat-test",
                        "-f", self.pass_key], check=True, stdin=subprocess.DEVNULL)
        with open(self.authorized, "a") as out, open(self.pass_key + ".pub") as pub:
            out.write(pub.read())
        self.proc.terminate()
        self.proc.wait()
        with open(self.config, "a") as fh:
            fh.write("HostKey %s\n" % self.rsa_key)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdout=self.logfh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def known_line(self, key_file):
        with open(key_file + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        return "[%s]:%d %s %s\n" % (self.host, self.port, kind, blob)


@pytest.fixture(scope="module")
def server():
    yield from serve(TwoKeyServer())


@pytest.fixture
def sshd2(server):
    server.reset()
    yield server


@pytest.fixture
def agent(tmp_path):
    """A real ssh-agent for the test, holding nothing yet."""
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(sock):
            break
        proc.poll()
        import time
        time.sleep(0.05)
    yield sock
    proc.terminate()
    proc.wait()


def add_to_agent(sock, key, tmp_path):
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\nprintf '%%s\\n' %s\n" % _shell_quote(PASSPHRASE))
    askpass.chmod(0o700)
    env = dict(os.environ, SSH_AUTH_SOCK=sock, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force",
               DISPLAY=":0")
    subprocess.run(["ssh-add", key], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)


def _shell_quote(text):
    import shlex
    return shlex.quote(text)


def known_hosts(tmp_path, server, *key_files):
    path = tmp_path / "known_hosts"
    path.write_text("".join(server.known_line(k) for k in key_files))
    return str(path)


def openssh_accepts(server, known):
    """Whether the real ssh client logs in with this known_hosts file."""
    proc = subprocess.run(["ssh", "-F", "none", "-p", str(server.port), "-i", server.client_key,
                           "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                           "-o", "UserKnownHostsFile=" + known, "-o", "GlobalKnownHostsFile=/dev/null",
                           "%s@%s" % (server.user, server.host), "true"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    return proc.returncode == 0, proc.stderr


def context(penv, **settings):
    penv.write(UPLOAD_MODULES=["ssh"], **settings)
    return Context(config.load(str(penv.config_path)), Options())


def connect(ctx):
    return run.open_remote(ctx, plugins.resolve(ctx.settings, "ssh", "upload"))


def archive(penv, data=b"archive " * 1000):
    path = penv.backup_dir / NAME
    path.write_bytes(data)
    return str(path)


# -- host keys of two types -----------------------------------------------------

@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_right_rsa_key_and_wrong_ed25519_key_refused_as_openssh_does(penv, sshd2, tmp_path, client):
    known = known_hosts(tmp_path, sshd2, sshd2.rsa_key, sshd2.wrong_key)  # RSA first: paramiko took it
    ok, err = openssh_accepts(sshd2, known)
    assert not ok and "REMOTE HOST IDENTIFICATION HAS CHANGED" in err  # what OpenSSH does
    archive(penv)
    penv.write(UPLOAD_MODULES=["ssh"], UPLOAD_RETRIES=3,
               **sshd2.settings(SSH_KNOWN_HOSTS=known, SSH_CLIENT=client))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "host key CHANGED" in proc.stderr and "ssh-keygen -R" in proc.stderr
    assert "retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(sshd2.root) == []
    assert len(penv.mails()) == 1


def test_only_the_right_rsa_key_known_is_accepted_as_by_openssh(penv, sshd2, tmp_path):
    known = known_hosts(tmp_path, sshd2, sshd2.rsa_key)
    assert openssh_accepts(sshd2, known)[0]
    for client in ("paramiko", "openssh"):
        ctx = context(penv, **sshd2.settings(SSH_KNOWN_HOSTS=known, SSH_CLIENT=client))
        with connect(ctx) as remote:
            assert remote.client.get_transport().get_remote_server_key().get_name() == "ssh-rsa"
            transfer.upload(remote, archive(penv, client.encode()))
        assert open(os.path.join(sshd2.root, NAME), "rb").read() == client.encode()


# -- scp's own failures ---------------------------------------------------------------

def test_scp_shows_ssh_message_and_does_not_retry_a_changed_host_key(penv, sshd2, tmp_path):
    """The control connection is fine; the scp that moves the bytes meets a
    changed key (its known_hosts differs): ssh's message, not "Connection
    closed", and no retry."""
    ctx = context(penv, UPLOAD_RETRIES=3, **sshd2.settings(SSH_CLIENT="openssh"))
    wrong = known_hosts(tmp_path, sshd2, sshd2.wrong_key)
    log.set_verbose(True)
    with connect(ctx) as remote:
        remote.known_files = [wrong]
        with pytest.raises(PackratError) as err:
            transfer.upload(remote, archive(penv))
    message = str(err.value)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in message and "Host key verification failed" in message
    assert "not retried" in message and "ssh-keygen -R" in message
    assert "Connection closed" not in message
    assert not any("retrying" in line for line in log.transcript())
    assert len([line for line in log.transcript() if line.startswith("scp ")]) == 1
    assert os.listdir(sshd2.root) == []


def test_scp_refused_key_is_not_retried(penv, sshd2):
    ctx = context(penv, UPLOAD_RETRIES=3, **sshd2.settings(SSH_CLIENT="openssh"))
    log.set_verbose(True)
    with connect(ctx) as remote:
        remote.key = sshd2.other_key  # the server does not know it
        with pytest.raises(PackratError, match=r"Permission denied \(publickey"):
            transfer.upload(remote, archive(penv))
    assert not any("retrying" in line for line in log.transcript())


def test_scp_transient_failure_is_still_retried(penv, sshd2, monkeypatch):
    """A failure that is not a refusal (the connection cut) keeps its retries."""
    ctx = context(penv, UPLOAD_RETRIES=1, **sshd2.settings(SSH_CLIENT="openssh"))
    from pypackrat.upload import ssh as ssh_module
    with connect(ctx) as remote:
        argv = remote._scp_argv
        calls = []

        def first_to_a_closed_port(askpass=False):
            out = argv(askpass)
            calls.append(1)
            if len(calls) == 1:
                from tests.servers import free_port
                out[out.index("-P") + 1] = str(free_port())
            return out
        monkeypatch.setattr(remote, "_scp_argv", first_to_a_closed_port)
        transfer.upload(remote, archive(penv))
    assert len(calls) == 2
    assert any("retrying" in line and "Connection refused" in line for line in log.transcript())
    assert ssh_module.PERMANENT.search("ssh: connect to host 127.0.0.1 port 1: Connection refused") is None


# -- keys with a passphrase ---------------------------------------------------------------

@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_passphrase_key_through_ssh_agent(penv, sshd2, agent, tmp_path, client):
    add_to_agent(agent, sshd2.pass_key, tmp_path)
    archive(penv)
    penv.write(UPLOAD_MODULES=["ssh"], **sshd2.settings(SSH_KEY=sshd2.pass_key, SSH_CLIENT=client))
    proc = penv.run("-U", TODAY, date=TODAY, env={"SSH_AUTH_SOCK": agent})
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(sshd2.root) == [NAME]


def test_passphrase_key_without_agent_or_passphrase_is_one_clear_error(penv, sshd2, agent):
    archive(penv)
    penv.write(UPLOAD_MODULES=["ssh"], UPLOAD_RETRIES=3, **sshd2.settings(SSH_KEY=sshd2.pass_key))
    proc = penv.run("-U", TODAY, date=TODAY, check=1, env={"SSH_AUTH_SOCK": agent})  # an agent without it
    assert "SSH_KEY %s is protected by a passphrase" % sshd2.pass_key in proc.stderr
    assert "SSH_KEY_PASSPHRASE" in proc.stderr and "ssh-add" in proc.stderr
    assert "retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(penv.mails()) == 1


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_passphrase_setting_without_agent(penv, sshd2, client):
    archive(penv)
    penv.write(UPLOAD_MODULES=["ssh"], SSH_KEY_PASSPHRASE=PASSPHRASE,
               **sshd2.settings(SSH_KEY=sshd2.pass_key, SSH_CLIENT=client))
    env = {"SSH_AUTH_SOCK": ""}
    proc = penv.run("-v", "-U", TODAY, date=TODAY, env=env)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(sshd2.root) == [NAME]
    assert PASSPHRASE not in proc.stdout + proc.stderr
    if client == "openssh":
        assert "scp " in proc.stdout + proc.stderr  # scp did move the bytes


def test_wrong_passphrase_is_one_clear_error_and_stays_secret(penv, sshd2):
    archive(penv)
    penv.write(UPLOAD_MODULES=["ssh"], SSH_KEY_PASSPHRASE="not-the-passphrase-x",
               **sshd2.settings(SSH_KEY=sshd2.pass_key))
    proc = penv.run("-U", TODAY, date=TODAY, check=1, env={"SSH_AUTH_SOCK": ""})
    assert "cannot be unlocked with SSH_KEY_PASSPHRASE" in proc.stderr
    assert "not-the-passphrase-x" not in proc.stderr + proc.stdout
    assert "not-the-passphrase-x" not in penv.smtp.bodies()[0]
    assert "retrying" not in proc.stderr


def test_passphrase_is_masked_by_check(penv, sshd2):
    penv.write(UPLOAD_MODULES=["ssh"], SSH_KEY_PASSPHRASE=PASSPHRASE, **sshd2.settings(SSH_KEY=sshd2.pass_key))
    proc = penv.run("check", check=0)
    assert "SSH_KEY_PASSPHRASE" in proc.stdout and PASSPHRASE not in proc.stdout + proc.stderr


def test_a_server_that_is_not_ssh_is_one_line(penv, tmp_path):
    """Something else answers on SSH_PORT (or a server that hangs up):
    paramiko's transport thread logged its failure with a traceback, which
    logging's last resort printed on stderr. Now one line says it."""
    import socket
    import threading
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def answer():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        (penv.backup_dir / NAME).write_bytes(b"x")
        penv.write(UPLOAD_MODULES=["ssh"], SSH_HOST="127.0.0.1", SSH_PORT=listener.getsockname()[1],
                   SSH_USER="backup", SSH_DIR="/backups", SSH_CLIENT="paramiko", UPLOAD_RETRIES=0)
        proc = penv.run("-U", TODAY, date=TODAY, check=1)
    finally:
        listener.close()
    assert "Traceback" not in proc.stderr and "Exception (client)" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "connection failed" in l]
    assert lines and "Error reading SSH protocol banner" in lines[0], proc.stderr


def test_check_names_an_ssh_host_only_the_ssh_config_knows(penv, tmp_path):
    """The original's scp read root's ~/.ssh/config; packrat does not. A
    migrated SSH_HOST that is a Host alias there failed at night ('Name or
    service not known') while check said valid."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  ServerAliveInterval 30\n"
                                          "Host backupbox nas\n  HostName 192.0.2.7\n  Port 2222\n")
    penv.write(UPLOAD_MODULES=["ssh"], SSH_HOST="backupbox", SSH_USER="backup", SSH_DIR="/backups")
    proc = penv.run("check", env={"HOME": str(home)}, check=0)
    assert ("%s: SSH_HOST=backupbox is a Host of %s, which packrat does not read"
            % (penv.config_path, home / ".ssh" / "config")) in proc.stderr, proc.stderr
    penv.write(SSH_HOST="192.0.2.7")
    assert "which packrat does not read" not in penv.run("check", env={"HOME": str(home)}, check=0).stderr
