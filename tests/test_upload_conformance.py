"""One conformance suite for every upload module, each against its real
server: put, list, delete, get; verification; a connection cut in the middle
of a put; credentials and host keys refused with exit 1 and one mail;
hostile names in a listing never deleted; 10,000 remote names purged over
one connection; and files uploaded by a full ``packrat`` run equal to the
local files byte for byte.

The modules are found by folder (plugins.available("upload")); each
declares beside itself, in ``CONFORMANCE``, how it meets its test server
(see ENTRY_KEYS), and what it can do is its Remote's ``capabilities``
(transfer.CAPABILITIES). The Bash example module's entry is BASH_ENTRIES
below. A test is skipped only for a capability the module does not declare
(the reason names it); any other skip (a module without an entry, an entry
lacking what a declared capability needs) fails under
PACKRAT_STRICT_CONFORMANCE=1, which tests/run.sh sets unless it is set (so CI's
.ci/run, the README's command, is strict; =0 relaxes it).
"""
import datetime
import importlib
import os
import re
import threading
import time

import pytest

from pypackrat import config, log, plugins, run, shim, transfer
from pypackrat.context import Context, Options
from pypackrat.errors import PackratError

TODAY = "20261126"
NOW = datetime.datetime(2026, 11, 26, 12, 0)
OLD = "20200101"
STRICT = "PACKRAT_STRICT_CONFORMANCE"

# What an entry may hold. Strings are str.format()ed with ``tmp`` (the
# test's tmp_path), ``server`` (the fixture's object) and ``files``.
ENTRY_KEYS = {
    "server": "the pytest fixture of its test server (tests/servers/), or None",
    "module": "the UPLOAD_MODULES name, when not the file's (Bash modules)",
    "install": "a Bash module file, copied into MODULE_PATH",
    "store": '"directory" (default) or "objects" (S3: under the bucket\'s prefix)',
    "files": "the directory on this machine where the uploads land",
    "settings": "its settings (over server.settings() where there is a server)",
    "refused": "settings with credentials the server refuses (\"credentials\")",
    "secret": "the refused setting whose value must stay out of output and mail",
    "host_keys": "setting, host, port: its known_hosts settings; other_key: a key not the "
                 "server's (\"host_keys\")",
    "digest": "the hashlib name of what checksum() gives on the test server (\"checksum\")",
    "slow": "settings that slow a put enough to cut it part-way",
    "library_retries": "the client library retries a dropped link by itself",
    "connection_per_file": "the data path opens a connection per file",
}

# The Bash example module's entry: modules/example.sh is a template for
# the operator's own modules, not a packrat module, so its entry is here.
# Its capabilities are shim.BashRemote's (it lists and deletes only).
BASH_ENTRIES = {
    "bash": {
        "module": "example_upload",
        "install": "modules/example.sh",
        "files": "{tmp}/mnt/shelf",
        "settings": {"EXAMPLE_UPLOAD_DIR": "{files}"},
    },
}


def entries():
    """label -> (capabilities, entry or None) of every upload module: each
    Python module of pypackrat/upload/ with the entries it declares (None:
    it declares none), and the Bash example."""
    out = {}
    for name, dotted in sorted(plugins.available("upload").items()):
        code = importlib.import_module(dotted)
        declared = vars(code).get("CONFORMANCE")
        for label, entry in (declared or {name: None}).items():
            out[label] = (code.Remote.capabilities,
                          None if entry is None else dict(entry, module=entry.get("module", name)))
    for label, entry in BASH_ENTRIES.items():
        out[label] = (shim.BashRemote.capabilities, entry)
    return out


ENTRIES = entries()

_FIXTURE = re.compile(r"^@pytest\.fixture\b.*\n(?:@.*\n)*def (\w+)\(", re.M)


