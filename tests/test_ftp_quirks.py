"""An FTP server without MLSD, as vsftpd is (issue 12): listings come from
LIST, and a directory named like an archive is not an archive: it is not
listed, so no purge tries to delete it (before, every purge reported it
"already gone"). The test server is the fixture's pyftpdlib with MLSD and
MLST taken out of its command table for the test."""
import datetime
import os

import pytest

from pypackrat import config, plugins, run, transfer
from pypackrat.context import Context, Options
from tests.servers.ftp import ftp_server, ftpd  # noqa: F401

TODAY = datetime.date(2026, 11, 26)


def day(n):
    return (TODAY - datetime.timedelta(days=n)).strftime("%Y%m%d")


@pytest.fixture
def vsftpd_like(ftpd, monkeypatch):
    """The test server without MLSD/MLST."""
    handler = ftpd.server.handler
    monkeypatch.setattr(handler, "proto_cmds",
                        {k: v for k, v in handler.proto_cmds.items() if k not in ("MLSD", "MLST")})
    return ftpd


def settings(server):
    return dict(server.settings(), UPLOAD_MODULES=["ftp"], BACKUP_MODULES=["filesystem"], FS_TARGETS=["/etc"])


def test_listing_without_mlsd_has_only_plain_files(penv, vsftpd_like):
    home = vsftpd_like.files_dir
    files = ["testhost-etc-%s.master.1.dar" % day(40), "testhost-etc-%s.master.1.dar" % day(2),
             "name with  spaces -> and arrow.dar", "-rw-r--r-- 1 0 0 5 Nov 29 2020 x.dar"]
    for name in files:
        with open(os.path.join(home, name), "wb") as fh:
            fh.write(b"data")
    os.mkdir(os.path.join(home, "testhost-etc-%s.master.1.dar" % day(30)))
    os.symlink(files[0], os.path.join(home, "testhost-etc-%s.master.1.dar" % day(20)))
    penv.write(**settings(vsftpd_like))
    ctx = Context(config.load(str(penv.config_path)), Options())
    with run.open_remote(ctx, plugins.resolve(ctx.settings, "ftp", "upload")) as remote:
        listed = transfer.listing(remote)
        assert remote._mlsd is False  # LIST was used
    assert listed == sorted(files)


def test_directory_named_like_an_archive_is_never_purged(penv, vsftpd_like):
    home = vsftpd_like.files_dir
    old, new = ("testhost-etc-%s.master.1.dar" % day(d) for d in (40, 2))
    directory = "testhost-etc-%s.master.1.dar" % day(30)
    for name in (old, new):
        with open(os.path.join(home, name), "wb") as fh:
            fh.write(b"data")
    os.mkdir(os.path.join(home, directory))
    penv.write(**settings(vsftpd_like))
    for attempt in range(2):
        proc = penv.run("-v", "-P", date=day(0), check=0)
        output = proc.stdout + proc.stderr
        assert "already gone" not in output
        assert directory not in output
        assert sorted(os.listdir(home)) == sorted([new, directory]), output
        assert os.path.isdir(os.path.join(home, directory))
    assert penv.mails() == []
