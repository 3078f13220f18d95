"""What the upload modules use of their libraries' internals, pinned: a
paramiko, ftplib or ftputil release that removes or changes it fails here,
and not a night's backup.

- upload/ssh.py speaks SFTP through paramiko's private ``SFTPClient._request``
  (a listing that keeps names which are not UTF-8, an OPEN with mode 0600
  and O_EXCL, the limits@openssh.com extension) with the CMD_* and
  SFTP_FLAG_* constants, builds SFTPAttributes with ``_from_msg``, opens
  ``SFTPFile`` itself and sets its ``MAX_REQUEST_SIZE`` for larger writes;
  it tells a key with a passphrase by the TypeError of ``PKey.from_path``.
- upload/ftp.py reads ftplib's ``FTP_TLS._prot_p`` in its ntransfercmd,
  and the ``_st_name`` / ``_st_target`` of ftputil's LIST parsers.

The SFTP pins run paramiko's real client against a scripted SFTP server
over a socket pair (no SSH, no server process): the bytes on the wire are
what the code assumes.
"""
import inspect
import os
import socket
import stat
import struct
import threading
import warnings

import pytest

from pypackrat.upload import ftp as ftp_module
from pypackrat.upload import ssh as ssh_module

pytestmark = pytest.mark.fast


# -- paramiko -------------------------------------------------------------------

def test_sftp_protocol_constants_keep_their_wire_values():
    """The numbers of SFTP version 3 (draft-ietf-secsh-filexfer-02), which
    ssh.py sends through _request by name."""
    from paramiko import sftp, sftp_client
    assert (sftp.CMD_OPEN, sftp.CMD_CLOSE, sftp.CMD_OPENDIR, sftp.CMD_READDIR) == (3, 4, 11, 12)
    assert (sftp.CMD_HANDLE, sftp.CMD_NAME, sftp.CMD_EXTENDED, sftp.CMD_EXTENDED_REPLY) == (102, 104, 200, 201)
    assert (sftp_client.SFTP_FLAG_WRITE, sftp_client.SFTP_FLAG_CREATE, sftp_client.SFTP_FLAG_TRUNC,
            sftp_client.SFTP_FLAG_EXCL) == (0x02, 0x08, 0x10, 0x20)
    assert issubclass(sftp.SFTPError, Exception)


def test_sftp_private_entry_points_keep_their_signatures():
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_client import SFTPClient
    from paramiko.sftp_file import SFTPFile
    assert list(inspect.signature(SFTPClient._request).parameters) == ["self", "t", "args"]
    assert inspect.signature(SFTPClient._request).parameters["args"].kind is inspect.Parameter.VAR_POSITIONAL
    assert list(inspect.signature(SFTPAttributes._from_msg).parameters)[:3] == ["msg", "filename", "longname"]
    assert list(inspect.signature(SFTPFile.__init__).parameters)[:5] == ["self", "sftp", "handle", "mode", "bufsize"]
    assert isinstance(SFTPFile.MAX_REQUEST_SIZE, int) and SFTPFile.MAX_REQUEST_SIZE <= ssh_module.DEFAULT_REQUEST
    assert callable(SFTPFile.set_pipelined)


