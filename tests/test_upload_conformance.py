"""One conformance suite for every upload module, each against its real
server: put, list, delete, get; verification; a connection cut in the middle
of a put; credentials and host keys refused with exit 1 and one mail;
hostile names in a listing never deleted; 10,000 remote names purged over
one connection; and files uploaded by a full ``packrat`` run equal to the
local files byte for byte.

To add a module type, add a factory to BACKENDS: a function of the pytest
``request`` returning a Backend. A test an upload type cannot have is
skipped with the reason (``Backend.cut`` None: nothing to cut, ...).
"""
import datetime
import os

import pytest

from pypackrat import config, log, plugins, run, transfer
from pypackrat.context import Context, Options
from pypackrat.errors import PackratError
from tests.servers.ftp import ftp_server, ftps_server, ftpd, ftpsd  # noqa: F401
from tests.servers.s3 import s3_server, s3d  # noqa: F401
from tests.servers.sshd import sshd_server, sshd  # noqa: F401

TODAY = "20261126"
NOW = datetime.datetime(2026, 11, 26, 12, 0)
OLD = "20200101"


class Backend:
    """What the suite needs of a module and its server.

    name: the module name (UPLOAD_MODULES); settings: what reaches the server;
    files(): {name: bytes} in the remote directory, read server-side;
    inject(name, data): put a file there server-side (no client);
    inject_outside(name): a file where ``../name`` would lead;
    exists_outside(name); cut(): drop open connections, or None;
    connections(): logins/connections seen since the test began, or None;
    bad_settings: settings whose credentials the server refuses, or None;
    refusal(): a context manager in force while they are tried;
    slow: settings that slow a put down enough to cut it part-way;
    inner_retries: the client library retries a dropped link by itself;
    transport: the module has put/get/size/rename (a Bash upload module has
    only mod_NAME, list_NAME and purge_NAME: see BashBackend);
    checksum: the digest the module gets of a remote file (hashlib name), or
    None where the protocol offers none (SFTP on OpenSSH).
    """

    cut = None
    connections = None
    bad_settings = None
    slow = {}
    inner_retries = False
    secret = None
    connection_per_file = False  # the data path opens a connection per file
    transport = True
    checksum = None

    def __init__(self, name, settings):
        self.name, self.settings = name, settings

    def refusal(self):
        import contextlib
        return contextlib.nullcontext()


class DirBackend(Backend):
    """A server whose files live in a local directory (sshd, pyftpdlib, local)."""

    def __init__(self, name, settings, directory):
        super().__init__(name, settings)
        self.directory = str(directory)

    def files(self):
        out = {}
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False):
                with open(entry.path, "rb") as fh:
                    out[entry.name] = fh.read()
        return out

    def inject(self, name, data=b"x"):
        with open(os.path.join(self.directory, name), "wb") as fh:
            fh.write(data)

    def inject_outside(self, name):
        with open(os.path.join(os.path.dirname(self.directory), name), "wb") as fh:
            fh.write(b"outside")

    def exists_outside(self, name):
        return os.path.exists(os.path.join(os.path.dirname(self.directory), name))


def local_backend(request):
    tmp = request.getfixturevalue("tmp_path")
    nas = tmp / "mnt" / "nas"
    nas.mkdir(parents=True)
    b = DirBackend("local", {"LOCAL_DIR": str(nas)}, nas)
    b.checksum = "sha256"
    return b


def _ssh_backend(request, client):
    server = request.getfixturevalue("sshd")
    b = DirBackend("ssh", server.settings(SSH_CLIENT=client), server.root)
    b.cut, b.connections = server.cut, server.connections
    b.bad_settings = {"SSH_KEY": server.other_key}
    b.slow = {"SSH_BWLIMIT": 16000}  # Kbit/s: 2 MB/s
    b.connection_per_file = client == "openssh"  # scp's own connection
    return b


def ssh_openssh_backend(request):
    return _ssh_backend(request, "openssh")


def ssh_paramiko_backend(request):
    return _ssh_backend(request, "paramiko")


def _ftp_backend(request, fixture):
    server = request.getfixturevalue(fixture)
    b = DirBackend("ftp", server.settings(), server.files_dir)
    b.cut, b.connections = server.cut, server.connections
    b.bad_settings = {"FTP_PASS": "wrong-password-x"}
    b.secret = "wrong-password-x"
    b.checksum = "sha256"  # the test server has HASH (tests/servers/ftp.py)
    return b


def ftp_backend(request):
    return _ftp_backend(request, "ftpd")


def ftps_backend(request):
    return _ftp_backend(request, "ftpsd")


