"""What is particular to one transport: ssh's data paths and bandwidth
limit, FTPS certificates, S3 multipart, storage class, encryption, prefix
and credentials, and each module's configuration checks. The behaviour
every module shares is in test_upload_conformance.py."""
import hashlib
import os
import threading

import pytest

from pypackrat import config, log, plugins, run, transfer
from pypackrat.context import Context, Options
from pypackrat.errors import ConfigError, PackratError
from pypackrat.upload import ftp as ftp_module
from pypackrat.upload import s3 as s3_module
from pypackrat.upload import ssh as ssh_module
from tests.servers.ftp import ftp_server, ftpd, ftps_server, ftpsd  # noqa: F401
from tests.servers.s3 import s3_server, s3d  # noqa: F401
from tests.servers.sshd import sshd_server, sshd  # noqa: F401

TODAY = "20261126"


def context(penv, module, **settings):
    penv.write(UPLOAD_MODULES=[module], **settings)
    return Context(config.load(str(penv.config_path)), Options())


def problems(penv, module, **settings):
    penv.write(UPLOAD_MODULES=[module], **settings)
    with pytest.raises(ConfigError) as err:
        config.load(str(penv.config_path))
    return "\n".join(err.value.problems)


def remote_for(ctx, module):
    return run.open_remote(ctx, plugins.resolve(ctx.settings, module, "upload"))


def archive(penv, name, data):
    path = penv.backup_dir / name
    path.write_bytes(data)
    return str(path)


# -- ssh ---------------------------------------------------------------------------

def test_ssh_config_problems_name_the_setting(penv, tmp_path):
    text = problems(penv, "ssh", SSH_HOST="", SSH_DIR="", SSH_KEY=str(tmp_path / "nokey"),
                    SSH_KNOWN_HOSTS=str(tmp_path / "nohosts"))
    assert "SSH_HOST is empty" in text and "SSH_DIR is empty" in text
    assert "SSH_KEY=%s: no such file" % (tmp_path / "nokey") in text
    assert "SSH_KNOWN_HOSTS" in text and "ssh-keyscan" in text


def test_ssh_auto_uses_tuned_paramiko_on_openssh_and_scp_where_writes_are_small(penv, sshd, monkeypatch):
    ctx = context(penv, "ssh", **sshd.settings())
    with remote_for(ctx, "ssh") as remote:
        # OpenSSH announces 255 KiB writes (limits@openssh.com): paramiko keeps up
        assert ssh_module._request_size(remote.sftp) == ssh_module.LARGEST_REQUEST
        assert remote.use_openssh() is False
    monkeypatch.setattr(ssh_module, "_request_size", lambda sftp: ssh_module.DEFAULT_REQUEST)
    log.set_verbose(True)
    with remote_for(ctx, "ssh") as remote:
        assert remote.use_openssh() is True
        transfer.upload(remote, archive(penv, "testhost-a-%s.1.dar" % TODAY, b"via scp"))
    assert any(line.startswith("scp ") for line in log.transcript())
    assert open(os.path.join(sshd.root, "testhost-a-%s.1.dar" % TODAY), "rb").read() == b"via scp"


def test_ssh_bwlimit_goes_to_scp(penv, sshd):
    ctx = context(penv, "ssh", **sshd.settings(SSH_CLIENT="openssh", SSH_BWLIMIT=8000))
    log.set_verbose(True)
    data = os.urandom(200_000)
    with remote_for(ctx, "ssh") as remote:
        transfer.upload(remote, archive(penv, "testhost-b-%s.1.dar" % TODAY, data))
    commands = [line for line in log.transcript() if line.startswith("scp ")]
    assert commands and " -l 8000 " in commands[0]
    assert "StrictHostKeyChecking=yes" in commands[0] and "BatchMode=yes" in commands[0]
    assert open(os.path.join(sshd.root, "testhost-b-%s.1.dar" % TODAY), "rb").read() == data


def test_ssh_bwlimit_throttles_paramiko(penv, sshd, monkeypatch):
    """8000 Kbit/s is 1 MB/s: after 2 MiB the throttle wants about 2.1 s
    to have passed (the waits are recorded, not slept)."""
    waits = []
    monkeypatch.setattr(ssh_module.time, "sleep", waits.append)
    ctx = context(penv, "ssh", **sshd.settings(SSH_CLIENT="paramiko", SSH_BWLIMIT=8000))
    data = os.urandom(2 << 20)
    with remote_for(ctx, "ssh") as remote:
        transfer.upload(remote, archive(penv, "testhost-c-%s.1.dar" % TODAY, data))
    assert waits and 1.0 < max(waits) <= 2 * 1.048576 * 8 / 8 + 0.01
    assert open(os.path.join(sshd.root, "testhost-c-%s.1.dar" % TODAY), "rb").read() == data


