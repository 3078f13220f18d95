"""SIGTERM while an overlapped upload crawls over a slow link (issue 15): a
real packrat process, its upload so slow that finishing the file would
outlast the 60 s the run gives its upload workers once stopped. The
transfer must stop within the file and leave nothing behind: no temporary
file on the server (FTP's NAME.partial), no object and no unfinished
multipart upload in the bucket (S3), nothing temporary in BACKUP_DIR; the
archive stays, one mail says the run was stopped. On a run that waited for
the transfer instead, the worker would be abandoned with its copy half
sent: the checks of what is left fail, whatever the timing."""
import os
import subprocess

from tests.conftest import PACKRAT
from tests.servers.ftp import ftp_server, ftpd  # noqa: F401
from tests.servers.s3 import s3_server, s3d  # noqa: F401
from tests.test_overlap import TODAY, bash_module, first_slice, sigterm_when, source


def stopped_mid_transfer(penv, one, under_way, **settings):
    """Back up ``one`` (a source directory) while a Bash backup module after
    it sleeps, upload as configured by ``settings``; SIGTERM once
    ``under_way()``. Checks what every stopped run must show; returns the
    process's stderr."""
    # the SIGTERM comes once the backups wait in this module: it is the
    # upload's stop that is tested, not the step from one module to the next
    mark = penv.tmp / "slow-started"
    bash_module(penv, "slow", '  : > "$SLOW_MARK"\n  sleep 300 &\n  wait')
    penv.write(BACKUP_MODULES=["filesystem", "slow"], FS_TARGETS=[one], FS_COMPRESSION="none",
               SLOW_MARK=str(mark), **settings)
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PACKRAT_DATE=TODAY))
    # longer than the run's 60 s for its workers
    out, err = sigterm_when(proc, lambda: mark.exists() and under_way(), wait=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert len(penv.mails()) == 1 and "stopped (SIGTERM)" in penv.smtp.bodies()[0]
    # the archive stays, nothing temporary beside it
    assert sorted(os.listdir(penv.backup_dir)) == [first_slice(one)]
    return err


def test_sigterm_stops_an_ftp_upload_mid_file_and_removes_the_partial_on_the_server(
        penv, tmp_path, ftpd):
    """The server reads 8 KiB a second: the 8 MiB file would take minutes,
    and the client's socket buffer alone (megabytes on loopback) minutes to
    drain. The upload's writes wait a second at most, then look at the stop:
    the transfer is reset, its .partial deleted over a new session."""
    one = source(tmp_path, "one", 8 << 20)
    partial = os.path.join(ftpd.files_dir, first_slice(one) + ".partial")
    ftpd.read_limit = 8 << 10

    def under_way():
        return os.path.exists(partial) and os.path.getsize(partial) > 0

    stopped_mid_transfer(penv, one, under_way, UPLOAD_MODULES=["ftp"], **ftpd.settings())
    assert os.listdir(ftpd.files_dir) == []


def test_sigterm_stops_an_s3_multipart_upload_mid_part_and_aborts_it(penv, tmp_path, s3d):
    """9 MiB, two parts in flight over a 64 KiB/s link (about 150 s to send).
    boto3's part threads, which report the progress, fail at their next read
    of the body; s3transfer aborts the multipart upload."""
    one = source(tmp_path, "one", 9 << 20)
    with s3d.slow_link(64 << 10, mss=1460, buffer=16 << 10) as (proxy, url):
        def under_way():
            return proxy.carried > 128 << 10 and s3d.uploads_in_progress()

        stopped_mid_transfer(penv, one, under_way, UPLOAD_MODULES=["s3"],
                             **s3d.settings(S3_ENDPOINT_URL=url))
    assert s3d.uploads_in_progress() == []
    assert s3d.objects() == {}
