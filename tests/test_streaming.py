"""Archives sent while dar writes them (issue 15, the whole night's speed):
the filesystem module makes the archive through ``dar -c - | dar_xform``
and the upload modules send each slice as it grows, to its temporary
remote name; the final remote names come only once dar has succeeded and
each copy was checked. Real dar, dar_xform, sshd, FTP and S3 servers; the
order is read from the run's recorded events, never from timings."""
import os
import shutil
import subprocess
import threading
import time

import pytest

from pypackrat.core import growing as growing_mod
from pypackrat.core.growing import Abandoned, Growing, Reader
from tests.conftest import PACKRAT
from tests.servers.ftp import ftp_server, ftpd  # noqa: F401
from tests.servers.s3 import s3_server, s3d  # noqa: F401
from tests.servers.sshd import sshd, sshd_server  # noqa: F401
from tests.test_overlap import TODAY, bash_module, events, nightly, sent, sigterm_when

MODULES = ("local", "ssh", "ftp", "s3")


def tree(tmp_path, name, size):
    src = tmp_path / name
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(size))
    (src / "sub" / "notes.txt").write_text("line\n" * 5000)
    return str(src)


def remotes(penv, tmp_path, sshd, ftpd, s3d):
    nas = tmp_path / "nas"
    nas.mkdir()
    settings = dict(UPLOAD_MODULES=list(MODULES), UPLOAD_CONCURRENCY=4, LOCAL_DIR=str(nas))
    settings.update(sshd.settings(SSH_CLIENT="paramiko"))
    settings.update(ftpd.settings())
    settings.update(s3d.settings())
    return settings


def remote_files(module, tmp_path, sshd, ftpd, s3d):
    """{name: bytes} on the remote of ``module``."""
    if module == "s3":
        return {key.rsplit("/", 1)[-1]: data for key, data in s3d.objects().items()}
    directory = {"local": str(tmp_path / "nas"), "ssh": sshd.root, "ftp": ftpd.files_dir}[module]
    out = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as fh:
            out[name] = fh.read()
    return out


def restore(slices_dir, base, dest):
    subprocess.run(["dar", "-x", os.path.join(slices_dir, base), "-R", str(dest), "-Q", "-O"],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)


def same_tree(a, b):
    for root, _, files in os.walk(a):
        for name in files:
            mine = os.path.join(root, name)
            theirs = os.path.join(b, os.path.relpath(mine, a))
            with open(mine, "rb") as x, open(theirs, "rb") as y:
                assert x.read() == y.read(), theirs
    return True


def test_every_module_sends_the_slices_while_dar_writes_them(penv, tmp_path, sshd, ftpd, s3d,
                                                           monkeypatch):
    """Several slices (dar_xform cuts them), four remotes at once: each
    slice's upload starts before the archive is made (its "made" event: dar
    has ended and the slices have their final names), every slice reaches
    every remote once, byte for byte, under its final name only, and the
    archive restores from a remote's copy."""
    src = tree(tmp_path, "src", 3 << 20)
    first = "testhost%s-%s.master.1.dar" % (src.replace("/", "-"), TODAY)
    marker = tmp_path / "all-sending"
    held_dar(tmp_path, monkeypatch, marker)
    settings = remotes(penv, tmp_path, sshd, ftpd, s3d)
    partials = [os.path.join(d, first + ".partial") for d in (str(tmp_path / "nas"), sshd.root, ftpd.files_dir)]
    def ready():
        return all(os.path.exists(p) for p in partials) and s3d.uploads_in_progress()
    watcher = threading.Thread(target=mark_when, args=(marker, ready), daemon=True)
    watcher.start()
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem"], FS_TARGETS=[src],
                          FS_SLICE_SIZE="1M", FS_COMPRESSION="zstd", **settings)
    watcher.join()
    assert errors == []
    assert marker.exists()  # every remote had begun slice 1 while dar was held
    local = sorted(os.listdir(penv.backup_dir))
    assert len(local) >= 3 and not any(n.startswith(".packrat-tmp-") for n in local)
    made = [path for _, path in events(ctx, "made")]
    assert sorted(os.path.basename(p) for p in made) == local
    for module in MODULES:
        assert sorted(sent(ctx, module)) == sorted(made), module  # each slice once
        path = os.path.join(penv.backup_dir, first)
        started = [i for i, p in events(ctx, "upload started", module) if p == path]
        made_at = [i for i, p in events(ctx, "made") if p == path]
        assert len(started) == 1 and started[0] < made_at[0], module  # sent while dar wrote it
        theirs = remote_files(module, tmp_path, sshd, ftpd, s3d)
        assert sorted(theirs) == local, module  # no .partial, nothing else
        for name in local:
            with open(os.path.join(penv.backup_dir, name), "rb") as fh:
                assert theirs[name] == fh.read(), (module, name)
    out = tmp_path / "restored"
    out.mkdir()
    restore(str(tmp_path / "nas"), local[0].rsplit(".1.dar", 1)[0], out)
    assert same_tree(src, str(out))