class S3Backend(Backend):
    inner_retries = True

    def __init__(self, server):
        super().__init__("s3", server.settings())
        self.server = server
        self.cut, self.connections = server.cut, server.connections
        self.bad_settings = {"S3_SECRET_KEY": "wrong-secret-key-x"}
        self.secret = "wrong-secret-key-x"
        self.checksum = "md5"  # the ETag of a single-part upload

    def files(self):
        p = self.server.prefix + "/"
        return {k[len(p):]: v for k, v in self.server.objects().items() if k.startswith(p)}

    def inject(self, name, data=b"x"):
        self.server.inject("%s/%s" % (self.server.prefix, name), data)

    def inject_outside(self, name):
        self.server.inject(name, b"outside")

    def exists_outside(self, name):
        return name in self.server.objects()

    def refusal(self):
        return self.server.authenticated()


def s3_backend(request):
    return S3Backend(request.getfixturevalue("s3d"))


class BashBackend(DirBackend):
    """A Bash upload module run through the shim: modules/example.sh's
    example_upload, storing into a directory. It uploads with mod_NAME (every
    file of NEW_BACKUPS), lists with list_NAME and purges with purge_NAME;
    there is no put/get/size/rename to test."""

    transport = False
    no_transport = "a Bash upload module has no put/get/size/rename (mod_NAME does the transfer)"


def bash_backend(request):
    import shutil
    from tests.conftest import ROOT
    penv = request.getfixturevalue("penv")
    shutil.copy(os.path.join(ROOT, "modules", "example.sh"), str(penv.module_path))
    shelf = request.getfixturevalue("tmp_path") / "mnt" / "shelf"
    shelf.mkdir(parents=True)
    return BashBackend("example_upload", {"EXAMPLE_UPLOAD_DIR": str(shelf)}, shelf)