def test_ssh_rename_replaces_an_existing_file(penv, sshd):
    """A re-upload (-U of the same day) replaces the earlier copy."""
    name = "testhost-d-%s.1.dar" % TODAY
    with open(os.path.join(sshd.root, name), "wb") as fh:
        fh.write(b"older copy, longer than the new one")
    ctx = context(penv, "ssh", **sshd.settings(SSH_CLIENT="paramiko"))
    with remote_for(ctx, "ssh") as remote:
        transfer.upload(remote, archive(penv, name, b"new"))
    assert sorted(os.listdir(sshd.root)) == [name]
    assert open(os.path.join(sshd.root, name), "rb").read() == b"new"


def test_ssh_delete_many_goes_past_a_failure_then_raises_it(penv, sshd):
    """The purge's deletes are pipelined (ssh.Remote.delete_many, more names
    than requests in flight): a name already gone is no error; one that
    cannot be deleted (a directory) fails the batch, but only once every
    other name is deleted, and the connection goes on serving."""
    names = ["testhost-p-%s.%d.dar" % (TODAY, i) for i in range(3 * ssh_module.IN_FLIGHT)]
    for name in names:
        open(os.path.join(sshd.root, name), "wb").close()
    stuck = "testhost-stuck-%s.1.dar" % TODAY
    os.mkdir(os.path.join(sshd.root, stuck))
    ctx = context(penv, "ssh", **sshd.settings(SSH_CLIENT="paramiko"))
    with remote_for(ctx, "ssh") as remote:
        with pytest.raises(OSError):
            remote.delete_many(names[:70] + ["testhost-gone-%s.1.dar" % TODAY, stuck] + names[70:])
        assert os.listdir(sshd.root) == [stuck]
        remote.delete_many(["testhost-gone-%s.1.dar" % TODAY])  # gone: no error
        assert remote.list() == []


def test_ssh_server_down_is_retried_then_one_clear_error(penv, sshd, tmp_path):
    from tests.servers import free_port
    archive(penv, "testhost-e-%s.1.dar" % TODAY, b"x")
    penv.write(UPLOAD_MODULES=["ssh"], UPLOAD_RETRIES=1, **sshd.settings(SSH_PORT=free_port()))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "retrying (attempt 2 of 2)" in proc.stderr
    assert "Connection refused" in proc.stderr or "Unable to connect" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(penv.mails()) == 1


# -- ftp ---------------------------------------------------------------------------

def test_ftp_config_problems(penv, tmp_path):
    text = problems(penv, "ftp", FTP_HOST="", FTP_USER="", FTP_CA_FILE=str(tmp_path / "none.pem"))
    assert "FTP_HOST is empty" in text and "FTP_USER is empty" in text
    assert "FTP_CA_FILE=%s: no such file" % (tmp_path / "none.pem") in text


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_ftp_upload_to_a_stalled_server_fails_instead_of_hanging(penv, request, monkeypatch, tls):
    """The data connection is blocking with the kernel's timeouts: a server
    that stops reading mid-transfer still ends the put, with an error the
    upload wrapper retries."""
    server = request.getfixturevalue("ftpsd" if tls else "ftpd")
    monkeypatch.setattr(ftp_module, "TIMEOUT", 2)
    ctx = context(penv, "ftp", **server.settings())
    path = archive(penv, "host-data-%s.1.dar" % TODAY, os.urandom(64 << 20))  # more than the socket buffers
    outcome = {}
    with remote_for(ctx, "ftp") as remote:
        def put():
            try:
                remote.put(path, "stalled.partial", progress=lambda done: server.paused.set())
            except BaseException as exc:
                outcome["error"] = exc
        worker = threading.Thread(target=put, daemon=True)
        worker.start()
        worker.join(60)
        server.paused.clear()
        assert not worker.is_alive(), "the upload hung on a server that stopped reading"
    assert isinstance(outcome.get("error"), remote.transient), outcome