HELD_DAR = """#!/bin/sh
# dar whose archive stops coming after 1.2 MB until MARKER exists (60 s at most)
[ "$1" = -c ] || exec %(dar)s "$@"
%(dar)s "$@" | { head -c 1200000; i=0; while [ ! -e %(marker)s ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat; }
"""


# a Bash backup module that makes one file at once
MAKE_NOW = """  head -c 70000 /dev/urandom > "$BACKUP_DIR/$HOSTNAME-late-$TODAY.bin"
  NEW_BACKUPS="$NEW_BACKUPS $BACKUP_DIR/$HOSTNAME-late-$TODAY.bin\""""


LATE = "testhost-late-%s.bin" % TODAY


def s3_night(penv, tmp_path, s3d, monkeypatch, complete, size, **settings):
    """A night of an archive streamed to S3, then the file of the Bash
    module "late", S3's completion made by ``complete(original, upload)``:
    (ctx, failures, the archive's name)."""
    from pypackrat.upload import s3
    src = tree(tmp_path, "src", size)
    bash_module(penv, "late", MAKE_NOW)
    original = s3._OpenUpload.complete
    monkeypatch.setattr(s3._OpenUpload, "complete", lambda upload: complete(original, upload))
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem", "late"], FS_TARGETS=[src],
                          FS_COMPRESSION="none", UPLOAD_MODULES=["s3"], **s3d.settings(), **settings)
    return ctx, errors, "testhost%s-%s.master.1.dar" % (src.replace("/", "-"), TODAY)


def bucket_holds(penv, s3d, names):
    """The bucket holds ``names``, each byte for byte as made, and no
    multipart upload is left open; {name: bytes}."""
    objects = {key.rsplit("/", 1)[-1]: data for key, data in s3d.objects().items()}
    assert sorted(objects) == sorted(names)
    for name, data in objects.items():
        with open(os.path.join(str(penv.backup_dir), name), "rb") as fh:
            assert fh.read() == data, name
    assert not s3d.client().list_multipart_uploads(Bucket=s3d.bucket).get("Uploads")
    return objects


