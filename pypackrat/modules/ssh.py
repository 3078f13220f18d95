"""Upload module ``ssh``: the archives go to ``SSH_USER@SSH_HOST:SSH_DIR/``
over SFTP, with key authentication (SSH_KEY) and host keys checked the way
OpenSSH checks them by default: a host whose key is not in the known_hosts
file (SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts)
or whose key changed is refused, with the command that fixes it.

One paramiko SFTP connection per run serves every upload, the listing,
every delete, rename and size check. Paramiko is tuned: aes128-gcm first,
pipelined writes as large as the server's limits@openssh.com allows (255
KiB on OpenSSH, where plain paramiko writes 32 KiB); so tuned it matches
OpenSSH's scp (bench/uploads). A server that does not announce larger
writes would leave paramiko at about half of scp's speed: there, when
OpenSSH's ``scp`` is installed, the bytes go through it instead (one more
SSH connection per file; the control connection stays paramiko's).
SSH_CLIENT=paramiko or =openssh forces one data path. SSH_BWLIMIT (Kbit/s,
as scp -l) is honoured by both.
"""
import getpass
import os
import posixpath
import stat
import threading
import time

from pypackrat import execute, log
from pypackrat.errors import PackratError
from pypackrat.transfer import Remote as BaseRemote

FAST_CIPHER = "aes128-gcm@openssh.com"
DEFAULT_REQUEST = 32768      # what every SFTP server accepts
FAST_REQUEST = 128 * 1024    # from here on paramiko keeps up with scp
LARGEST_REQUEST = 255 * 1024  # OpenSSH's sftp-server takes messages up to 256 KiB
TIMEOUT = 60


def check(settings):
    from pypackrat.config import server_problem
    where = lambda key: settings.where(key, "upload")  # noqa: E731
    problems = []
    for key in ("SSH_HOST", "SSH_DIR"):
        if settings.valid(key) and not settings[key]:
            problems.append("%s: %s is empty, but the ssh upload module is enabled" % (where(key), key))
    if settings.valid("SSH_HOST"):
        problems += filter(None, [server_problem(settings, "SSH_HOST", "upload")])
    if settings.valid("SSH_USER"):
        user = settings["SSH_USER"]
        if user and (user.startswith("-") or any(c.isspace() or not c.isprintable() for c in user)):
            problems.append("%s: SSH_USER=%r: must be a user name (no spaces or control characters, "
                            "not starting with '-')" % (where("SSH_USER"), user))
    for key in ("SSH_KEY", "SSH_KNOWN_HOSTS"):
        if not settings.valid(key):
            continue
        path = settings[key]
        if not path or (os.path.isfile(path) and os.access(path, os.R_OK)):
            continue
        what = "not readable" if os.path.isfile(path) else "no such file"
        if key == "SSH_KEY":
            problems.append("%s: SSH_KEY=%s: %s" % (where(key), path, what))
        else:
            port = settings["SSH_PORT"] if settings.valid("SSH_PORT") else 22
            host = settings["SSH_HOST"] if settings.valid("SSH_HOST") and settings["SSH_HOST"] else "HOST"
            problems.append("%s: SSH_KNOWN_HOSTS=%s: %s (create it with: ssh-keyscan -p %s %s > %s, "
                            "after checking the fingerprint)" % (where(key), path, what, port, host, path))
    return problems


def requirements(settings):
    """OpenSSH's scp and ssh when SSH_CLIENT=openssh (otherwise paramiko
    moves the bytes, or scp where it is installed)."""
    if (settings.get("SSH_CLIENT") or "auto") != "openssh":
        return []
    return ["%s: SSH_CLIENT=openssh, but %s is not installed (not found in PATH): the ssh upload will fail"
            % (settings.where("SSH_CLIENT", "upload"), program)
            for program in ("scp", "ssh") if not execute.which(program)]


def _host_id(host, port):
    """How known_hosts names the host: ``host`` on 22, ``[host]:port`` else."""
    return host if int(port) == 22 else "[%s]:%d" % (host, int(port))


