"""packrat verify where it crashed or half-worked: --sample on an encrypted
chain made by the real dar, runs dated after the run's date, a plain archive
planted where ENCRYPTION_KEY is set, and a flipped byte in a multipart S3
object (on the test S3 server), caught by verify and by the upload's own
check."""
import os
import shutil

from tests.archives import HOST, KEY, archive_prefix, flip_byte, use
from tests.archives import blowfish_week, plain_week  # noqa: F401
from tests.servers.s3 import s3_server, s3d  # noqa: F401

MiB = 1 << 20


def days_of(directory):
    return sorted({n.rsplit("-", 1)[1][:8] for n in os.listdir(directory) if n.endswith(".dar")})


def test_sample_on_an_encrypted_chain(penv, blowfish_week):
    """dar prints its warning about encryption on stdout before the XML of
    ``dar -l -Txml``: the README's cron line (verify --sample) reads past it."""
    src, snaps = use(penv, blowfish_week, KEY)
    proc = penv.run("-v", "verify", "--sample", "5", check=0)
    assert "Traceback" not in proc.stderr and "ParseError" not in proc.stderr
    assert "restoring 5 sample file(s) of %s" % src in proc.stdout
    assert "all good: 2 archive(s) tested" in proc.stdout
    assert KEY not in proc.stdout + proc.stderr
    # and a sample still catches a live file that differs, unchanged in time
    live = os.path.join(src, "sub", "e.txt")
    st = os.stat(live)
    original = open(live, "rb").read()
    try:
        with open(live, "wb") as fh:
            fh.write(original.upper())
        os.utime(live, (st.st_atime, st.st_mtime))
        proc = penv.run("verify", "--sample", "50", check=1)
        assert "%s: the copy restored from" % live in proc.stderr
    finally:
        with open(live, "wb") as fh:
            fh.write(original)
        os.utime(live, (st.st_atime, st.st_mtime))


def test_runs_dated_after_today_are_not_the_newest(penv, plain_week):
    """A chain planted with a date after the run's date (PACKRAT_DATE here):
    verify without -d takes the newest run up to today, says what it passed
    over, and verifies the planted one only when -d names it."""
    src, snaps = use(penv, plain_week)
    newest = days_of(penv.backup_dir)[-1]
    future = "20991231"
    for name in os.listdir(penv.backup_dir):
        if newest in name:  # a copy of the newest incremental, dated 2099
            shutil.copy(penv.backup_dir / name, penv.backup_dir / name.replace(newest, future))
    proc = penv.run("verify", date="20250101", check=0)
    assert "verify %s: all good" % newest in proc.stdout
    assert "dated after today (20250101), not verified without -d" in proc.stdout
    assert "%s-%s" % (archive_prefix(HOST, src), future) in proc.stdout
    proc = penv.run("verify", "-d", future, date="20250101", check=0)
    assert "verify %s: all good" % future in proc.stdout
    # list names them as a problem
    out = penv.run("list", date="20250101", check=0).stdout
    assert "dated after today (20250101)" in out
    # only future runs: nothing to verify, clearly
    for name in os.listdir(penv.backup_dir):
        if future not in name:
            os.unlink(penv.backup_dir / name)
    proc = penv.run("verify", date="20250101", check=1)
    assert "nothing to verify: no archive or dump of %s dated up to 20250101" % HOST in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_plain_archive_is_refused_when_a_key_is_set(penv, plain_week):
    """With ENCRYPTION_KEY set, packrat makes encrypted archives only: a
    plain one (here a whole plain chain, as an attacker with write access to
    BACKUP_DIR or a remote would plant it) is a failure, not a good backup."""
    src, snaps = use(penv, plain_week)
    penv.settings["ENCRYPTION_KEY"] = KEY
    proc = penv.run("verify", check=1)
    assert "is not encrypted, but ENCRYPTION_KEY is set: refused" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert KEY not in proc.stderr + "".join(penv.smtp.bodies())