class ScriptedSftpServer(threading.Thread):
    """Just enough of an SFTP server for the calls ssh.py makes through
    paramiko's internals, on one end of a socket pair; it records what it
    is sent. The directory lists ``a.dar``, a name that is not UTF-8, and
    a subdirectory."""

    WRITE_LIMIT = 4 << 20  # larger than packrat takes: it keeps to LARGEST_REQUEST

    def __init__(self, sock):
        super().__init__(daemon=True)
        from paramiko.sftp import BaseSFTP
        self.sftp = BaseSFTP()
        self.sftp.sock = sock
        self.seen = []       # (command, details)
        self.writes = []     # sizes of the WRITE requests
        self.error = None

    def run(self):
        try:
            self._serve()
        except EOFError:
            pass
        except Exception as exc:  # reported by the test
            self.error = exc

    def _reply(self, kind, num, *items):
        from paramiko.message import Message
        m = Message()
        m.add_int(num)
        for item in items:
            if isinstance(item, tuple):  # (int64, value)
                m.add_int64(item[1])
            elif isinstance(item, int):
                m.add_int(item)
            elif hasattr(item, "_pack"):
                item._pack(m)
            else:
                m.add_string(item)
        self.sftp._send_packet(kind, m)

    def _serve(self):
        from paramiko import sftp
        from paramiko.message import Message
        from paramiko.sftp_attr import SFTPAttributes
        kind, _ = self.sftp._read_packet()
        assert kind == sftp.CMD_INIT
        version = Message()
        version.add_int(3)
        self.sftp._send_packet(sftp.CMD_VERSION, version)
        listed = False

        def attrs(mode, uid=1000):
            a = SFTPAttributes()
            a.st_mode, a.st_uid, a.st_gid, a.st_size = mode, uid, uid, 5
            return a

        while True:
            kind, data = self.sftp._read_packet()
            msg = Message(data)
            num = msg.get_int()
            if kind == sftp.CMD_OPENDIR:
                self.seen.append(("opendir", msg.get_binary()))
                self._reply(sftp.CMD_HANDLE, num, b"dir-handle")
            elif kind == sftp.CMD_READDIR:
                self.seen.append(("readdir", msg.get_binary()))
                if listed:
                    self._reply(sftp.CMD_STATUS, num, sftp.SFTP_EOF, "end", "")
                    continue
                listed = True
                entries = [(b"a.dar", attrs(stat.S_IFREG | 0o600)), (b"b\xff.dar", attrs(stat.S_IFREG | 0o644, 0)),
                           (b"sub", attrs(stat.S_IFDIR | 0o755)), (b".", attrs(stat.S_IFDIR | 0o755))]
                reply = Message()
                reply.add_int(num)
                reply.add_int(len(entries))
                for name, a in entries:
                    reply.add_string(name)
                    reply.add_string(b"-rw------- 1 u g 5 Nov 26 12:00 " + name)
                    a._pack(reply)
                self.sftp._send_packet(sftp.CMD_NAME, reply)
            elif kind == sftp.CMD_CLOSE:
                self.seen.append(("close", msg.get_binary()))
                self._reply(sftp.CMD_STATUS, num, sftp.SFTP_OK, "ok", "")
            elif kind == sftp.CMD_EXTENDED:
                name = msg.get_text()
                self.seen.append(("extended", name))
                if name == "limits@openssh.com":
                    self._reply(sftp.CMD_EXTENDED_REPLY, num, (0, 256 << 10), (0, 256 << 10),
                                (0, self.WRITE_LIMIT), (0, 64))
                else:
                    self._reply(sftp.CMD_STATUS, num, sftp.SFTP_OP_UNSUPPORTED, "no", "")
            elif kind == sftp.CMD_OPEN:
                path, flags = msg.get_binary(), msg.get_int()
                a = SFTPAttributes._from_msg(msg)
                self.seen.append(("open", (path, flags, a.st_mode)))
                self._reply(sftp.CMD_HANDLE, num, b"file-handle")
            elif kind == sftp.CMD_FSETSTAT:
                handle = msg.get_binary()
                self.seen.append(("fsetstat", (handle, SFTPAttributes._from_msg(msg).st_mode)))
                self._reply(sftp.CMD_STATUS, num, sftp.SFTP_OK, "ok", "")
            elif kind == sftp.CMD_WRITE:
                msg.get_binary()
                msg.get_int64()
                self.writes.append(len(msg.get_binary()))
                self._reply(sftp.CMD_STATUS, num, sftp.SFTP_OK, "ok", "")
            else:
                self.seen.append(("unexpected", kind))
                self._reply(sftp.CMD_STATUS, num, sftp.SFTP_OP_UNSUPPORTED, "no", "")


