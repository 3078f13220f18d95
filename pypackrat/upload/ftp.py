"""Upload module ``ftp``: the archives go to ``FTP_DIR`` on ``FTP_HOST`` over
FTP in passive mode, or over explicit FTPS with FTP_TLS=yes (AUTH TLS, then
an encrypted data channel too; the server's certificate is checked against
the system's CAs or FTP_CA_FILE, and its name against FTP_HOST).

One control connection per run serves every upload (each file is sent under
a temporary name, its size checked with SIZE, its digest with HASH where the
server offers that command, then renamed), the listing (MLSD, or NLST on
servers without it) and every delete. The session is made
by ftputil's session factory with an explicit path encoding (UTF-8).
"""
import contextlib
import os
import re
import time

from pypackrat import log
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting
from pypackrat.transfer import Transport

COMMAND = "an FTP command"  # user, password and directory go into one, encoded as UTF-8
SETTINGS = Group(
    "FTP upload module",
    Setting("FTP_HOST", required=True, host=True, meaning="The server."),
    Setting("FTP_USER", required=True, carried_by=COMMAND, meaning="The login."),
    Setting("FTP_PASS", secret=True, carried_by=COMMAND,
            meaning="Its password (plain FTP sends it in clear: use FTP_TLS)."),
    Setting("FTP_PORT", "integer", 21, min=1, max=65535, meaning="The server's port."),
    Setting("FTP_DIR", carried_by=COMMAND, meaning="Remote directory (empty: the login directory)."),
    Setting("FTP_TLS", "boolean", False,
            meaning="yes: explicit FTPS (AUTH TLS), the data connections encrypted too; the server's "
                    "certificate is checked against the system's CAs (or FTP_CA_FILE) and its name "
                    "against FTP_HOST."),
    Setting("FTP_CA_FILE", readable=True,
            meaning="CA certificate (or a self-signed server's own) for FTPS; empty: the system's."))

ENCODING = "utf-8"
BLOCK = 1 << 20  # bytes per read of a download
CHUNK = 256 << 10  # bytes per write of an upload
TIMEOUT = 120
POLL = 1  # seconds an upload's write waits for room before it looks up (a stop, a stall)
# the HASH command's algorithms (draft-bryan-ftpext-hash: FileZilla Server,
# ProFTPD's mod_digest...) as hashlib names, the preferred first
HASHES = (("SHA-256", "sha256"), ("SHA-512", "sha512"), ("SHA-1", "sha1"), ("MD5", "md5"))


def _session_factory(tls, ca_file, port):
    import ftplib
    import ssl
    import warnings
    with warnings.catch_warnings():  # the 6.0 default-encoding notice: we pass one explicitly
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.session

    if tls:
        context = ssl.create_default_context(cafile=ca_file or None)

        class Base(ftplib.FTP_TLS):
            def __init__(self, *args, **kw):
                kw.setdefault("context", context)
                kw.setdefault("timeout", TIMEOUT)
                super().__init__(*args, **kw)

            def ntransfercmd(self, cmd, rest=None):
                # the data connection resumes the control connection's TLS
                # session (vsftpd's require_ssl_reuse, on by default, wants it)
                conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
                if self._prot_p:
                    conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                                    session=self.sock.session)
                return conn, size
    else:
        class Base(ftplib.FTP):
            def __init__(self, *args, **kw):
                kw.setdefault("timeout", TIMEOUT)
                super().__init__(*args, **kw)

    return ftputil.session.session_factory(base_class=Base, port=port, use_passive_mode=True,
                                           encrypt_data_channel=True, encoding=ENCODING)


def _kernel_timeouts(conn, seconds):
    """Make ``conn`` blocking, with the kernel's send and receive timeouts
    instead of Python's: a stalled server still ends the transfer with an
    OSError (EAGAIN) after ``seconds``."""
    import socket
    import struct
    conn.settimeout(None)
    timeval = struct.pack("ll", int(seconds), 0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)


def _queued(conn):
    """The bytes in the kernel's send queue of ``conn`` (SIOCOUTQ), or None."""
    import fcntl
    import struct
    import termios
    try:
        return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except (OSError, ValueError):
        return None


