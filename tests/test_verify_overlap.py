"""An S3 upload's check by digest costs no time after the put: the local
digest the ETag will be compared with (an MD5, or the multipart ETag in the
put's part size) is computed in a thread of its own while the put runs
(transfer._Digesting, s3.Remote.upload_checksum), once per file, and a
remote copy that differs is still refused."""
import os
import threading

import pytest

from pypackrat import config, plugins, run, transfer
from pypackrat.context import Context, Options
from tests.servers.s3 import s3_server, s3d  # noqa: F401


def s3_remote(penv, s3d, **over):
    penv.write(UPLOAD_MODULES=["s3"], UPLOAD_RETRIES=0, **s3d.settings(**over))
    ctx = Context(config.load(str(penv.config_path)), Options())
    return run.open_remote(ctx, plugins.resolve(ctx.settings, "s3", "upload"))


def digests_by_thread(monkeypatch):
    """Record the thread of every local digest computed."""
    threads = []
    compute = transfer.file_digest

    def recorded(source, algorithm):
        if isinstance(source, str):  # the whole file (not the per-part recursion)
            threads.append(threading.current_thread().name)
        return compute(source, algorithm)
    monkeypatch.setattr(transfer, "file_digest", recorded)
    return threads


@pytest.mark.parametrize("size", [3 << 20, (9 << 20) + 12345])  # one part; two parts of 8 MiB
def test_the_local_digest_is_computed_beside_the_put(penv, s3d, tmp_path, monkeypatch, size):
    path = tmp_path / "testhost-home-20261126.master.1.dar"
    path.write_bytes(os.urandom(size))
    threads = digests_by_thread(monkeypatch)
    with s3_remote(penv, s3d) as remote:
        transfer.upload(remote, str(path))
        algorithm, _ = remote.checksum(path.name)
    assert str(algorithm) == ("md5" if size < 8 << 20 else "S3 multipart ETag, 8388608-byte parts")
    assert threads == ["packrat-digest"]  # once, beside the put; not again after it
    assert s3d.objects()[s3d.prefix + "/" + path.name] == path.read_bytes()


def test_a_copy_that_differs_is_still_refused(penv, s3d, tmp_path, monkeypatch):
    path = tmp_path / "testhost-home-20261126.master.1.dar"
    path.write_bytes(os.urandom((9 << 20) + 5))
    other = tmp_path / "other"
    other.write_bytes(os.urandom((9 << 20) + 5))  # same size, other bytes: only the digest tells
    with s3_remote(penv, s3d) as remote:
        put = type(remote).put
        monkeypatch.setattr(type(remote), "put", lambda self, local, name, progress=None:
                            put(self, str(other), name, progress))
        with pytest.raises(transfer.VerifyError, match="differs from the local file"):
            transfer.upload(remote, str(path))
    assert s3d.objects() == {}  # the object that failed the check is removed


def test_no_digest_is_expected_under_kms(penv, s3d):
    """An ETag under KMS is no digest of the data: nothing is computed ahead."""
    remote = s3_remote(penv, s3d, S3_SSE="aws:kms")
    assert remote.upload_checksum(__file__) is None