class _Channel:
    """A socket with the little of paramiko's Channel that SFTPClient asks."""

    def __init__(self, sock):
        self.sock = sock

    def send(self, data):
        return self.sock.send(data)

    def recv(self, n):
        return self.sock.recv(n)

    def recv_ready(self):
        import select
        return bool(select.select([self.sock], [], [], 0)[0])

    def get_name(self):
        return "pins"


@pytest.fixture
def sftp_pair():
    """(paramiko's SFTPClient, the scripted server) over a socket pair."""
    from paramiko.sftp_client import SFTPClient
    ours, theirs = socket.socketpair()
    server = ScriptedSftpServer(theirs)
    server.start()
    client = SFTPClient(_Channel(ours))
    yield client, server
    ours.close()  # the server reads EOF and ends
    server.join(5)
    theirs.close()
    assert server.error is None, server.error
    assert not [s for s in server.seen if s[0] == "unexpected"], server.seen


def test_the_listing_through_request_keeps_names_that_are_not_utf8(sftp_pair):
    client, server = sftp_pair
    entries = ssh_module._listdir(client, "/backups")
    by_name = {e.filename: e for e in entries}
    assert set(by_name) == {"a.dar", "b\udcff.dar", "sub"}  # . and .. left out; bytes kept
    assert stat.S_ISREG(by_name["a.dar"].st_mode) and by_name["a.dar"].st_uid == 1000
    assert by_name["b\udcff.dar"].st_uid == 0 and stat.S_ISDIR(by_name["sub"].st_mode)
    assert [s[0] for s in server.seen] == ["opendir", "readdir", "readdir", "close"]
    assert server.seen[0][1] == b"/backups"


def test_the_request_size_comes_from_the_limits_extension_once(sftp_pair):
    client, server = sftp_pair
    assert ssh_module._request_size(client) == ssh_module.LARGEST_REQUEST  # the server allows more
    assert ssh_module._request_size(client) == ssh_module.LARGEST_REQUEST
    assert server.seen == [("extended", "limits@openssh.com")]  # cached on the client


def test_create_opens_exclusively_0600_and_writes_in_max_request_size(sftp_pair):
    """_create's OPEN carries WRITE|CREATE|TRUNC|EXCL and mode 0600, then
    an FSETSTAT 0600 through the handle; the SFTPFile it returns, pipelined
    with MAX_REQUEST_SIZE set as ssh.put sets it, sends WRITE requests of
    that size (paramiko's own are 32 KiB)."""
    from paramiko.sftp_client import SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE
    client, server = sftp_pair
    size = ssh_module._request_size(client)
    handle = ssh_module._create(client, "/backups/x.partial")
    assert ("open", (b"/backups/x.partial", SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC | SFTP_FLAG_EXCL,
                     ssh_module.REMOTE_MODE)) in server.seen
    assert ("fsetstat", (b"file-handle", ssh_module.REMOTE_MODE)) in server.seen
    handle.set_pipelined(True)
    handle.MAX_REQUEST_SIZE = size
    data = os.urandom(1 << 20)
    for start in range(0, len(data), 1 << 20):
        handle.write(data[start:start + (1 << 20)])
    handle.close()
    assert sum(server.writes) == len(data)
    assert max(server.writes) == size and len(server.writes) == -(-len(data) // size)


def test_a_key_with_a_passphrase_is_told_by_typeerror(tmp_path):
    """ssh._plain_key: PKey.from_path without the passphrase raises
    TypeError for a protected key; with it, the key loads."""
    import paramiko
    path = str(tmp_path / "key")
    paramiko.RSAKey.generate(1024).write_private_key_file(path, password="secret-words")
    with pytest.raises(TypeError):
        paramiko.PKey.from_path(path)
    assert paramiko.PKey.from_path(path, b"secret-words").get_name() == "ssh-rsa"


def test_connection_hooks_ssh_py_passes_to_paramiko():
    """connect()'s transport_factory, the security options it reorders,
    and the connection error transfer.py reports without "[Errno None]"."""
    import paramiko
    assert "transport_factory" in inspect.signature(paramiko.SSHClient.connect).parameters
    options = paramiko.Transport(socket.socket()).get_security_options()
    options.ciphers = list(options.ciphers)  # settable, as open() sets them
    options.key_types = list(options.key_types)
    error = paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 1): ConnectionRefusedError(111, "x")})
    assert isinstance(error, OSError) and error.errno is None and "Unable to connect" in error.strerror


