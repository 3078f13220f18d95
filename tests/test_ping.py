"""PING_URL (issue #14): a real HTTP server on 127.0.0.1 records the pings
of real packrat runs: /start, then the URL itself or /fail with the log's
tail. A server that is down or hangs is a warning, never a failed backup;
the URL (its UUID lets anyone ping) is never shown."""
import http.server
import socket
import threading
import time

import pytest

from tests.archives import day, touch
from tests.servers import free_port

UUID = "5b3c1f9e-0d2a-4c57-9a51-2f6e8a1d7c44"


class Recorder:
    def __init__(self, status=200, hang=False):
        self.requests = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append((self.command, self.path, body))
                if hang:
                    time.sleep(30)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/ping/%s" % (self.port, UUID)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self):
        return [path for _, path, _ in self.requests]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.stop()


def backup(penv, tmp_path, **settings):
    src = tmp_path / "src"
    touch(src / "a.txt", b"ping")
    penv.write(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], **settings)


def test_success_pings_start_then_the_url(penv, tmp_path, recorder):
    backup(penv, tmp_path, PING_URL=recorder.url)
    proc = penv.run("-v", date=day(0), check=0)
    assert recorder.paths() == ["/ping/%s/start" % UUID, "/ping/%s" % UUID]
    assert UUID not in proc.stdout + proc.stderr
    assert "Pinged PING_URL" in proc.stdout


def test_failure_pings_fail_with_the_log_tail_masked(penv, tmp_path, recorder, smtp):
    penv.write(PING_URL=recorder.url, ENCRYPTION_KEY="ping-secret-99", UPLOAD_MODULES=["local"],
               LOCAL_DIR=str(tmp_path / "ping-secret-99-nowhere"))
    touch(penv.backup_dir / ("testhost-etc-%s.1.dar" % day(0)))
    proc = penv.run("-U", day(0), date=day(0), check=1)
    assert recorder.paths() == ["/ping/%s/start" % UUID, "/ping/%s/fail" % UUID]
    body = recorder.requests[-1][2].decode()
    assert "nowhere" in body and "****" in body
    assert "ping-secret-99" not in body and UUID not in body
    assert UUID not in proc.stdout + proc.stderr + "".join(smtp.bodies())


def test_a_server_that_is_down_is_a_warning(penv, tmp_path):
    port = free_port()  # nobody listens there
    url = "http://127.0.0.1:%d/%s" % (port, UUID)
    backup(penv, tmp_path, PING_URL=url)
    started = time.monotonic()
    proc = penv.run(date=day(0), check=0)
    assert time.monotonic() - started < 30
    assert "could not ping PING_URL (start)" in proc.stderr
    assert "the backup is not affected" in proc.stderr
    assert UUID not in proc.stdout + proc.stderr
    assert any(day(0) in p.name for p in penv.backup_dir.iterdir())


def test_a_server_that_hangs_is_bounded_in_time(penv, tmp_path):
    server = Recorder(hang=True)
    try:
        backup(penv, tmp_path, PING_URL=server.url)
        started = time.monotonic()
        proc = penv.run(date=day(0), env={"PACKRAT_PING_TIMEOUT": "0.5"}, check=0)
        assert time.monotonic() - started < 20
        assert "PING_URL (start)" in proc.stderr and "not affected" in proc.stderr
        assert any(day(0) in p.name for p in penv.backup_dir.iterdir())
    finally:
        server.stop()


def test_an_error_answer_is_a_warning(penv, tmp_path):
    server = Recorder(status=404)
    try:
        backup(penv, tmp_path, PING_URL=server.url)
        proc = penv.run(date=day(0), check=0)
        assert "answered HTTP 404" in proc.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("url, why", [
    ("ftp://example.org/" + UUID, "must start with http"),
    ("http://user:pw-" + UUID + "@127.0.0.1/x", "user name or password"),
    ("http://127.0.0.1/x\n" + UUID, "control character"),
    ("http:///" + UUID, "has no host"),
])
def test_a_bad_url_fails_the_run_and_is_never_shown(penv, tmp_path, smtp, url, why):
    backup(penv, tmp_path, PING_URL=url)
    proc = penv.run(date=day(0), check=1)
    assert "packrat.conf: PING_URL " in proc.stderr and why in proc.stderr
    assert UUID not in proc.stdout + proc.stderr + "".join(smtp.bodies())
    assert any(day(0) in p.name for p in penv.backup_dir.iterdir())  # the backup still ran
    check = penv.run("check", check=0)  # check warns of it beforehand, the URL unshown
    assert "packrat.conf: PING_URL " in check.stderr and why in check.stderr
    assert UUID not in check.stdout + check.stderr


def test_dry_run_does_not_ping(penv, tmp_path, recorder):
    backup(penv, tmp_path, PING_URL=recorder.url)
    proc = penv.run("-n", date=day(0), check=0)
    assert recorder.requests == []
    assert "[dry run] would ping PING_URL (start)" in proc.stdout


def test_check_does_not_show_the_url(penv, tmp_path, recorder):
    backup(penv, tmp_path, PING_URL=recorder.url)
    proc = penv.run("check")
    assert "PING_URL" in proc.stdout + proc.stderr
    assert UUID not in proc.stdout + proc.stderr


@pytest.mark.fast
@pytest.mark.parametrize("url, suffix, expected", [
    ("https://hc-ping.com/" + UUID, "start", "https://hc-ping.com/%s/start" % UUID),
    ("https://hc-ping.com/" + UUID + "/", "fail", "https://hc-ping.com/%s/fail" % UUID),
    ("https://hc.example/ping/key/slug?create=1", "start", "https://hc.example/ping/key/slug/start?create=1"),
    ("https://hc-ping.com/" + UUID, "", "https://hc-ping.com/" + UUID),
])
def test_ping_urls(url, suffix, expected):
    from pypackrat import monitor
    assert monitor.ping_problem(url) is None
    assert monitor.ping_url(url, suffix) == expected


@pytest.mark.fast
@pytest.mark.parametrize("url", ["file:///etc/passwd", "https://a@b/", "https://host:99999/",
                                 "https://ho st/", "http://h/x\udcff", "//host/x", "https://h/#frag"])
def test_unusable_ping_urls(url):
    from pypackrat import monitor
    assert monitor.ping_problem(url)