class Remote(BaseRemote):
    name = "ssh"

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        self.host, self.port = s["SSH_HOST"], int(s["SSH_PORT"])
        self.user = s["SSH_USER"] or getpass.getuser()
        self.key = s["SSH_KEY"]
        self.directory = s["SSH_DIR"]
        self.bwlimit = int(s["SSH_BWLIMIT"] or 0)   # Kbit/s, 0: none
        known = s["SSH_KNOWN_HOSTS"]
        self.known_files = [known] if known else [
            f for f in (os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts")
            if os.path.isfile(f)]
        self.choice = s.get("SSH_CLIENT") or "auto"
        self.client = self.sftp = None

    def use_openssh(self):
        """Whether scp moves the bytes (see the module's notes)."""
        if self.choice != "auto":
            return self.choice == "openssh"
        return _request_size(self._conn()) < FAST_REQUEST and bool(execute.which("scp"))

    def describe(self):
        return "ssh %s@%s:%s" % (self.user, _host_id(self.host, self.port), self.directory)

    @property
    def transient(self):
        import paramiko
        return (OSError, EOFError, paramiko.SSHException)

    # -- connection -----------------------------------------------------------
    def _fix(self):
        target = self.known_files[0] if self.known_files else "~/.ssh/known_hosts"
        return ("check the key's fingerprint with the host's admin, then add it: "
                "ssh-keyscan -p %d %s >> %s (and set SSH_KNOWN_HOSTS=%s)"
                % (self.port, self.host, target, target))

    def open(self):
        import paramiko

        remote = self

        class Refuse(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                raise PackratError(
                    "%s: unknown host key (%s %s) for %s: not in %s; refusing to connect. To trust it, %s"
                    % (remote.describe(), key.get_name(), key.fingerprint, hostname,
                       " or ".join(remote.known_files) or "any known_hosts file", remote._fix()))

        def transport(sock, disabled_algorithms=None):
            t = paramiko.Transport(sock, disabled_algorithms=disabled_algorithms)
            options = t.get_security_options()
            ciphers = list(options.ciphers)
            if FAST_CIPHER in ciphers:  # fastest where AES-NI exists; same security
                options.ciphers = [FAST_CIPHER] + [c for c in ciphers if c != FAST_CIPHER]
            return t

        self.close()
        client = paramiko.SSHClient()
        for path in self.known_files:
            try:
                client.load_host_keys(path)
            except (OSError, paramiko.SSHException) as exc:
                raise PackratError("%s: cannot read known hosts file %s: %s" % (self.describe(), path, exc))
        client.set_missing_host_key_policy(Refuse())
        kw = dict(port=self.port, username=self.user, timeout=30, banner_timeout=30,
                  auth_timeout=30, transport_factory=transport)
        if self.key:
            kw.update(key_filename=self.key, look_for_keys=False, allow_agent=False)
        try:
            client.connect(self.host, **kw)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise PackratError(
                "%s: the host key CHANGED (%s %s, not the one in %s): someone may be intercepting the "
                "connection; refusing to connect. If the change is expected, remove the old key "
                "(ssh-keygen -R '%s' -f %s) and %s"
                % (self.describe(), exc.key.get_name(), exc.key.fingerprint, " or ".join(self.known_files),
                   _host_id(self.host, self.port), (self.known_files or ["~/.ssh/known_hosts"])[0],
                   self._fix()))
        except paramiko.AuthenticationException as exc:
            client.close()
            raise PackratError("%s: authentication failed (%s) with the key %s"
                               % (self.describe(), exc, self.key or "of ~/.ssh or the agent"))
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            raise ConnectionError(str(exc))
        except PackratError:
            client.close()
            raise
        self.client = client
        self.sftp = client.open_sftp()
        self.sftp.get_channel().settimeout(TIMEOUT * 5)
        try:
            mode = self.sftp.stat(self.directory).st_mode
        except FileNotFoundError:
            self.close()
            raise PackratError("%s: SSH_DIR %s does not exist on the server" % (self.describe(), self.directory))
        except PermissionError:
            self.close()
            raise PackratError("%s: SSH_DIR %s: permission denied" % (self.describe(), self.directory))
        if mode is not None and not stat.S_ISDIR(mode):
            self.close()
            raise PackratError("%s: SSH_DIR %s is not a directory" % (self.describe(), self.directory))

    def close(self):
        for thing in (self.sftp, self.client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self.client = self.sftp = None

    def _conn(self):
        if self.sftp is None:
            self.open()
        return self.sftp

    def _path(self, name):
        return posixpath.join(self.directory, name)

    # -- data -------------------------------------------------------------------
    def _scp_argv(self):
        argv = ["scp", "-q", "-B", "-s", "-F", "none", "-P", str(self.port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "Ciphers=^" + FAST_CIPHER]
        if self.known_files:
            argv += ["-o", "UserKnownHostsFile=" + " ".join(self.known_files),
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self.bwlimit:
            argv += ["-l", str(self.bwlimit)]
        return argv

    def _spec(self, name):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s@%s:%s" % (self.user, host, self._path(name))

    def _scp(self, argv, watch=None, progress=None):
        """Run scp; meanwhile report the remote file's size as progress."""
        stop = threading.Event()
        watcher = None
        if progress and watch:
            def poll():
                while not stop.wait(0.2):
                    try:
                        progress(self.sftp.stat(watch).st_size)
                    except Exception:
                        pass
            watcher = threading.Thread(target=poll, daemon=True)
            watcher.start()
        try:
            execute.run(argv)
        except execute.CommandFailed as exc:
            raise ConnectionError(str(exc))  # transient: retried
        finally:
            stop.set()
            if watcher:
                watcher.join()

    def put(self, local_path, remote_name, progress=None):
        try:
            self._put(local_path, remote_name, progress)
        except PermissionError as exc:  # not worth a retry
            raise PackratError("%s: cannot write %s: %s" % (self.describe(), remote_name, exc))

    def _put(self, local_path, remote_name, progress):
        sftp = self._conn()
        if self.use_openssh():
            self._scp(self._scp_argv() + ["--", local_path, self._spec(remote_name)],
                      watch=self._path(remote_name), progress=progress)
            return
        size = _request_size(sftp)
        done, started = 0, time.monotonic()
        with open(local_path, "rb") as src, sftp.open(self._path(remote_name), "wb") as dst:
            dst.set_pipelined(True)
            dst.MAX_REQUEST_SIZE = size
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
                done += len(block)
                self._throttle(done, started)
                if progress:
                    progress(done)

    def _throttle(self, done, started):
        if self.bwlimit:
            due = done * 8 / (self.bwlimit * 1000.0)
            late = due - (time.monotonic() - started)
            if late > 0:
                time.sleep(late)

    def get(self, remote_name, local_path, progress=None):
        sftp = self._conn()
        if self.use_openssh():
            self._scp(self._scp_argv() + ["--", self._spec(remote_name), local_path])
            return
        sftp.get(self._path(remote_name), local_path,
                 callback=(lambda done, total: progress(done)) if progress else None)

    def rename(self, old, new):
        sftp = self._conn()
        try:
            sftp.posix_rename(self._path(old), self._path(new))  # replaces, atomically
        except OSError:
            if self.size(old) is None:
                raise
            # a server without posix-rename: SFTP v3 rename refuses an existing target
            try:
                sftp.remove(self._path(new))
            except FileNotFoundError:
                pass
            sftp.rename(self._path(old), self._path(new))

    def size(self, remote_name):
        try:
            return self._conn().stat(self._path(remote_name)).st_size
        except FileNotFoundError:
            return None

    def list(self):
        entries = self._conn().listdir_attr(self.directory)
        return sorted(e.filename for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode))

    def delete(self, remote_name):
        try:
            self._conn().remove(self._path(remote_name))
        except FileNotFoundError:
            log.verbose("%s: %s was already gone" % (self.describe(), remote_name))


def _request_size(sftp):
    """The largest write request the server takes (OpenSSH tells it through
    the limits@openssh.com extension); 32 KiB where it does not say."""
    cached = getattr(sftp, "_packrat_request_size", None)
    if cached:
        return cached
    size = DEFAULT_REQUEST
    try:
        from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY
        kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
        if kind == CMD_EXTENDED_REPLY:
            msg.get_int64()              # max packet length
            msg.get_int64()              # max read length
            write = msg.get_int64()      # max write length
            if write:
                size = max(DEFAULT_REQUEST, min(int(write), LARGEST_REQUEST))
    except Exception:
        pass
    sftp._packrat_request_size = size
    return size