# -- ftplib and ftputil ---------------------------------------------------------------

def test_ftplib_prot_p_says_whether_the_data_channel_is_encrypted():
    """ftp.py's ntransfercmd wraps the data connection where ``_prot_p`` is
    true, as ftplib's own does: PROT P sets it, PROT C clears it."""
    import ftplib
    tls = ftplib.FTP_TLS()
    assert tls._prot_p is False
    tls.voidcmd = lambda cmd: "200 " + cmd  # no server: the reply PROT expects
    tls.prot_p()
    assert tls._prot_p is True
    tls.prot_c()
    assert tls._prot_p is False
    assert "_prot_p" in inspect.getsource(ftplib.FTP_TLS.ntransfercmd)
    assert list(inspect.signature(ftplib.FTP.ntransfercmd).parameters) == ["self", "cmd", "rest"]
    import ssl
    assert "session" in inspect.signature(ssl.SSLContext.wrap_socket).parameters


def test_ftp_session_factory_takes_what_ftp_py_gives():
    parameters = inspect.signature(ftp_module._session_factory(False, "", 21)).parameters
    assert parameters  # a callable of (host, user, password)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.session
    wanted = {"base_class", "port", "use_passive_mode", "encrypt_data_channel", "encoding"}
    assert wanted <= set(inspect.signature(ftputil.session.session_factory).parameters)


def test_ftputil_parsers_keep_st_name_and_st_target():
    """ftp._plain_files reads the private _st_name and _st_target of what
    ftputil's LIST parsers return; end to end, it keeps regular files only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.stat
    unix = ftputil.stat.UnixParser()
    assert unix.ignores_line("total 12")
    link = unix.parse_line("lrwxrwxrwx   1 u g  5 Nov 26 12:00 host-a-20261126.1.dar -> elsewhere")
    assert (link._st_name, link._st_target) == ("host-a-20261126.1.dar", "elsewhere")
    plain = unix.parse_line("-rw-r--r--   1 u g  5 Nov 26 12:00 host-a b-20261126.1.dar")
    assert (plain._st_name, plain._st_target) == ("host-a b-20261126.1.dar", None)
    dos = ftputil.stat.MSParser().parse_line("11-26-26  12:00PM                 5 host-c-20261126.1.dar")
    assert dos._st_name == "host-c-20261126.1.dar" and stat.S_ISREG(dos.st_mode)
    lines = ["total 12", "drwxr-xr-x   2 u g  4096 Nov 26 12:00 host-d-20261126.1.dar",
             "lrwxrwxrwx   1 u g  5 Nov 26 12:00 host-a-20261126.1.dar -> elsewhere",
             "-rw-r--r--   1 u g  5 Nov 26 12:00 host-a b-20261126.1.dar",
             "11-26-26  12:00PM                 5 host-c-20261126.1.dar"]
    assert sorted(ftp_module._plain_files(lines, "test")) == ["host-a b-20261126.1.dar", "host-c-20261126.1.dar"]


def test_struct_of_the_socket_timeouts():
    """ftp._kernel_timeouts packs a struct timeval as two longs."""
    a, b = socket.socketpair()
    try:
        ftp_module._kernel_timeouts(a, 7)
        seconds, micro = struct.unpack("ll", a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("ll")))
        assert (seconds, micro) == (7, 0) and a.gettimeout() is None
    finally:
        a.close()
        b.close()