@pytest.mark.parametrize("feature", ["SHA-256*;MD5", "MD5", None], ids=["sha256", "md5-by-opts", "no-hash"])
def test_ftp_checks_the_digest_where_the_server_has_hash(penv, ftpd, feature):
    """FEAT lists HASH: the upload compares the server's digest (the one
    FEAT marks, or one chosen with OPTS HASH); no HASH: the size alone."""
    ftpd.hash_feature = feature
    ctx = context(penv, "ftp", **ftpd.settings())
    data = os.urandom(10_000)
    name = "host-data-%s.1.dar" % TODAY
    with remote_for(ctx, "ftp") as remote:
        transfer.upload(remote, archive(penv, name, data))
        assert ftpd.hashes == (1 if feature else 0)
        expected = {"SHA-256*;MD5": ("sha256", hashlib.sha256(data).hexdigest()),
                    "MD5": ("md5", hashlib.md5(data).hexdigest()), None: None}[feature]
        assert remote.checksum(name) == expected
    with open(os.path.join(ftpd.files_dir, name), "rb") as fh:
        assert fh.read() == data


def test_ftps_refuses_an_untrusted_certificate(penv, ftpsd):
    settings = ftpsd.settings()
    del settings["FTP_CA_FILE"]  # the system's CAs do not know the self-signed one
    ctx = context(penv, "ftp", **settings)
    with pytest.raises(PackratError, match="certificate is not trusted.*FTP_CA_FILE"):
        with remote_for(ctx, "ftp"):
            pass
    assert ftpsd.connections() == 0


def test_ftps_server_requires_tls_and_plain_ftp_is_refused(penv, ftpsd):
    """The FTPS fixture refuses clear-text logins: the ftps runs of the
    conformance suite did go over TLS."""
    ctx = context(penv, "ftp", **ftpsd.settings(FTP_TLS=False))
    with pytest.raises(PackratError, match="login refused"):
        with remote_for(ctx, "ftp"):
            pass


# -- s3 ----------------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("size", [5 * 10**9 + 1, 50 * 10**9, 5 * 2**40])
def test_s3_part_size_keeps_any_archive_under_10000_parts(size):
    part = s3_module.part_size(size)
    assert part >= 5 * 2**20 and part % 2**20 == 0
    assert -(-size // part) <= 10_000


def test_s3_multipart_upload(penv, s3d, monkeypatch):
    """Over the threshold the file goes up in parts (small ones here, to
    keep moto's memory small); the size is verified, and the ETag, no MD5,
    as the MD5 of the parts' MD5s computed over the local file."""
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 << 20)
    monkeypatch.setattr(s3_module, "MIN_PART", 5 << 20)
    data = os.urandom((11 << 20) + 5)
    name = "testhost-big-%s.1.dar" % TODAY
    ctx = context(penv, "s3", **s3d.settings())
    with remote_for(ctx, "s3") as remote:
        transfer.upload(remote, archive(penv, name, data))
        head = remote.client.head_object(Bucket=s3d.bucket, Key="%s/%s" % (s3d.prefix, name))
        assert head["ETag"].strip('"').endswith("-3")
        algorithm, value = remote.checksum(name)
        assert value == head["ETag"].strip('"') and algorithm.part == 5 << 20
        assert transfer.file_digest(str(penv.backup_dir / name), algorithm) == value
    assert s3d.objects()["%s/%s" % (s3d.prefix, name)] == data


def test_s3_single_part_is_checked_by_md5(penv, s3d):
    import hashlib
    name = "testhost-small-%s.1.dar" % TODAY
    ctx = context(penv, "s3", **s3d.settings())
    with remote_for(ctx, "s3") as remote:
        transfer.upload(remote, archive(penv, name, b"abc"))
        assert remote.checksum(name) == ("md5", hashlib.md5(b"abc").hexdigest())


def test_s3_storage_class_and_encryption_reach_the_object(penv, s3d):
    name = "testhost-sse-%s.1.dar" % TODAY
    ctx = context(penv, "s3", **s3d.settings(S3_STORAGE_CLASS="STANDARD_IA", S3_SSE="AES256"))
    with remote_for(ctx, "s3") as remote:
        transfer.upload(remote, archive(penv, name, b"secret stuff"))
        head = remote.client.head_object(Bucket=s3d.bucket, Key="%s/%s" % (s3d.prefix, name))
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_rename_copies_and_removes(penv, s3d):
    """Never needed by an upload (puts are atomic), there for the interface."""
    s3d.inject("%s/a.partial" % s3d.prefix, b"payload")
    ctx = context(penv, "s3", **s3d.settings())
    with remote_for(ctx, "s3") as remote:
        remote.rename("a.partial", "a")
    assert s3d.names() == ["a"] and s3d.objects()["%s/a" % s3d.prefix] == b"payload"


