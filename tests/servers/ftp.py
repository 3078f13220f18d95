"""An FTP server (pyftpdlib) on 127.0.0.1 on a free port with a temporary
home, plain or with explicit TLS (a self-signed certificate made with the
openssl CLI). It runs in a thread of the test process, so a test can count
the logins and cut every open connection.

Fixtures: ``ftp_server`` / ``ftps_server`` (one per test module) and
``ftpd`` / ``ftpsd`` (per test: home emptied, counters reset).

Run as a program (``python3 -m tests.servers.ftp HOME PORT USER PASS``) it
serves in the foreground, for the benchmarks.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tests.servers import empty_dir, free_port, serve, wait_for_port

USER, PASSWORD = "packrat", "s3cret-ftp"
HASH_FEATURE = "SHA-256*;MD5"


def make_cert(directory, name="127.0.0.1"):
    """A self-signed certificate and key for ``name`` (openssl CLI)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % name, "-addext", "subjectAltName=IP:%s" % name,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


class FtpServer:
    host = "127.0.0.1"
    user, password = USER, PASSWORD

    def __init__(self, tls=False):
        self.tls = tls
        self.dir = tempfile.mkdtemp(prefix="packrat-ftpd-")
        self.root = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(self.root, "backups"))
        self.remote_dir = "/backups"  # FTP_DIR
        self.port = free_port()
        self.logins = 0
        self.handlers = []
        self.lock = threading.Lock()
        self.cert = self.key = None
        self._stop = threading.Event()
        self.paused = threading.Event()  # set: the server reads nothing (a stalled server)
        self.read_limit = 0  # bytes a second each upload is read at (pyftpdlib's throttling); 0: no limit
        # the HASH command (draft-bryan-ftpext-hash, as FileZilla Server and
        # ProFTPD's mod_digest have it), listed by FEAT; None: no HASH at all
        self.hash_feature = HASH_FEATURE
        self.hashes = 0  # HASH commands answered

    @property
    def files_dir(self):
        return os.path.join(self.root, "backups")

    def _server(self):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.servers import FTPServer

        if self.tls:
            from pyftpdlib.handlers import TLS_FTPHandler as Base
        else:
            from pyftpdlib.handlers import FTPHandler as Base
        owner = self

        from pyftpdlib.handlers import ThrottledDTPHandler

        class Throttled(ThrottledDTPHandler):  # plain FTP only
            @property
            def read_limit(self):
                return owner.read_limit

        class Handler(Base):
            proto_cmds = dict(Base.proto_cmds, HASH=dict(
                perm=None, auth=True, arg=True, help="Syntax: HASH <SP> file-name (digest of a file)."))

            @property
            def dtp_handler(self):  # a slow link, where read_limit is set
                return Throttled if owner.read_limit and not owner.tls else Base.dtp_handler

            def on_login(self, username):
                with owner.lock:
                    owner.logins += 1
                    owner.handlers.append(self)

            def ftp_FEAT(self, line):
                self._extra_feats = [f for f in self._extra_feats if not f.startswith("HASH ")]
                if owner.hash_feature:
                    self._extra_feats.append("HASH " + owner.hash_feature)
                return super().ftp_FEAT(line)

            def ftp_OPTS(self, line):
                words = line.split(" ", 1)
                if words[0].upper() == "HASH" and owner.hash_feature and len(words) == 2:
                    if words[1].upper() in owner.hash_names()[0]:
                        self._hash_name = words[1].upper()
                        self.respond("200 " + self._hash_name)
                    else:
                        self.respond("501 Unknown algorithm.")
                    return
                return super().ftp_OPTS(line)

            def ftp_HASH(self, line):
                if not owner.hash_feature:
                    self.respond('500 Command "HASH" not understood.')
                    return
                path = self.fs.ftp2fs(line)
                if not self.fs.isfile(self.fs.realpath(path)):
                    self.respond("550 %s is not a file." % line)
                    return
                import hashlib
                name = getattr(self, "_hash_name", None) or owner.hash_names()[1]
                with open(path, "rb") as fh:
                    digest = hashlib.file_digest(fh, name.replace("-", "").lower()).hexdigest()
                with owner.lock:
                    owner.hashes += 1
                self.respond("213 %s 0-%d %s %s" % (name, os.path.getsize(path), digest, line))

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, self.root, perm="elradfmwMT")
        Handler.authorizer = authorizer
        Handler.banner = "packrat test ftpd"
        Handler.auth_failed_timeout = 0.1  # not 3 s: the tests try wrong passwords
        if self.tls:
            self.cert, self.key = make_cert(self.dir)
            Handler.certfile, Handler.keyfile = self.cert, self.key
            Handler.tls_control_required = True
            Handler.tls_data_required = True
        from pyftpdlib.ioloop import IOLoop
        # its own loop: the default one is shared by every server of the process
        server = FTPServer((self.host, self.port), Handler, ioloop=IOLoop())
        server.max_cons = 256
        return server

    def start(self):
        import logging
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.server = self._server()
        self.thread = threading.Thread(target=self._loop, name="ftpd", daemon=True)
        self.thread.start()
        wait_for_port(self.port)
        return self

    def hash_names(self):
        """The algorithms ``hash_feature`` offers, and the one it marks as
        selected (``*``; SHA-256 where none is marked)."""
        offered = self.hash_feature.split(";")
        selected = next((a.rstrip("*") for a in offered if a.endswith("*")), "SHA-256")
        return [a.rstrip("*") for a in offered], selected

    def _loop(self):
        while not self._stop.is_set():
            if self.paused.is_set():
                self._stop.wait(0.05)
                continue
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def stop(self):
        self._stop.set()
        self.thread.join(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the tests look at ------------------------------------------
    def settings(self, **over):
        out = {"FTP_HOST": self.host, "FTP_PORT": self.port, "FTP_USER": self.user,
               "FTP_PASS": self.password, "FTP_DIR": self.remote_dir, "FTP_TLS": self.tls}
        if self.tls:
            out["FTP_CA_FILE"] = self.cert
        out.update(over)
        return out

    def connections(self):
        with self.lock:
            return self.logins

    def cut(self):
        """Drop every open control and data connection at once."""
        with self.lock:
            handlers = list(self.handlers)
        for handler in handlers:
            for channel in (getattr(handler, "data_channel", None), handler):
                sock = getattr(channel, "socket", None)
                if sock is None:
                    continue
                try:  # on the descriptor: with TLS, .socket is a pyOpenSSL Connection
                    raw = socket.socket(fileno=os.dup(sock.fileno()))
                except (OSError, ValueError):
                    continue
                try:
                    raw.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raw.close()

    def reset(self):
        self.paused.clear()
        self.read_limit = 0
        self.hash_feature = HASH_FEATURE
        self.hashes = 0
        with self.lock:
            self.logins = 0
            self.handlers = []
        empty_dir(self.files_dir)


@pytest.fixture(scope="module")
def ftp_server():
    yield from serve(FtpServer())


@pytest.fixture(scope="module")
def ftps_server():
    yield from serve(FtpServer(tls=True))


@pytest.fixture
def ftpd(ftp_server):
    ftp_server.reset()
    yield ftp_server


@pytest.fixture
def ftpsd(ftps_server):
    ftps_server.reset()
    yield ftps_server


def main(argv):
    """Serve HOME on PORT for USER/PASS in the foreground (benchmarks)."""
    import logging
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    home, port, user, password = argv
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, home, perm="elradfmwMT")
    FTPHandler.authorizer = authorizer
    FTPServer(("127.0.0.1", int(port)), FTPHandler).serve_forever(handle_exit=True)


if __name__ == "__main__":
    main(sys.argv[1:])