def test_s3_assembles_a_streamed_archive_while_the_next_file_goes(penv, tmp_path, s3d, monkeypatch):
    """A "threadsafe" remote finishes a streamed archive (S3: completing
    the multipart upload, which takes S3 seconds for a large object, then
    the checks) in a thread of its own, while its worker sends the next
    file. S3's completion here is held until the next file is in the
    bucket: with the archive finished in line, that never happens (the
    hold gives up after 20 s, and the test fails)."""
    held = []

    def slow_complete(original, upload):
        deadline = time.monotonic() + 20
        while LATE not in s3d.names():
            if time.monotonic() > deadline:
                held.append("the next file never came while the archive was being completed")
                break
            time.sleep(0.05)
        return original(upload)

    ctx, errors, archive = s3_night(penv, tmp_path, s3d, monkeypatch, slow_complete, 2 << 20)
    assert errors == [] and held == []
    order = [os.path.basename(p) for _, p in events(ctx, "upload ended", "s3")]
    assert order == [LATE, archive]  # the archive's copy was finished last
    bucket_holds(penv, s3d, [LATE, archive])
    # each part was checked by S3 against its CRC32, as boto3's own upload_file has it
    key, = [k for k in s3d.objects() if k.endswith(archive)]
    head = s3d.client().head_object(Bucket=s3d.bucket, Key=key, ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32"), head


def test_a_completion_that_fails_in_the_background_is_sent_again_whole(penv, tmp_path, s3d, monkeypatch):
    """S3 refuses to complete the streamed archive (in the finishing
    thread, while the worker sends the next file): the open upload is
    aborted, the archive goes again from the final file, and the night
    ends well with both files in the bucket, byte for byte."""
    refused = []

    def refuse_once(original, upload):
        if not refused:
            refused.append(upload.key)
            raise OSError("connection reset while completing")
        return original(upload)

    ctx, errors, archive = s3_night(penv, tmp_path, s3d, monkeypatch, refuse_once, 1 << 20,
                                    UPLOAD_RETRY_WAIT=0)
    assert errors == [] and len(refused) == 1
    objects = bucket_holds(penv, s3d, [archive, LATE])
    assert sorted(os.path.basename(p) for _, p in events(ctx, "upload ended", "s3")) == sorted(objects)


def test_a_stop_while_s3_finishes_in_the_background_aborts_what_is_open(penv, s3d):
    """The run is stopped (SIGTERM: the uploads' cancel) after an archive
    of two slices was streamed to S3 and its finishing was handed to a
    thread of its own: the finishing stops with Cancelled, both multipart
    uploads are aborted, and nothing of the archive is in the bucket."""
    from pypackrat import config, plugins, run, transfer
    from pypackrat.context import Context, Options
    penv.write(UPLOAD_MODULES=["s3"], **s3d.settings())
    ctx = Context(config.load(str(penv.config_path)), Options())
    base = "testhost-stop-%s.master" % TODAY
    g = Growing(str(penv.backup_dir), ".packrat-tmp-%d-%s" % (os.getpid(), base), base)
    for number, size in ((1, 6_000_000), (2, 300_001)):
        with open(g.final_path(number), "wb") as fh:
            fh.write(os.urandom(size))
    g.end(True)
    cancel, deferred = threading.Event(), []
    with run.open_remote(ctx, plugins.resolve(ctx.settings, "s3", "upload")) as remote:
        assert transfer.upload_growing(remote, g, cancel, None, deferred.append) is None
        assert len(s3d.client().list_multipart_uploads(Bucket=s3d.bucket).get("Uploads", [])) == 2
        cancel.set()
        with pytest.raises(transfer.Cancelled):
            deferred[0]()
    assert not s3d.client().list_multipart_uploads(Bucket=s3d.bucket).get("Uploads")
    assert s3d.names() == []


@pytest.mark.fast
def test_a_part_answered_without_its_checksum_is_completed_by_its_etag():
    """An S3-compatible server may take the checksum algorithm and answer
    a part without the checksum: the completion names that part by its
    ETag alone (a KeyError there would fail every streamed archive)."""
    from types import SimpleNamespace
    from pypackrat.upload import s3
    opened = s3._OpenUpload(SimpleNamespace(sse=""), "key", "id", "CRC32")
    opened.part_sent(2, {"ETag": '"b"'})
    opened.part_sent(1, {"ETag": '"a"', "ChecksumCRC32": "AAAAAA=="})
    assert [opened.parts[n] for n in sorted(opened.parts)] == [
        {"PartNumber": 1, "ETag": '"a"', "ChecksumCRC32": "AAAAAA=="}, {"PartNumber": 2, "ETag": '"b"'}]


@pytest.mark.fast
@pytest.mark.parametrize("calculation, algorithm", [("when_supported", "CRC32"), ("when_required", None)])
def test_streamed_parts_carry_a_checksum_where_the_client_computes_them(calculation, algorithm):
    """S3 checks each streamed part against the checksum botocore computes,
    unless the client is set to compute checksums only where required
    (AWS_REQUEST_CHECKSUM_CALCULATION=when_required, for an S3-compatible
    server without them)."""
    import boto3
    from botocore.config import Config
    from pypackrat.upload import s3
    client = boto3.session.Session().client(
        "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", aws_access_key_id="a",
        aws_secret_access_key="b", config=Config(request_checksum_calculation=calculation))
    assert s3._part_checksum(client) == algorithm


def fake_dar(tmp_path, script, marker=None):
    """A ``dar`` (the shell ``script``, around the real one) in a directory of
    its own; returns the PATH that finds it first."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dar").write_text(script % {"dar": shutil.which("dar"), "marker": marker})
    (bindir / "dar").chmod(0o755)
    return "%s:%s" % (bindir, os.environ["PATH"])


def held_dar(tmp_path, monkeypatch, marker):
    monkeypatch.setenv("PATH", fake_dar(tmp_path, HELD_DAR, marker))


def mark_when(marker, ready, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ready():
            marker.touch()
            return
        time.sleep(0.05)


BAD_DAR = """#!/bin/sh
# dar for the targets whose path holds "bad": half an archive, then a failure
case "$*" in
  *bad*) %(dar)s "$@" | { head -c 1500000; i=0; while [ ! -e %(marker)s ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat >/dev/null; }
         echo "dar: simulated failure" >&2; exit 2 ;;
  *) exec %(dar)s "$@" ;;