def _send(conn, data, progress, done):
    """Write ``data`` (a memoryview) to a data connection whose writes give
    up after POLL seconds without room (_kernel_timeouts; TLS: Python's
    timeout). At full speed that is one write a chunk; on a slow or stalled
    link the upload gets control back every POLL seconds: it reports
    ``progress(done + sent)``, which raises when the run is being stopped
    (SIGTERM), and gives up (TimeoutError, transient) once the server has
    taken nothing for TIMEOUT seconds: no write went through and the
    kernel's send queue did not move (a TLS write, or a plain one waiting
    for the kernel to empty part of a full buffer, can take longer than
    POLL over a slow link that still carries bytes)."""
    sent, since, queue = 0, time.monotonic(), None
    while True:
        try:
            n = conn.send(data[sent:])
        except BlockingIOError:  # the kernel's EAGAIN after SO_SNDTIMEO
            n = 0
        except TimeoutError as exc:
            if exc.errno:  # the kernel's ETIMEDOUT: the link is gone
                raise
            n = 0  # TLS: Python's timeout (the write is repeated with the same bytes)
        sent += n
        if sent >= len(data):
            return
        now = time.monotonic()
        before, queue = queue, (None if n else _queued(conn))
        if n or (before is not None and queue != before):
            since = now
        elif now - since >= TIMEOUT:
            raise TimeoutError("the server took no data for %d seconds" % TIMEOUT)
        if progress:
            progress(done + sent)


