"""One connection per upload module and run (issue 15): the purge's
connection is kept for the module's upload worker, and kept alive while the
backups run (run.KEEPALIVE: FTP NOOP, an SSH keep-alive request), so that a
server that closes idle sessions does not cost a failed attempt and a
reconnection. The FTP server here closes a session idle for 1 s; the
night's only backup module takes 2 s."""
import os

import pytest

from pypackrat import run
from tests.servers.ftp import ftp_server, ftpd  # noqa: F401
from tests.servers.sshd import sshd, sshd_server  # noqa: F401
from tests.test_overlap import TODAY, bash_module, nightly

# the file has CRLF line ends: an upload in ASCII mode (the session's mode
# after the purge's listing) would lose its CRs on this server
SLOW = """  sleep 2
  head -c 70000 /dev/urandom > "$BACKUP_DIR/$HOSTNAME-slow-$TODAY.bin"
  printf 'line\\r\\n%.0s' $(seq 1000) >> "$BACKUP_DIR/$HOSTNAME-slow-$TODAY.bin"
  NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$HOSTNAME-slow-$TODAY.bin\""""


@pytest.fixture
def impatient_ftpd(ftpd, monkeypatch):
    """The FTP server closes a control connection idle for 1 s (pyftpdlib's
    timeout, 300 s by default, as vsftpd's idle_session_timeout)."""
    monkeypatch.setattr(ftpd.server.handler, "timeout", 1)
    return ftpd


def sent_names(ftpd, penv):
    """The names on the server, each file's bytes equal to the local file's."""
    names = sorted(os.listdir(ftpd.files_dir))
    for name in names:
        with open(os.path.join(ftpd.files_dir, name), "rb") as theirs:
            data = theirs.read()
        assert data.count(b"line\r\n") == 1000
        with open(os.path.join(str(penv.backup_dir), name), "rb") as mine:
            assert mine.read() == data, name
    return names


@pytest.mark.parametrize("keepalive, logins", [(0.3, 1), (1000, 2)])
def test_the_purges_ftp_session_carries_the_uploads_kept_alive_while_the_backups_run(
        penv, impatient_ftpd, monkeypatch, keepalive, logins):
    """keep-alive every 0.3 s: one login for the purge and the upload. Without
    (1000 s): the server closed the idle session, the upload's first attempt
    failed and it logged in again (a retry, recovered: the night still
    succeeds), which shows that the server's timeout is real."""
    monkeypatch.setattr(run, "KEEPALIVE", keepalive)
    bash_module(penv, "slow", SLOW)
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["slow"], UPLOAD_MODULES=["ftp"],
                          **impatient_ftpd.settings())
    assert errors == []
    assert sent_names(impatient_ftpd, penv) == ["testhost-slow-%s.bin" % TODAY]
    assert impatient_ftpd.connections() == logins


def test_the_originals_order_opens_its_own_connection_after_the_backups(penv, ftpd, monkeypatch):
    """UPLOAD_CONCURRENCY=0: the uploads come after every backup (hours, on a
    real night), over a connection of their own; the purge's is closed."""
    bash_module(penv, "slow", SLOW.replace("sleep 2", "true"))
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["slow"], UPLOAD_MODULES=["ftp"],
                          UPLOAD_CONCURRENCY=0, **ftpd.settings())
    assert errors == []
    assert sent_names(ftpd, penv) == ["testhost-slow-%s.bin" % TODAY]
    assert ftpd.connections() == 2


def test_purge_only_closes_its_connection(penv, ftpd, monkeypatch):
    monkeypatch.setenv("PACKRAT_DATE", TODAY)
    penv.write(UPLOAD_MODULES=["ftp"], **ftpd.settings())
    proc = penv.run("-P", date=TODAY, check=0)
    assert proc.returncode == 0, proc.stderr
    assert ftpd.connections() == 1


def test_ssh_keepalives_while_the_backups_run(penv, sshd, monkeypatch):
    """The SSH connection of the purge carries the upload after idle time
    with keep-alive requests on it (paramiko: every 0.2 s here)."""
    monkeypatch.setattr(run, "KEEPALIVE", 0.2)
    calls = []
    from pypackrat.upload import ssh
    keepalive = ssh.Remote.keepalive

    def counted(self):
        calls.append(1)
        return keepalive(self)
    monkeypatch.setattr(ssh.Remote, "keepalive", counted)
    bash_module(penv, "slow", SLOW.replace("sleep 2", "sleep 1"))
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["slow"], UPLOAD_MODULES=["ssh"],
                          **sshd.settings(SSH_CLIENT="paramiko"))
    assert errors == []
    assert calls  # the worker kept the connection alive while it waited
    assert sshd.connections() == 1