def test_wrong_key_is_named(penv, blowfish_week):
    src, snaps = use(penv, blowfish_week, KEY)
    penv.settings["ENCRYPTION_KEY"] = "not the right one"
    proc = penv.run("verify", check=1)
    assert "ENCRYPTION_KEY or cipher?" in proc.stderr
    assert "Traceback" not in proc.stderr


def _big_dump(penv, day, size):
    """A zstd 'dump' of incompressible bytes, ``size`` bytes or a little more."""
    import subprocess
    name = "%s-mysql-big-%s.sql.zst" % (HOST, day)
    data = subprocess.run(["zstd", "-q", "-c", "-1"], input=os.urandom(size), capture_output=True,
                          check=True).stdout
    (penv.backup_dir / name).write_bytes(data)
    return name


def test_flipped_byte_in_a_multipart_s3_object(penv, s3d):
    """An archive over 8 MiB goes up in parts; its ETag is no MD5 of the
    file. One flipped byte, same size, same ETag on the server: verify
    computes the multipart ETag of the local file and catches it; so does
    the upload's own check."""
    from pypackrat import transfer
    from pypackrat.upload import s3
    day = "20240301"
    name = _big_dump(penv, day, 9 * MiB)
    penv.settings.update(UPLOAD_MODULES=["s3"], **s3d.settings())
    penv.run("-U", day, date=day, check=0)
    key = "%s/%s" % (s3d.prefix, name)
    stored = s3d._backend().buckets[s3d.bucket].keys[key]
    etag = stored.etag.strip('"')
    assert etag.endswith("-2"), etag  # two parts: a multipart object
    assert s3.multipart_etag(str(penv.backup_dir / name), s3.part_size(os.path.getsize(
        penv.backup_dir / name))) == etag
    proc = penv.run("verify", date=day, check=0)
    assert "1 remote copy compared" in proc.stdout
    # the object replaced by an upload in the same parts of a copy with one
    # byte flipped: the same size, an ETag that is no MD5 either
    flipped = penv.backup_dir.parent / "flipped"
    shutil.copy(penv.backup_dir / name, flipped)
    flip_byte(flipped)
    from boto3.s3.transfer import TransferConfig
    size = os.path.getsize(flipped)
    s3d.client().upload_file(str(flipped), s3d.bucket, key, Config=TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=s3.part_size(size)))
    stored = s3d._backend().buckets[s3d.bucket].keys[key]
    assert stored.etag.strip('"') != etag and stored.etag.endswith('-2"')
    assert len(stored.value) == size
    proc = penv.run("verify", date=day, check=1)
    assert "%s: the copy on s3 differs from the local file (S3 multipart ETag" % name in proc.stderr
    # the upload's own verification uses the same checksum
    import types
    from pypackrat import config
    ctx = types.SimpleNamespace(settings=config.load(str(penv.write())), dry_run=False)
    remote = s3.Remote(ctx)
    remote.open()
    try:
        try:
            transfer.verify(remote, str(penv.backup_dir / name), name)
        except transfer.VerifyError as exc:
            assert "differs from the local file" in str(exc)
        else:
            raise AssertionError("the upload's check passed a flipped byte")
        # a file cut in other parts (another tool's upload, 5 MiB parts) is read right
        other = penv.backup_dir / "other.bin"
        shutil.copy(penv.backup_dir / name, other)
        from boto3.s3.transfer import TransferConfig
        s3d.client().upload_file(str(other), s3d.bucket, "%s/other.bin" % s3d.prefix,
                                 Config=TransferConfig(multipart_threshold=5 * MiB,
                                                       multipart_chunksize=5 * MiB))
        algorithm, value = remote.checksum("other.bin")
        assert value.endswith("-2") and algorithm.part == 5 * MiB
        transfer.verify(remote, str(other), "other.bin")
    finally:
        remote.close()