esac
"""


def test_a_dar_that_fails_mid_archive_leaves_no_copy_and_the_others_are_sent(
        penv, tmp_path, sshd, ftpd, s3d, monkeypatch):
    """Targets good, bad, good2: dar fails on the middle one after the
    uploads have begun sending it. The run reports that backup's failure
    and no upload failure; no remote keeps anything of it (no final name,
    no .partial, no unfinished multipart upload); the other two archives
    are on every remote."""
    marker = tmp_path / "all-sending"
    monkeypatch.setenv("PATH", fake_dar(tmp_path, BAD_DAR, marker))
    good, bad, good2 = (tree(tmp_path, n, 2 << 20) for n in ("good", "bad", "good2"))
    settings = remotes(penv, tmp_path, sshd, ftpd, s3d)
    first = "testhost%s-%s.master.1.dar.partial" % (bad.replace("/", "-"), TODAY)
    partials = [os.path.join(d, first) for d in (str(tmp_path / "nas"), sshd.root, ftpd.files_dir)]
    watcher = threading.Thread(target=mark_when, args=(marker, lambda: all(
        os.path.exists(p) for p in partials) and any("-bad-" in k for k in s3d.uploads_in_progress())),
        daemon=True)
    watcher.start()
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem"], FS_TARGETS=[good, bad, good2],
                          FS_SLICE_SIZE="1M", FS_COMPRESSION="none", **settings)
    watcher.join()
    assert marker.exists()  # every remote was sending the bad archive when dar failed
    assert len(errors) == 1 and "backup of %s failed" % bad in errors[0], errors
    assert "simulated failure" in errors[0] and "inode" not in errors[0]  # not dar's statistics
    local = sorted(os.listdir(penv.backup_dir))
    assert local and not any("-bad-" in n or n.startswith(".packrat-tmp-") for n in local), local
    for module in MODULES:
        started = [p for _, p in events(ctx, "upload started", module)]
        assert any("-bad-" in p for p in started), module  # it was being sent when dar failed
        assert sorted(remote_files(module, tmp_path, sshd, ftpd, s3d)) == local, module
        assert sorted(os.path.basename(p) for p in sent(ctx, module)) == local, module
    assert s3d.uploads_in_progress() == []


SLOW_DAR = """#!/bin/sh
# dar whose archive stops coming after 1.5 MB, for a long while
[ "$1" = -c ] || exec %(dar)s "$@"
%(dar)s "$@" | { head -c 1500000; sleep 300; cat; }
"""


def test_sigterm_while_dar_writes_removes_every_temporary_copy(penv, tmp_path, sshd, ftpd, s3d):
    """SIGTERM while the slices are being sent and dar is still writing:
    packrat exits 143 and mails once; nothing is left under a temporary or
    final name, locally or on any remote, and no multipart upload is open."""
    path = fake_dar(tmp_path, SLOW_DAR)
    src = tree(tmp_path, "src", 3 << 20)
    settings = remotes(penv, tmp_path, sshd, ftpd, s3d)
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[src], FS_SLICE_SIZE="1M", FS_COMPRESSION="none",
               **settings)
    partial = os.path.join(sshd.root, "testhost%s-%s.master.1.dar.partial" % (src.replace("/", "-"), TODAY))
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PACKRAT_DATE=TODAY, PATH=path))
    out, err = sigterm_when(proc, lambda: os.path.exists(partial) and os.path.getsize(partial) > 0,
                            wait=90)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert len(penv.mails()) == 1 and "stopped (SIGTERM)" in penv.smtp.bodies()[0]
    assert os.listdir(penv.backup_dir) == []
    for module in MODULES:
        assert remote_files(module, tmp_path, sshd, ftpd, s3d) == {}, module
    assert s3d.uploads_in_progress() == []


# -- the reader, alone (no server) -------------------------------------------------

def _writer(path, blocks, pause):
    with open(path, "wb", buffering=0) as fh:
        for block in blocks:
            fh.write(block)
            time.sleep(pause)


@pytest.mark.fast
def test_a_reader_waits_for_the_growing_slice_and_ends_with_it(tmp_path):
    blocks = [os.urandom(70000) for _ in range(8)]
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    writer = threading.Thread(target=_writer, args=(g.temp_path(1), blocks, 0.02))
    writer.start()
    while not g.exists(1):
        time.sleep(0.01)
    got = []
    with Reader(g, 1, lambda: None) as reader:
        def finish():
            writer.join()
            os.replace(g.temp_path(1), g.final_path(1))
            g.end(True)
        threading.Thread(target=finish).start()
        for data in iter(lambda: reader.read(50000), b""):
            got.append(data)
        assert reader.digest() == g.final_digest(1)
    assert b"".join(got) == b"".join(blocks)
    assert list(g.slice_numbers(lambda: None)) == [1]


@pytest.mark.fast
def test_a_slice_is_whole_once_the_next_one_is_begun(tmp_path):
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    with open(g.temp_path(1), "wb") as fh:
        fh.write(b"x" * 1000)
    assert not g.whole(1)
    with Reader(g, 1, lambda: None) as reader:
        assert reader.read(4096) == b"x" * 1000
        open(g.temp_path(2), "wb").close()
        assert reader.read(4096) == b""  # slice 2 is begun: slice 1 grows no more


@pytest.mark.fast
def test_a_reader_of_an_archive_dar_failed_to_make_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(growing_mod, "POLL", 0.01)
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    with open(g.temp_path(1), "wb") as fh:
        fh.write(b"y" * 100)
    with Reader(g, 1, lambda: None) as reader:
        assert reader.read(4096) == b"y" * 100
        threading.Timer(0.1, g.end, (False,)).start()
        with pytest.raises(Abandoned):
            reader.read(4096)
    os.unlink(g.temp_path(1))
    with pytest.raises(Abandoned):
        list(g.slice_numbers(lambda: None))


@pytest.mark.fast
def test_a_waiting_reader_asks_whether_the_run_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(growing_mod, "POLL", 0.01)
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    open(g.temp_path(1), "wb").close()

    class Stop(Exception):
        pass

    asked = []

    def stopped():
        asked.append(1)
        if len(asked) > 3:
            raise Stop()

    with Reader(g, 1, stopped) as reader, pytest.raises(Stop):
        reader.read(10)


@pytest.mark.fast
def test_a_planted_link_at_the_temporary_name_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    os.symlink(str(secret), g.temp_path(1))
    with pytest.raises(OSError):
        Reader(g, 1, lambda: None)


@pytest.mark.fast
def test_an_older_archive_under_the_final_names_is_not_this_one(tmp_path, monkeypatch):
    """A second run the same day: the first run's slices hold the final
    names while dar writes the new ones. Before, slice 1 counted as begun at
    once, the reader read the old file, and slice 2's old copy made slice 1
    whole: every upload sent the old archive, then sent it again."""
    monkeypatch.setattr(growing_mod, "POLL", 0.01)
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    for number in (1, 2):
        with open(g.final_path(number), "wb") as fh:
            fh.write(b"old" * 1000)
    numbers = g.slice_numbers(lambda: None)
    first = []
    threading.Thread(target=lambda: first.append(next(numbers))).start()
    time.sleep(0.1)
    assert first == [] and not g.exists(1) and not g.exists(2)
    with open(g.temp_path(1), "wb") as fh:
        fh.write(b"new" * 500)
    deadline = time.monotonic() + 5
    while not first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first == [1]
    with Reader(g, 1, lambda: None) as reader:
        assert reader.read(10000) == b"new" * 500
        assert not g.whole(1)  # the old slice 2 says nothing of this archive
        os.replace(g.temp_path(1), g.final_path(1))
        g.end(True)
        assert reader.read(10000) == b""
        assert reader.digest() == g.final_digest(1)
    assert g.exists(2)  # once ended well, the final names are this archive's


@pytest.mark.fast
def test_a_planted_fifo_is_never_read(tmp_path, monkeypatch):
    """A FIFO at the temporary name is refused at once (opening it would
    wait for a writer, or read the planter's endless bytes); one at a final
    name is not this archive's while dar writes."""
    monkeypatch.setattr(growing_mod, "POLL", 0.01)
    g = Growing(str(tmp_path), ".packrat-tmp-1-a", "a")
    os.mkfifo(g.temp_path(1))
    with pytest.raises(OSError, match="not a plain file"):
        Reader(g, 1, lambda: None)
    os.unlink(g.temp_path(1))
    os.mkfifo(g.final_path(2))
    with open(g.temp_path(1), "wb") as fh:
        fh.write(b"z" * 10)
    assert not g.exists(2) and not g.whole(1)


def test_an_encrypted_chain_sent_while_written_restores_from_the_remote(penv, tmp_path):
    """ENCRYPTION_KEY, a master then an incremental, both made through
    dar_xform and sent while written: the remote's copies restore, in
    chain order, to the tree of the second day, byte for byte."""
    key = "streamed-" + os.urandom(8).hex()
    src = tree(tmp_path, "src", 1 << 20)
    nas = tmp_path / "nas"
    nas.mkdir()
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[src], FS_SLICE_SIZE="300k", FS_COMPRESSION="zstd",
               ENCRYPTION_KEY=key, UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    first = penv.run("-v", date="20261126", check=0)
    assert "send the archive while dar writes it" in first.stdout + first.stderr
    with open(os.path.join(src, "big.bin"), "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(5000))
    (tmp_path / "src" / "sub" / "new.txt").write_text("day two\n")
    penv.run(date="20261127", check=0)
    names = sorted(os.listdir(str(nas)))
    assert names == sorted(os.listdir(penv.backup_dir))
    prefix = "testhost%s-" % src.replace("/", "-")
    assert any(n.startswith(prefix + "20261127.") for n in names) and \
        any(n.startswith(prefix + "20261126.master.") for n in names)
    dcf = tmp_path / "key.dcf"
    dcf.write_text("-K aes256:%s\n" % key)
    out = tmp_path / "restored"
    out.mkdir()
    for base in (prefix + "20261126.master", prefix + "20261127"):
        subprocess.run(["dar", "-x", os.path.join(str(nas), base), "-R", str(out), "-B", str(dcf), "-Q",
                        "-O", "-w"], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    assert same_tree(src, str(out)) and (out / "sub" / "new.txt").read_text() == "day two\n"
    unkeyed = subprocess.run(["dar", "-t", os.path.join(str(nas), prefix + "20261127"), "-Q"],
                             stdin=subprocess.DEVNULL, capture_output=True)
    assert unkeyed.returncode != 0  # it really is encrypted


def _memfds(pid):
    """The memory files (memfd) among the open descriptors of ``pid``."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/memfd:"):
                out.append(fd)
        except OSError:
            pass
    return out


def test_the_key_goes_to_dar_alone_not_to_dar_xform(penv, tmp_path, monkeypatch):
    """ENCRYPTION_KEY reaches dar through a memory file it is handed; while
    the archive is being made (held mid-stream), dar_xform, which cuts the
    stream into slices and never needs the key, holds no memory file."""
    from tests.conftest import processes
    marker = tmp_path / "looked"
    held_dar(tmp_path, monkeypatch, marker)
    src = tree(tmp_path, "src", 3 << 20)
    nas = tmp_path / "nas"
    nas.mkdir()
    seen = {}

    def look():
        xform = processes(lambda argv: os.path.basename(argv[0]) == b"dar_xform" and str(penv.backup_dir).encode()
                          in b" ".join(argv), alive=True)
        dar = processes(lambda argv: os.path.basename(argv[0]) == b"dar" and src.encode() in argv, alive=True)
        if xform and dar:
            seen["xform"] = [fd for pid in xform for fd in _memfds(pid)]
            seen["dar"] = [fd for pid in dar for fd in _memfds(pid)]
            return True
        return False

    watcher = threading.Thread(target=mark_when, args=(marker, look), daemon=True)
    watcher.start()
    ctx, errors = nightly(penv, monkeypatch, BACKUP_MODULES=["filesystem"], FS_TARGETS=[src],
                          FS_SLICE_SIZE="1M", FS_COMPRESSION="none", ENCRYPTION_KEY="k-" + os.urandom(8).hex(),
                          UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    watcher.join()
    assert errors == [] and marker.exists()
    assert seen["dar"] and seen["xform"] == [], seen