def server_fixtures():
    """{name: fixture} of the files of tests/servers/ that define a server
    fixture an entry names (each such file's fixtures all: a per-test
    fixture requests its file's server), so that a new server's fixture
    needs no import line here."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers")
    wanted = {entry["server"] for _, entry in ENTRIES.values() if entry and entry.get("server")}
    found = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            defined = _FIXTURE.findall(fh.read())
        if wanted & set(defined):
            module = importlib.import_module("tests.servers." + name[:-3])
            found.update((fixture, getattr(module, fixture)) for fixture in defined)
    return found


globals().update(server_fixtures())  # where pytest finds this file's fixtures


def decide(label, capabilities, capability, ready=True, missing="", strict=False):
    """What a test that needs ``capability`` does with the module ``label``:
    ("run", ""), or ("skip", reason) where the module does not declare the
    capability (a justified skip), or, where it declares it (or no
    capability is at stake: ``capability`` None) but its entry is not
    ``ready`` (lacks ``missing``), an unjustified skip: ("fail", reason)
    when ``strict``, else ("skip", reason)."""
    if capability is not None and capability not in capabilities:
        return "skip", "%s: no %r capability (%s)" % (label, capability, transfer.CAPABILITIES[capability])
    if ready:
        return "run", ""
    reason = "%s: %s, and no undeclared capability justifies the skip" % (label, missing)
    return ("fail" if strict else "skip"), reason


def strict():
    return os.environ.get(STRICT) == "1"


def need(backend, capability, ready=True, missing=""):
    """Skip or fail the test as decide() says (the CI switch: STRICT)."""
    action, reason = decide(backend.label, backend.capabilities, capability, ready, missing, strict())
    if action == "fail":
        pytest.fail("unjustified conformance skip (%s=1): %s" % (STRICT, reason))
    if action == "skip":
        pytest.skip(reason)


class Backend:
    """A module and its test server, as its entry describes them.

    name: the module name (UPLOAD_MODULES); settings: what reaches the server;
    capabilities: its Remote's; files(): {name: bytes} in the remote
    directory, read server-side; inject(name, data): put a file there
    server-side (no client); inject_outside(name): a file where ``../name``
    would lead; exists_outside(name); cut(): drop open connections, or None;
    connections(): logins/connections seen since the test began, or None;
    refusal(): a context manager in force while refused credentials are tried.
    """

    def __init__(self, label, capabilities, entry, server, tmp):
        self.label, self.capabilities = label, capabilities
        self.name = entry["module"]
        self.server = server
        fmt = dict(tmp=str(tmp), server=server)
        self.directory = _format(entry.get("files"), fmt)
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
        fmt["files"] = self.directory
        own = _format(entry.get("settings", {}), fmt)
        self.settings = server.settings(**own) if server is not None else own
        self.refused = _format(entry.get("refused"), fmt)
        secret = entry.get("secret")
        self.secret = self.refused[secret] if secret else None
        self.host_keys = _format(entry.get("host_keys"), fmt)
        self.digest = entry.get("digest")
        self.slow = _format(entry.get("slow", {}), fmt)
        self.library_retries = entry.get("library_retries", False)
        self.connection_per_file = entry.get("connection_per_file", False)
        self.cut = getattr(server, "cut", None)
        self.connections = getattr(server, "connections", None)
        self.objects = entry.get("store", "directory") == "objects"

    def refusal(self):
        import contextlib
        return self.server.authenticated() if self.objects else contextlib.nullcontext()

    def files(self):
        if self.objects:
            p = self.server.prefix + "/"
            return {k[len(p):]: v for k, v in self.server.objects().items() if k.startswith(p)}
        out = {}
        for entry in os.scandir(self.directory):
            if entry.is_file(follow_symlinks=False):
                with open(entry.path, "rb") as fh:
                    out[entry.name] = fh.read()
        return out

    def inject(self, name, data=b"x"):
        if self.objects:
            self.server.inject("%s/%s" % (self.server.prefix, name), data)
            return
        with open(os.path.join(self.directory, name), "wb") as fh:
            fh.write(data)

    def inject_many(self, names):
        """Empty files under ``names``, server-side, fast: in a directory
        one file and a hard link to it for each further name (a link is a
        tenth of a file's creation), objects one by one."""
        if self.objects or not names:
            for name in names:
                self.inject(name, b"")
            return
        first = os.path.join(self.directory, names[0])
        open(first, "wb").close()
        for name in names[1:]:
            os.link(first, os.path.join(self.directory, name))

    def inject_outside(self, name):
        if self.objects:
            self.server.inject(name, b"outside")
            return
        with open(os.path.join(os.path.dirname(self.directory), name), "wb") as fh:
            fh.write(b"outside")

    def exists_outside(self, name):
        if self.objects:
            return name in self.server.objects()
        return os.path.exists(os.path.join(os.path.dirname(self.directory), name))


def _format(value, fmt):
    """``value`` with its strings (in dicts too) formatted with ``fmt``."""
    if isinstance(value, str):
        return value.format(**fmt)
    if isinstance(value, dict):
        return {k: _format(v, fmt) for k, v in value.items()}
    return value


@pytest.fixture(params=list(ENTRIES))
def backend(request):
    capabilities, entry = ENTRIES[request.param]
    if entry is None:
        action, reason = decide(request.param, capabilities, None, ready=False, strict=strict(),
                                missing="its module declares no CONFORMANCE entry")
        (pytest.fail if action == "fail" else pytest.skip)(reason)
    server = request.getfixturevalue(entry["server"]) if entry.get("server") else None
    if entry.get("install"):
        import shutil
        from tests.conftest import ROOT
        penv = request.getfixturevalue("penv")
        shutil.copy(os.path.join(ROOT, entry["install"]), str(penv.module_path))
    return Backend(request.param, capabilities, entry, server, request.getfixturevalue("tmp_path"))


# -- helpers -------------------------------------------------------------------

def context(penv, backend, **extra):
    """An in-process run context for ``backend`` (the config is written and
    read as packrat reads it)."""
    penv.write(UPLOAD_MODULES=[backend.name], **backend.settings, **extra)
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
    need(backend, "transfer")  # else see test_upload_list_delete
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
    need(backend, "transfer")
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
    need(backend, "transfer")
    need(backend, "checksum", ready=bool(backend.digest), missing="its entry names no 'digest'")
    _damaged_upload(backend, penv, lambda data: data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
                    damaged_attempts, "differs .*%s" % backend.digest)


@pytest.mark.parametrize("retries", [3, 0])
def test_cut_connection_during_put(backend, penv, retries):
    need(backend, "reconnect", ready=backend.cut is not None, missing="its test server has no cut()")
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
        assert not backend.library_retries or not ok
        assert name not in files
    assert name + transfer.PARTIAL not in files


def test_wrong_credentials_refused_with_exit_1_and_one_mail(backend, penv):
    need(backend, "credentials", ready=backend.refused is not None, missing="its entry has no 'refused'")
    archive(penv, "testhost-etc-%s.1.dar" % TODAY, b"data")
    penv.write(UPLOAD_MODULES=[backend.name], UPLOAD_RETRIES=2,
               **dict(backend.settings, **backend.refused))
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
    need(backend, "host_keys", ready=backend.host_keys is not None, missing="its entry has no 'host_keys'")
    keys = backend.host_keys
    host, port = backend.settings[keys["host"]], backend.settings[keys["port"]]
    known = tmp_path / "known_hosts"
    if problem == "unknown":
        known.write_text("")
    else:  # the host presents a key other than the one on file
        with open(keys["other_key"] + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        known.write_text("[%s]:%s %s %s\n" % (host, port, kind, blob))
    archive(penv, "testhost-etc-%s.1.dar" % TODAY, b"data")
    penv.write(UPLOAD_MODULES=[backend.name], **dict(backend.settings, **{keys["setting"]: str(known)}))
    proc = penv.run("-U", TODAY, date=TODAY, check=1)
    assert "Traceback" not in proc.stderr
    assert ("unknown host key" if problem == "unknown" else "host key CHANGED") in proc.stderr
    assert "ssh-keyscan -p %s" % port in proc.stderr
    assert len(penv.mails()) == 1
    assert backend.files() == {}


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
    assert newline in backend.files()
    assert backend.exists_outside(old)


def test_10000_names_purged_over_one_connection(backend, penv):
    need(backend, "bulk_delete")  # a Bash module: purge_NAME once per name, one rm each
    # (about 20 s for 10,000 here); its one-shell purge is in test_shim
    # the slices of an old master of target /n
    backend.inject_many(["testhost-n-%s.master.%d.dar" % (OLD, i + 1) for i in range(10_000)])
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
    if backend.connections is not None:
        # a module that sends its files itself over a network connection keeps
        # the purge's for them (issue 15: one connection per module and run); a
        # Bash module's upload comes after the backups, over one of its own
        opened = 1 if {"transfer", "reconnect"} <= backend.capabilities else 2
        assert backend.connections() == opened + (len(local) if backend.connection_per_file else 0)


def _grow(growing, slices, order, before_end, streams):
    """Write ``slices`` (bytes each) as dar_xform does, a piece at a time;
    where the remote ``streams``, wait (10 s at most) until it read from the
    last slice; then (after ``before_end()``) give them their final names
    and end the archive well."""
    for number, data in enumerate(slices, 1):
        with open(growing.temp_path(number), "wb", buffering=0) as fh:
            for start in range(0, len(data), 100_000):
                fh.write(data[start:start + 100_000])
                time.sleep(0.01)
    deadline = time.monotonic() + 10
    while streams and ("read", len(slices)) not in order and time.monotonic() < deadline:
        time.sleep(0.01)
    order.append("written")
    before_end()
    for number in range(len(slices), 0, -1):
        os.replace(growing.temp_path(number), growing.final_path(number))
    growing.end(True)


@pytest.mark.parametrize("ends_well", [True, False], ids=["made", "dar-failed"])
def test_an_archive_is_sent_while_dar_writes_it(backend, penv, monkeypatch, ends_well):
    """transfer.upload_growing: the remote reads each slice as it grows
    (what it read is recorded before the slices are written whole), no
    final name appears before the archive is made; then every slice is
    there byte for byte, and nothing else. When dar fails instead, nothing
    of the archive stays on the remote."""
    need(backend, "stream")
    from pypackrat.core import growing as growing_mod
    ctx = context(penv, backend)
    base = "testhost-grow-%s.master" % TODAY
    g = growing_mod.Growing(str(penv.backup_dir), ".packrat-tmp-%d-%s" % (os.getpid(), base), base)
    slices = [os.urandom(1_200_000), os.urandom(300_001)]
    order = []
    read = growing_mod.Reader.read

    def reading(self, size=-1):
        data = read(self, size)
        if data and ("read", self.number) not in order:
            order.append(("read", self.number))  # the first bytes read of each slice
        return data

    monkeypatch.setattr(growing_mod.Reader, "read", reading)
    finals = {"%s.%d.dar" % (base, n): data for n, data in enumerate(slices, 1)}
    early = []  # what the remote showed before the archive was made

    def writer():
        if ends_well:
            _grow(g, slices, order, lambda: early.extend(backend.files()), streams)
            return
        with open(g.temp_path(1), "wb") as fh:
            fh.write(slices[0][:500_000])
        while not order:
            time.sleep(0.01)
        os.unlink(g.temp_path(1))
        g.end(False)

    thread = threading.Thread(target=writer)
    with connect(ctx, backend) as remote:
        streams = remote.streams()  # ssh over scp (SSH_CLIENT=openssh) sends once the archive is made
        if not streams and not ends_well:
            order.append(("read", 1))  # the writer fails the archive at once: nothing may be sent
        thread.start()
        try:
            if ends_well:
                sent = transfer.upload_growing(remote, g)
            else:
                with pytest.raises(growing_mod.Abandoned):
                    transfer.upload_growing(remote, g)
        finally:
            thread.join()
    if ends_well:  # every slice sent while the archive was written, where the remote can
        before = order[:order.index("written")]
        assert before == ([("read", 1), ("read", 2)] if streams else []), order
        assert not set(early) & set(finals), early  # no final name before the archive was made
        assert [os.path.basename(p) for p in sent] == sorted(finals)
        assert backend.files() == finals
    else:
        assert backend.files() == {}


def test_a_threadsafe_remote_takes_calls_from_two_threads_at_once(backend, penv):
    """What "threadsafe" promises (a streamed archive is finished in a
    thread of its own while the module sends its next file): over one
    connection, two uploads at once, from two threads, while a third lists
    and asks sizes; every file lands whole."""
    need(backend, "threadsafe")
    ctx = context(penv, backend)
    sources = {"testhost-a-%s.1.dar" % TODAY: os.urandom(3_000_001),
               "testhost-b-%s.1.dar" % TODAY: os.urandom(2_000_003),
               "testhost-c-%s.sql.gz" % TODAY: os.urandom(70_000)}
    paths = [archive(penv, name, data) for name, data in sources.items()]
    errors, done = [], threading.Event()
    with connect(ctx, backend) as remote:
        start = threading.Barrier(3)

        def send(chunk):
            start.wait()
            try:
                for path in chunk:
                    transfer.upload(remote, path)
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        def ask():
            start.wait()
            while not done.is_set():
                try:
                    remote.list()
                    remote.size(os.path.basename(paths[0]))
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
                    return
        threads = [threading.Thread(target=send, args=(paths[:1],)),
                   threading.Thread(target=send, args=(paths[1:],))]
        asker = threading.Thread(target=ask)
        for t in threads + [asker]:
            t.start()
        for t in threads:
            t.join()
        done.set()
        asker.join()
    assert errors == []
    assert backend.files() == sources


# -- the entries and the CI switch (no server) -----------------------------------

@pytest.mark.fast
def test_every_module_declares_a_well_formed_entry_and_its_capabilities():
    """Each upload module of the folder declares an entry with known keys and
    a server fixture this file has; its Remote declares its capabilities
    itself, each one of transfer.CAPABILITIES; a Transport says "transfer",
    the Bash modules' Lister does not."""
    assert {"local", "ssh", "ssh-paramiko", "ftp", "ftps", "s3", "bash"} <= set(ENTRIES)
    for label, (capabilities, entry) in ENTRIES.items():
        assert entry is not None, "%s declares no CONFORMANCE entry" % label
        assert set(entry) <= set(ENTRY_KEYS), (label, set(entry) - set(ENTRY_KEYS))
        assert entry.get("server") is None or entry["server"] in globals(), (label, entry["server"])
        assert isinstance(capabilities, frozenset) and capabilities <= set(transfer.CAPABILITIES), label
    for name, dotted in plugins.available("upload").items():
        remote = importlib.import_module(dotted).Remote
        assert "capabilities" in vars(remote), "%s: Remote declares no capabilities" % name
        assert issubclass(remote, transfer.Transport) and "transfer" in remote.capabilities, name
    assert not issubclass(shim.BashRemote, transfer.Transport)
    assert "transfer" not in shim.BashRemote.capabilities
    assert not hasattr(shim.BashRemote, "put") and not hasattr(shim.BashRemote, "get")


@pytest.mark.fast
def test_decide_skips_only_for_an_undeclared_capability():
    have = frozenset({"transfer", "checksum"})
    assert decide("m", have, "transfer") == ("run", "")
    action, reason = decide("m", have, "host_keys", strict=True)
    assert action == "skip" and "'host_keys'" in reason  # justified: never fails
    for strict_mode, expected in ((False, "skip"), (True, "fail")):
        action, reason = decide("m", have, "checksum", ready=False, missing="no 'digest'", strict=strict_mode)
        assert action == expected and "no 'digest'" in reason
        action, reason = decide("m", frozenset(), None, ready=False, missing="no entry", strict=strict_mode)
        assert action == expected and "no entry" in reason


FAKE_SUITE = '''
from tests import test_upload_conformance as conformance


class Fake:  # declares "checksum", but its entry gives no digest
    label, capabilities, digest = "fake", frozenset({"transfer", "checksum"}), None


def test_unjustified():
    conformance.need(Fake, "checksum", ready=bool(Fake.digest), missing="its entry names no 'digest'")


def test_justified():
    conformance.need(Fake, "host_keys")
'''


@pytest.mark.fast
@pytest.mark.parametrize("switch", ["", "1"])
def test_the_ci_switch_fails_an_unjustified_skip(tmp_path, switch):
    """A suite with a fake module's entry, run by pytest: without the switch
    both of its tests are skipped; with PACKRAT_STRICT_CONFORMANCE=1 the
    skip no undeclared capability justifies fails, the other stays a skip."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    (tmp_path / "test_fake_module.py").write_text(FAKE_SUITE)
    env = dict(os.environ, PYTHONPATH=ROOT, **{STRICT: switch})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider",
                           "test_fake_module.py"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert "no 'host_keys' capability" in out, out
    if switch:
        assert proc.returncode == 1 and "1 failed, 1 skipped" in out, out
        assert "unjustified conformance skip" in out and "names no 'digest'" in out
    else:
        assert proc.returncode == 0 and "2 skipped" in out, out