def _abort(conn):
    """Close a data connection whose transfer failed or is being stopped
    with a reset (SO_LINGER 0): the bytes still queued in the kernel (up to
    megabytes) are not sent on over a slow link, and the server stops at
    once."""
    import socket
    import struct
    with contextlib.suppress(OSError, ValueError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()


class Remote(Transport):
    name = "ftp"
    capabilities = frozenset({"transfer", "checksum", "credentials", "reconnect", "bulk_delete", "stream"})

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        self.host, self.port = s["FTP_HOST"], int(s["FTP_PORT"])
        self.user, self.password = s["FTP_USER"], s["FTP_PASS"]
        self.directory = s["FTP_DIR"]
        self.tls = bool(s["FTP_TLS"])
        self.ca_file = s.get("FTP_CA_FILE") or ""
        self.session = None
        self._mlsd = None
        self._hash = None  # (FTP name, hashlib name) of the server's HASH; False: none

    def describe(self):
        return "%s %s@%s:%d %s" % ("ftps" if self.tls else "ftp", self.user, self.host, self.port,
                                   self.directory or "(login directory)")

    @property
    def transient(self):
        import ftplib
        return (OSError, EOFError, ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)

    # -- connection -----------------------------------------------------------
    def open(self):
        import ftplib
        import ssl

        self.close()
        factory = _session_factory(self.tls, self.ca_file, self.port)
        try:
            session = factory(self.host, self.user, self.password)
        except ftplib.error_perm as exc:
            raise PackratError("%s: login refused: %s" % (self.describe(), exc))
        except ssl.SSLCertVerificationError as exc:
            raise PackratError("%s: the server's TLS certificate is not trusted (%s); set FTP_CA_FILE to "
                               "its CA certificate (or the server's own, if self-signed)"
                               % (self.describe(), exc.verify_message or exc))
        except ssl.SSLError as exc:
            raise PackratError("%s: TLS failed: %s" % (self.describe(), exc))
        try:
            session.voidcmd("TYPE I")
            if self.directory:
                session.cwd(self.directory)
        except ftplib.error_perm as exc:
            session.close()
            raise PackratError("%s: cannot use the directory %s: %s" % (self.describe(), self.directory, exc))
        self.session = session

    def keepalive(self):
        """NOOP: a server closes a session idle for a few minutes (vsftpd's
        idle_session_timeout, 300 s; pyftpdlib's timeout, 300 s)."""
        if self.session is not None:
            self.session.voidcmd("NOOP")

    def close(self):
        if self.session is not None:
            try:
                self.session.quit()
            except Exception:
                try:
                    self.session.close()
                except Exception:
                    pass
        self.session = None

    def _conn(self):
        if self.session is None:
            self.open()
        return self.session

    # -- data ---------------------------------------------------------------------
    def put(self, local_path, remote_name, progress=None):
        """STOR, the file read into one reused buffer and written to the
        data connection 256 KiB a time (no per-byte work in Python); without
        TLS, on a blocking socket whose timeout is the kernel's
        (SO_SNDTIMEO): each write then queues its whole chunk at once.
        Measured on loopback against a pyftpdlib server, which is what
        limits the speed there: with sendfile(2), or with Python's own
        timeout (non-blocking sends, partial writes), the server spent
        10-30% more CPU receiving the same file (BENCHMARKS.md, uploads).
        A write waits for room POLL seconds at most, then reports progress
        (_send): a SIGTERM stops even a transfer that crawls or stalls
        within a second or so; a transfer that fails or is stopped is reset
        (_abort), nothing more of it sent."""
        with open(local_path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            view = memoryview(bytearray(CHUNK))

            def chunks():
                done = 0
                while done < size:  # the size it had when the upload began
                    n = fh.readinto(view[:min(CHUNK, size - done)])
                    if not n:
                        raise EOFError("%s shrank while it was sent" % local_path)
                    yield view[:n]
                    done += n
            self._store(chunks(), remote_name, progress)

    def put_stream(self, reader, remote_name, progress=None):
        self._store(map(memoryview, iter(lambda: reader.read(CHUNK), b"")), remote_name, progress)

    def _store(self, chunks, remote_name, progress):
        """STOR ``remote_name`` with the data of ``chunks`` (see put)."""
        import ssl
        session = self._conn()
        with self._transfer():
            # binary: a listing before (the purge's, on this same session)
            # left the session in ASCII, where a server may rewrite line ends
            session.voidcmd("TYPE I")
            conn = session.transfercmd("STOR " + remote_name)
            tls = isinstance(conn, ssl.SSLSocket)
            whole = False
            try:
                if tls:  # TLS retries EAGAIN forever: it keeps Python's timeout
                    conn.settimeout(POLL)
                else:
                    _kernel_timeouts(conn, POLL)
                done = 0
                for chunk in chunks:
                    _send(conn, chunk, progress, done)
                    done += len(chunk)
                    if progress:
                        progress(done)
                if tls:
                    conn.settimeout(TIMEOUT)
                    conn.unwrap()  # a clean TLS close: the server knows the file is whole
                whole = True
            finally:
                if whole:
                    conn.close()
                else:
                    _abort(conn)
            session.voidresp()
        self._private(session, remote_name)

    def _private(self, session, remote_name):
        """Make the copy 0600 (SITE CHMOD, before the rename), as on the
        local and SFTP remotes: the server created it with its own umask,
        often 0644, readable by every account of the server. Best effort:
        a server without SITE CHMOD keeps its own modes."""
        import ftplib
        try:
            session.sendcmd("SITE CHMOD 600 " + remote_name)
        except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as exc:
            log.verbose("%s: SITE CHMOD 600 %s refused (%s); the copy keeps the server's mode"
                        % (self.describe(), remote_name, str(exc).strip()))

    @contextlib.contextmanager
    def _transfer(self):
        """A transfer that fails leaves the control connection out of step
        (the failed command's reply may still be on its way): drop it, so
        that whatever comes next starts on a fresh one."""
        try:
            yield
        except BaseException:
            session, self.session = self.session, None
            try:
                session.close()
            except Exception:
                pass
            raise

    def get(self, remote_name, local_path, progress=None):
        session = self._conn()
        done = [0]
        with open(local_path, "wb") as fh, self._transfer():
            def got(block):
                fh.write(block)
                done[0] += len(block)
                if progress:
                    progress(done[0])
            session.retrbinary("RETR " + remote_name, got, blocksize=BLOCK)

    def rename(self, old, new):
        import ftplib
        session = self._conn()
        try:
            session.rename(old, new)
        except ftplib.error_perm:
            # a server that will not rename over an existing file
            if self.size(new) is None:
                raise
            session.delete(new)
            session.rename(old, new)

    def size(self, remote_name):
        import ftplib
        session = self._conn()
        try:
            session.voidcmd("TYPE I")  # a listing (retrlines) left ASCII mode, where SIZE is refused
            return session.size(remote_name)
        except ftplib.error_perm:  # 550: no such file
            return None

    def _hash_feature(self):
        """(FTP name, hashlib name) of the digest the server's HASH command
        gives, chosen from what FEAT lists (OPTS HASH selects it), or None."""
        import ftplib
        if self._hash is not None:
            return self._hash or None
        self._hash = False
        session = self._conn()
        try:
            features = session.sendcmd("FEAT")
        except (ftplib.error_perm, ftplib.error_temp):
            return None
        for line in features.splitlines()[1:]:
            words = line.strip().split(None, 1)
            if len(words) != 2 or words[0].upper() != "HASH":
                continue
            offered = [a.strip().upper() for a in words[1].split(";") if a.strip()]
            selected = next((a.rstrip("*") for a in offered if a.endswith("*")), None)
            names = [a.rstrip("*") for a in offered]
            for ftp_name, hashlib_name in HASHES:
                if ftp_name not in names:
                    continue
                if ftp_name != selected:
                    try:
                        session.sendcmd("OPTS HASH " + ftp_name)
                    except (ftplib.error_perm, ftplib.error_temp):
                        continue
                self._hash = (ftp_name, hashlib_name)
                break
        return self._hash or None

    def checksum(self, remote_name):
        """The file's digest by the HASH command, where the server has it
        (``213 SHA-256 0-SIZE HEX NAME``); None where it has not."""
        import ftplib
        feature = self._hash_feature()
        if not feature:
            return None
        try:
            reply = self._conn().sendcmd("HASH " + remote_name)
        except (ftplib.error_perm, ftplib.error_temp) as exc:
            log.verbose("%s: no digest of %s from the server (%s); its size was checked"
                        % (self.describe(), remote_name, exc))
            return None
        words = reply.split(" ", 4)
        names = dict(HASHES)
        if (len(words) < 4 or words[0] != "213" or words[1].upper() not in names
                or not re.fullmatch(r"[0-9a-fA-F]+", words[3])):
            log.verbose("%s: HASH of %s: an answer packrat does not read: %s"
                        % (self.describe(), remote_name, reply))
            return None
        return names[words[1].upper()], words[3].lower()

    def list(self):
        """The plain files of the directory: by MLSD's type facts, or, on a
        server without MLSD (vsftpd), by parsing LIST (Unix, else DOS style):
        directories and links are never archives, so a directory named like
        one is not in the listing."""
        import ftplib
        session = self._conn()
        if self._mlsd is not False:
            try:
                names = [name for name, facts in session.mlsd(facts=["type"])
                         if facts.get("type", "").lower() == "file"]
                self._mlsd = True
                return sorted(names)
            except ftplib.error_perm:  # 500/502: no MLSD here
                self._mlsd = False
        lines = []
        try:
            session.retrlines("LIST", lines.append)
        except ftplib.error_perm as exc:  # some servers answer 550 for an empty directory
            if str(exc).startswith("550"):
                return []
            raise
        return sorted(_plain_files(lines, self.describe()))

    def delete(self, remote_name):
        import ftplib
        try:
            self._conn().delete(remote_name)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550") and self.size(remote_name) is None:
                log.verbose("%s: %s was already gone" % (self.describe(), remote_name))
                return
            raise


def _plain_files(lines, where):
    """The names of the regular files in LIST output (ftputil's parsers);
    a line neither parser reads is left out, with a verbose note."""
    import stat
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.error
        import ftputil.stat
    parsers = (ftputil.stat.UnixParser(), ftputil.stat.MSParser())
    for line in lines:
        if parsers[0].ignores_line(line):
            continue
        for parser in parsers:
            try:
                result = parser.parse_line(line)
            except (ftputil.error.ParserError, ValueError, IndexError):
                continue
            name = getattr(result, "_st_name", "")
            target = getattr(result, "_st_target", None)
            if target is not None:  # the parser splits " -> " off any name, not just a link's
                name = "%s -> %s" % (name, target)
            if stat.S_ISREG(result.st_mode or 0) and name:
                yield os.path.basename(name)
            break
        else:
            log.verbose("%s: a LIST line packrat does not read, left out: %r" % (where, line))


# The conformance suite's entries (tests/test_upload_conformance.py): how
# this module meets its test servers (tests/servers/ftp.py), plain and TLS.
# What it can do is Remote.capabilities.
_FTP_ENTRY = {
    "files": "{server.files_dir}",              # FTP_DIR, on this machine
    "refused": {"FTP_PASS": "wrong-password-x"},
    "secret": "FTP_PASS",                       # stays out of messages and mail
    "digest": "sha256",                         # the test server has HASH
}
CONFORMANCE = {
    "ftp": dict(_FTP_ENTRY, server="ftpd"),
    "ftps": dict(_FTP_ENTRY, server="ftpsd"),
}