def test_s3_bucket_without_prefix_lists_only_its_top_level(penv, s3d):
    s3d.inject("testhost-top-%s.1.dar" % TODAY, b"top")
    s3d.inject("%s/testhost-below-%s.1.dar" % (s3d.prefix, TODAY), b"below")
    ctx = context(penv, "s3", **s3d.settings(S3_BUCKET=s3d.bucket))
    with remote_for(ctx, "s3") as remote:
        assert transfer.listing(remote) == ["testhost-top-%s.1.dar" % TODAY]


def test_s3_default_credential_chain(penv, s3d, monkeypatch):
    from tests.servers.s3 import ACCESS_KEY, SECRET_KEY
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    ctx = context(penv, "s3", **s3d.settings(S3_ACCESS_KEY="", S3_SECRET_KEY=""))
    with remote_for(ctx, "s3") as remote:
        transfer.upload(remote, archive(penv, "testhost-env-%s.1.dar" % TODAY, b"env"))
    assert s3d.names() == ["testhost-env-%s.1.dar" % TODAY]


def test_s3_missing_bucket_is_one_clear_error(penv, s3d):
    archive(penv, "testhost-f-%s.1.dar" % TODAY, b"x")
    penv.write(UPLOAD_MODULES=["s3"], **s3d.settings(S3_BUCKET="no-such-bucket/x"))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "no bucket named no-such-bucket" in proc.stderr and "Traceback" not in proc.stderr


def test_s3_config_problems(penv):
    text = problems(penv, "s3", S3_BUCKET="No_Such!", S3_ACCESS_KEY="AKIA", S3_SECRET_KEY="",
                    S3_SSE="rot13", S3_STORAGE_CLASS="CHEAP", S3_ENDPOINT_URL="minio:9000")
    for part in ("is not a bucket name", "S3_ACCESS_KEY and S3_SECRET_KEY go together",
                 "S3_SSE=rot13", "S3_STORAGE_CLASS=CHEAP", "S3_ENDPOINT_URL=minio:9000"):
        assert part in text
    assert "S3_BUCKET is empty" in problems(penv, "s3", S3_BUCKET="")


def test_ssh_missing_directory_is_one_clear_error_without_retries(penv, sshd):
    archive(penv, "testhost-g-%s.1.dar" % TODAY, b"x")
    penv.write(UPLOAD_MODULES=["ssh"], **sshd.settings(SSH_DIR=sshd.root + "/nowhere"))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "SSH_DIR %s/nowhere does not exist on the server" % sshd.root in proc.stderr
    assert "retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(penv.mails()) == 1


def test_ssh_permission_denied_is_not_retried(penv, sshd):
    """A refused write fails at once, not after retries. The tests run as
    root, whom modes do not stop: the directory is made immutable."""
    import subprocess
    if subprocess.run(["chattr", "+i", sshd.root], capture_output=True).returncode:
        pytest.skip("chattr +i is not possible here")
    try:
        archive(penv, "testhost-h-%s.1.dar" % TODAY, b"x")
        penv.write(UPLOAD_MODULES=["ssh"], UPLOAD_RETRIES=3, UPLOAD_RETRY_WAIT=5,
                   **sshd.settings(SSH_CLIENT="paramiko"))
        proc = penv.run("-U", TODAY, date=TODAY, check=1)
    finally:
        subprocess.run(["chattr", "-i", sshd.root], check=True)
    assert "cannot write testhost-h-%s.1.dar.partial" % TODAY in proc.stderr
    assert "retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(sshd.root) == []


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_progress_shows_on_a_terminal_only(penv, sshd, client):
    import pty
    import subprocess
    from tests.conftest import PACKRAT
    archive(penv, "testhost-p-%s.1.dar" % TODAY, os.urandom(10 << 20))  # over 8 MiB: a bar
    penv.write(UPLOAD_MODULES=["ssh"], **sshd.settings(SSH_CLIENT=client, SSH_BWLIMIT=160000))
    master, slave = pty.openpty()
    env = dict(os.environ, PACKRAT_DATE=TODAY)
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path), "-U", TODAY],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: packrat is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait() == 0
    assert b"ssh testhost-p-%s.1.dar" % TODAY.encode() in seen and b"%" in seen
    quiet = penv.run("-U", TODAY, date=TODAY, check=0)  # no terminal: as under cron
    assert "%" not in quiet.stderr and "%" not in quiet.stdout