# name -> factory; other module types add themselves here
BACKENDS = {
    "local": local_backend,
    "ssh": ssh_openssh_backend,
    "ssh-paramiko": ssh_paramiko_backend,
    "ftp": ftp_backend,
    "ftps": ftps_backend,
    "s3": s3_backend,
    "bash": bash_backend,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    return BACKENDS[request.param](request)


# -- helpers -------------------------------------------------------------------

def context(penv, backend, **extra):
    """An in-process run context for ``backend`` (the config is written and
    read as packrat reads it)."""
    penv.write(UPLOAD_MODULES=[backend.name], **backend.settings, **extra)
    log.reset()
    settings = config.load(str(penv.config_path))
    return Context(settings, Options(), now=NOW)


def connect(ctx, backend):
    return run.open_remote(ctx, plugins.resolve(ctx.settings, backend.name, "upload"))


def archive(penv, name, data):
    path = penv.backup_dir / name
    path.write_bytes(data)
    return str(path)


# -- the suite --------------------------------------------------------------------

def test_put_list_get_delete(backend, penv, tmp_path):
    if not backend.transport:
        pytest.skip("%s: %s; see test_upload_list_delete" % (backend.name, backend.no_transport))
    ctx = context(penv, backend)
    sources = {"testhost-etc-%s.1.dar" % TODAY: os.urandom(300_001),
               "testhost-mysql-db-%s.sql.bz2" % TODAY: b"",
               "testhost-a b-%s.1.dar" % TODAY: b"spaces"}
    with connect(ctx, backend) as remote:
        for name, data in sources.items():
            transfer.upload(remote, archive(penv, name, data))
        assert sorted(transfer.listing(remote)) == sorted(sources)
        got = tmp_path / "got"
        transfer.download(remote, "testhost-etc-%s.1.dar" % TODAY, str(got))
        assert got.read_bytes() == sources["testhost-etc-%s.1.dar" % TODAY]
        transfer.delete(remote, "testhost-a b-%s.1.dar" % TODAY)
        assert "testhost-a b-%s.1.dar" % TODAY not in transfer.listing(remote)
    del sources["testhost-a b-%s.1.dar" % TODAY]
    assert backend.files() == sources  # server-side: the bytes, and no temporary file


def test_upload_list_delete(backend, penv):
    """What every upload module does, Python or Bash: upload the run's files
    (run.upload: transfer.upload, or a Bash module's mod_NAME), list them,
    delete one by name."""
    ctx = context(penv, backend)
    sources = {"testhost-etc-%s.1.dar" % TODAY: os.urandom(200_001),
               "testhost-mysql-db-%s.sql.bz2" % TODAY: b"",
               "testhost-home-%s.master.1.dar" % TODAY: os.urandom(5000)}
    run.upload(ctx, backend.name, [archive(penv, n, d) for n, d in sources.items()])
    assert backend.files() == sources  # server-side: the bytes, and no temporary file
    gone = "testhost-mysql-db-%s.sql.bz2" % TODAY
    with connect(ctx, backend) as remote:
        assert sorted(transfer.listing(remote)) == sorted(sources)
        transfer.delete(remote, gone)
        assert gone not in transfer.listing(remote)
    del sources[gone]
    assert backend.files() == sources


def test_a_second_upload_of_a_name_replaces_the_first(backend, penv):
    """-U of a day already sent: the remote copy becomes the new file,
    even when the new one is shorter."""
    ctx = context(penv, backend)
    name = "testhost-again-%s.1.dar" % TODAY
    backend.inject(name, b"the earlier, longer copy of this archive")
    run.upload(ctx, backend.name, [archive(penv, name, b"new")])
    assert backend.files() == {name: b"new"}


def _damaged_upload(backend, penv, damage, damaged_attempts, error):
    """Upload 50,000 random bytes while the server-side copy is replaced by
    ``damage(data)`` after each of the first ``damaged_attempts`` puts
    (UPLOAD_RETRIES=2: three attempts). One damaged attempt: the retry
    mends it. More: the upload fails with a VerifyError matching ``error``,
    and nothing is left, under the final name or the temporary one."""
    if not backend.transport:
        pytest.skip("%s: %s" % (backend.name, backend.no_transport))
    ctx = context(penv, backend, UPLOAD_RETRIES=2)
    data = os.urandom(50_000)
    name = "testhost-verify-%s.1.dar" % TODAY
    with connect(ctx, backend) as remote:
        put, damaged = remote.put, []

        def put_and_damage(local, target, progress=None):
            put(local, target, progress)
            if len(damaged) < damaged_attempts:
                damaged.append(target)
                backend.inject(target, damage(data))
        remote.put = put_and_damage
        if damaged_attempts == 1:
            transfer.upload(remote, archive(penv, name, data))
        else:
            with pytest.raises(transfer.VerifyError, match=error):
                transfer.upload(remote, archive(penv, name, data))
    files = backend.files()
    if damaged_attempts == 1:
        assert len(damaged) == 1 and files == {name: data}
    else:
        assert len(damaged) == 3 and files == {}  # nothing under the final name, no leftover


@pytest.mark.parametrize("damaged_attempts", [1, 99])
def test_verification_catches_a_wrong_size(backend, penv, damaged_attempts):
    """The remote copy loses its last byte after the put: caught; a retry
    mends a one-off; a copy that stays wrong never gets the final name."""
    _damaged_upload(backend, penv, lambda data: data[:-1], damaged_attempts, "bytes")


@pytest.mark.parametrize("damaged_attempts", [1, 99])
def test_verification_catches_damage_of_the_same_size_by_checksum(backend, penv, damaged_attempts):
    """One byte of the remote copy changes after the put, the size stays:
    where the protocol gives a digest, the upload compares it with the local
    file's, so a one-off is mended by a retry and a copy that stays wrong
    never gets the final name."""
    if backend.transport and not backend.checksum:
        pytest.skip("%s: the protocol offers no checksum; the size is checked" % backend.name)
    _damaged_upload(backend, penv, lambda data: data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
                    damaged_attempts, "differs .*%s" % backend.checksum)


@pytest.mark.parametrize("retries", [3, 0])
def test_cut_connection_during_put(backend, penv, retries):
    if backend.cut is None:
        pytest.skip("%s: no connection to cut" % backend.name)
    ctx = context(penv, backend, UPLOAD_RETRIES=retries, **backend.slow)
    data = os.urandom(3 << 20)
    name = "testhost-cut-%s.1.dar" % TODAY
    cuts = []
    with connect(ctx, backend) as remote:
        put = remote.put

        def put_and_cut(local, target, progress=None):
            def watch(done):
                if not cuts and 256 << 10 <= done < len(data):
                    cuts.append(done)
                    backend.cut()
                if progress:
                    progress(done)
            put(local, target, watch)
        remote.put = put_and_cut
        try:
            transfer.upload(remote, archive(penv, name, data))
            ok = True
        except PackratError:
            ok = False
    assert cuts, "the put ended before the cut"
    files = backend.files()
    if retries or ok:
        assert ok and files == {name: data}
    else:
        assert not backend.inner_retries or not ok
        assert name not in files
    assert name + transfer.PARTIAL not in files


def test_wrong_credentials_refused_with_exit_1_and_one_mail(backend, penv):
    if backend.bad_settings is None:
        pytest.skip("%s: no credentials" % backend.name)
    archive(penv, "testhost-etc-%s.1.dar" % TODAY, b"data")
    penv.write(UPLOAD_MODULES=[backend.name], UPLOAD_RETRIES=2,
               **dict(backend.settings, **backend.bad_settings))
    with backend.refusal():
        proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "Traceback" not in proc.stderr
    assert len(penv.mails()) == 1
    body = penv.smtp.bodies()[0]
    assert "refused" in body or "denied" in body or "authentication failed" in body, body
    if backend.secret:
        assert backend.secret not in body and backend.secret not in proc.stderr
    assert "testhost-etc-%s.1.dar" % TODAY not in backend.files()


@pytest.mark.parametrize("problem", ["unknown", "changed"])
def test_unknown_or_changed_ssh_host_key_refused(backend, penv, tmp_path, problem):
    if backend.name != "ssh":
        pytest.skip("%s: no host keys" % backend.name)
    known = tmp_path / "known_hosts"
    if problem == "unknown":
        known.write_text("")
    else:  # the host presents a key other than the one on file
        server = penv_server_key(backend)
        with open(server + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        known.write_text("[%s]:%s %s %s\n" % (backend.settings["SSH_HOST"], backend.settings["SSH_PORT"],
                                             kind, blob))
    archive(penv, "testhost-etc-%s.1.dar" % TODAY, b"data")
    penv.write(UPLOAD_MODULES=["ssh"], **dict(backend.settings, SSH_KNOWN_HOSTS=str(known)))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "Traceback" not in proc.stderr
    assert ("unknown host key" if problem == "unknown" else "host key CHANGED") in proc.stderr
    assert "ssh-keyscan -p %s" % backend.settings["SSH_PORT"] in proc.stderr
    assert len(penv.mails()) == 1
    assert backend.files() == {}


def penv_server_key(backend):
    """A key the server does not have (the suite's spare client key)."""
    return backend.bad_settings["SSH_KEY"]


def test_hostile_names_in_a_listing_are_never_deleted(backend, penv, monkeypatch):
    ctx = context(penv, backend, FS_TARGETS=["/old"])  # this host's names (issue 11)
    old = "testhost-old-%s.1.dar" % OLD
    backend.inject("testhost-old-%s.1.dar" % TODAY)  # the newest stays, whatever the age
    newline = "testhost-evil\n-%s.1.dar" % OLD
    backend.inject(old)
    backend.inject(newline)
    backend.inject_outside(old)  # where "../testhost-old-..." leads
    remote_class = type(connect(ctx, backend))
    listed = remote_class.list
    hostile = ["../" + old, "/etc/" + old, "/" + old, old + "\n", "..", ".", "", "sub\\" + old]
    monkeypatch.setattr(remote_class, "list", lambda self: listed(self) + hostile)
    deleted = []
    delete = remote_class.delete

    def record(self, name):
        deleted.append(name)
        return delete(self, name)
    monkeypatch.setattr(remote_class, "delete", record)
    many = remote_class.delete_many

    def record_many(self, names):
        deleted.extend(names)
        return many(self, names)
    monkeypatch.setattr(remote_class, "delete_many", record_many)
    run.purge_remote(ctx, backend.name, 10)
    assert old in deleted and old not in backend.files()  # the purge did run
    assert not set(deleted) & set(hostile + [newline])
    assert newline in backend.files() or backend.name == "ftp" and newline in os.listdir(backend.directory)
    assert backend.exists_outside(old)


def test_10000_names_purged_over_one_connection(backend, penv):
    if not backend.transport:
        pytest.skip("%s: purge_NAME runs once per name in one shell, one rm process each "
                    "(about 20 s for 10,000 here); the one-shell purge is in test_shim" % backend.name)
    for i in range(10_000):  # the slices of an old master of target /n
        backend.inject("testhost-n-%s.master.%d.dar" % (OLD, i + 1), b"")
    young = "testhost-n-%s.master.1.dar" % TODAY
    backend.inject(young, b"young")
    penv.write(UPLOAD_MODULES=[backend.name], FS_TARGETS=["/n"], **backend.settings)
    penv.run("-P", "-r", "10", date=TODAY, check=0, timeout=300)
    assert backend.files() == {young: b"young"}
    if backend.connections is not None:
        assert backend.connections() == 1


def test_full_run_uploads_equal_the_local_files(backend, penv):
    """A full ``packrat -U`` run: what lands on the remote equals the local
    files byte for byte."""
    local = {"testhost-home-%s.master.1.dar" % TODAY: os.urandom(1 << 20),
             "testhost-home-%s.master.2.dar" % TODAY: os.urandom(70_000),
             "testhost-postgresql-all-%s.sql.bz2" % TODAY: os.urandom(1234)}
    for name, data in local.items():
        archive(penv, name, data)
    archive(penv, "testhost-home-20261125.1.dar", b"not this date")
    penv.write(UPLOAD_MODULES=[backend.name], **backend.settings)
    proc = penv.run("-v", "-U", TODAY, date=TODAY, check=0)
    assert backend.files() == local, proc.stdout + proc.stderr
    if backend.connections is not None:  # the purge's, and the upload's
        assert backend.connections() == 2 + (len(local) if backend.connection_per_file else 0)
