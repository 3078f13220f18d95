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

As OpenSSH does: where known_hosts holds keys of several types for the host,
the preferred known type is negotiated (ed25519 before ECDSA before RSA), so
a wrong key of that type is refused even when a key of another type would
match. A key protected by a passphrase is used through ssh-agent
(SSH_AUTH_SOCK) when the agent holds it, else unlocked with
SSH_KEY_PASSPHRASE (never on a command line: scp gets it through an
askpass helper reading it from its environment). Remote copies are made
0600. scp's failures show ssh's own message; a refused key or host key is
not retried.
"""
import base64
import getpass
import os
import posixpath
import re
import stat
import sys
import threading
import time

from pypackrat import execute, log, transfer
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting


SETTINGS = Group(
    "SSH upload module (SFTP)",
    Setting("SSH_HOST", required=True, host=True, meaning="The server."),
    Setting("SSH_USER", meaning="The login (empty: the current user)."),
    Setting("SSH_KEY", readable=True, meaning="Private key file (empty: the keys of ~/.ssh and the agent)."),
    Setting("SSH_KEY_PASSPHRASE", secret=True, shipped="commented",
            meaning="Its passphrase, if it has one and no ssh-agent (SSH_AUTH_SOCK) holds it; keep "
                    "this file 0600."),
    Setting("SSH_DIR", required=True, carried_by="SFTP and scp",  # SFTP: UTF-8 text; scp: a remote command
            meaning="Remote directory (relative: to the login directory)."),
    Setting("SSH_BWLIMIT", "integer", 0, min=0, meaning="Bandwidth limit in Kbit/s, as scp -l (0: none)."),
    Setting("SSH_PORT", "integer", 22, min=1, max=65535, meaning="The server's port."),
    Setting("SSH_KNOWN_HOSTS",
            meaning="known_hosts file checked for the server's key (empty: ~/.ssh/known_hosts and "
                    "/etc/ssh/ssh_known_hosts)."),
    Setting("SSH_CLIENT", "option", "auto", choices=("auto", "openssh", "paramiko"),
            meaning="What moves the bytes: auto (paramiko, or OpenSSH's scp where the server takes only "
                    "small SFTP writes), paramiko, or openssh (scp)."))

FAST_CIPHER = "aes128-gcm@openssh.com"
DEFAULT_REQUEST = 32768      # what every SFTP server accepts
FAST_REQUEST = 128 * 1024    # from here on paramiko keeps up with scp
LARGEST_REQUEST = 255 * 1024  # OpenSSH's sftp-server takes messages up to 256 KiB
TIMEOUT = 60
IN_FLIGHT = 64  # pipelined SFTP requests of a purge (delete_many)
REMOTE_MODE = 0o600  # of every copy on the server
# host key algorithms in OpenSSH's order of preference; the known_hosts
# type "ssh-rsa" stands for the three RSA signature algorithms
HOSTKEY_ORDER = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
# what ssh prints when retrying cannot help: a host key or a key refused
PERMANENT = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                       r"host key is known|Permission denied \(|Too many authentication failures|"
                       r"UNPROTECTED PRIVATE KEY|Load key .*: |incorrect passphrase|"
                       r"No such file or directory|Permission denied$|no matching host key type")
# ssh's banner lines that say nothing about this case
_BOILERPLATE = re.compile(r"^(@+|IT IS POSSIBLE THAT SOMEONE|Someone could be eavesdropping|"
                          r"It is also possible that a host key|Please contact your system|"
                          r"Add correct host key in|.*to get rid of this message|"
                          r"remove with:|ssh-keygen -f |\S*scp: Connection closed|lost connection)")


def check(settings):
    """What the declarations do not check (``settings``: a settings.View;
    SSH_HOST, SSH_DIR, SSH_KEY are checked as SETTINGS declares)."""
    where = settings.where
    problems = []
    if settings.valid("SSH_USER"):
        user = settings["SSH_USER"]
        if user and (user.startswith("-") or any(c.isspace() or not c.isprintable() for c in user)):
            problems.append("%s: SSH_USER=%r: must be a user name (no spaces or control characters, "
                            "not starting with '-')" % (where("SSH_USER"), user))
    path = settings["SSH_KNOWN_HOSTS"] if settings.valid("SSH_KNOWN_HOSTS") else ""
    if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        key, what = "SSH_KNOWN_HOSTS", "not readable" if os.path.isfile(path) else "no such file"
        port = settings["SSH_PORT"] if settings.valid("SSH_PORT") else 22
        host = settings["SSH_HOST"] if settings.valid("SSH_HOST") and settings["SSH_HOST"] else "HOST"
        problems.append("%s: SSH_KNOWN_HOSTS=%s: %s (create it with: ssh-keyscan -p %s %s > %s, "
                        "after checking the fingerprint)" % (where(key), path, what, port, host, path))
    return problems


def requirements(settings):
    """OpenSSH's scp and ssh when SSH_CLIENT=openssh (otherwise paramiko
    moves the bytes, or scp where it is installed); and an SSH_HOST that
    only the user's ssh_config knows (the original's scp read it)."""
    lines = []
    host = settings["SSH_HOST"] if settings.valid("SSH_HOST") else ""
    config = os.path.expanduser("~/.ssh/config")
    if host and host in _config_hosts(config):
        lines.append("%s: SSH_HOST=%s is a Host of %s, which packrat does not read: set its HostName, "
                     "Port, User and IdentityFile in SSH_HOST, SSH_PORT, SSH_USER and SSH_KEY"
                     % (settings.where("SSH_HOST"), host, config))
    if (settings.get("SSH_CLIENT") or "auto") != "openssh":
        return lines
    return lines + ["%s: SSH_CLIENT=openssh, but %s is not installed (not found in PATH): the %s upload "
                    "will fail" % (settings.where("SSH_CLIENT"), program, getattr(settings, "module", None) or "ssh")
                    for program in ("scp", "ssh") if not execute.which(program)]


def _config_hosts(path):
    """The literal names of the Host lines of ssh_config ``path`` (no pattern)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 20)
    except OSError:
        return set()
    found = set()
    for m in re.finditer(r"^[ \t]*host(?:[ \t]*=[ \t]*|[ \t]+)(.+)$", text, re.M | re.I):
        found.update(word for word in m.group(1).split() if not re.search(r"[*?!]", word))
    return found


def _paramiko():
    """paramiko, imported without invoke: paramiko imports invoke only to run
    the "Match exec" lines of an ssh_config file, which packrat never reads
    (its settings say where and how to connect); invoke and what it imports
    cost 6.5 MiB of every run that connects, and 0.1 s (BENCHMARKS.md, the
    night's peak RSS)."""
    if "paramiko" not in sys.modules:
        hidden = "invoke" not in sys.modules
        if hidden:
            sys.modules["invoke"] = None  # import invoke raises ImportError, which paramiko expects
        try:
            import paramiko  # noqa: F401
        finally:
            if hidden:
                del sys.modules["invoke"]
        # its transport thread logs a failure with a traceback; with no handler
        # anywhere, logging's last resort printed them on stderr. The failure
        # reaches packrat as the exception of the call, said in one line.
        import logging
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
    return sys.modules["paramiko"]


def _host_id(host, port):
    """How known_hosts names the host: ``host`` on 22, ``[host]:port`` else."""
    return host if int(port) == 22 else "[%s]:%d" % (host, int(port))


class ScpFailed(Exception):
    """scp exited non-zero; ``stderr`` holds ssh's own words."""

    def __init__(self, code, stderr, message, program="scp"):
        super().__init__("%s failed (status %s): %s" % (program, code, message))
        self.code, self.stderr, self.message = code, stderr or "", message


class Remote(transfer.Transport):
    """What a subclass (rsync.py) builds on: ``_put`` (put's data path),
    ``_ssh_options(askpass)``, ``_openssh(argv_for, watch, progress)``,
    ``_conn()``, ``_path(name)``, ``_spec(name)``."""

    name = "ssh"
    capabilities = frozenset({"transfer", "credentials", "host_keys", "reconnect", "bulk_delete", "stream"})

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
        self._askpass = None  # whether scp needs SSH_KEY_PASSPHRASE (known after the first look)
        self._owners = {}  # name -> uid, of the last listing (foreign())

    def use_openssh(self):
        """Whether scp moves the bytes (see the module's notes)."""
        if self.choice != "auto":
            return self.choice == "openssh"
        return (_request_size(self._conn()) < FAST_REQUEST and bool(execute.which("scp"))
                and not self._needs_askpass())  # paramiko has the passphrase itself

    def describe(self):
        return "%s %s@%s:%s" % (self.name, self.user, _host_id(self.host, self.port), self.directory)

    @property
    def transient(self):
        paramiko = _paramiko()
        return (OSError, EOFError, paramiko.SSHException)

    def classify(self, exc):
        """scp's failure is final where ssh says retrying cannot help (a
        refused key or host key: PERMANENT); a dropped link, a refused
        connection, paramiko's errors are transient."""
        if isinstance(exc, ScpFailed):
            return transfer.PERMANENT if PERMANENT.search(exc.stderr) else transfer.TRANSIENT
        return super().classify(exc)

    # -- connection -----------------------------------------------------------
    def _fix(self):
        target = self.known_files[0] if self.known_files else "~/.ssh/known_hosts"
        return ("check the key's fingerprint with the host's admin, then add it: "
                "ssh-keyscan -p %d %s >> %s (and set SSH_KNOWN_HOSTS=%s)"
                % (self.port, self.host, target, target))

    def open(self):
        paramiko = _paramiko()

        remote = self

        class Refuse(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                raise PackratError(
                    "%s: unknown host key (%s %s) for %s: not in %s; refusing to connect. To trust it, %s"
                    % (remote.describe(), key.get_name(), key.fingerprint, hostname,
                       " or ".join(remote.known_files) or "any known_hosts file", remote._fix()))

        class Transport(paramiko.Transport):
            def start_client(self, *args, **kw):
                # SSHClient.connect puts only the first known_hosts type first;
                # OpenSSH puts every known type first, in its own order
                known = client.get_host_keys().lookup(_host_id(remote.host, remote.port))
                if known:
                    options = self.get_security_options()
                    algorithms = _known_algorithms(known.keys())
                    first = [a for a in HOSTKEY_ORDER if a in algorithms and a in options.key_types]
                    if first:
                        options.key_types = first + [a for a in options.key_types if a not in first]
                return super().start_client(*args, **kw)

        def transport(sock, disabled_algorithms=None):
            t = Transport(sock, disabled_algorithms=disabled_algorithms)
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
            kw.update(pkey=self._load_key(), look_for_keys=False, allow_agent=False)
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
        except paramiko.ssh_exception.NoValidConnectionsError:
            client.close()
            raise  # an OSError: transient
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

    def _plain_key(self):
        """SSH_KEY read without a passphrase; None when it is protected by
        one. A file that is no private key is a PackratError."""
        paramiko = _paramiko()
        try:
            return paramiko.PKey.from_path(self.key)
        except TypeError:  # protected by a passphrase
            return None
        except (OSError, ValueError, paramiko.SSHException) as exc:
            raise PackratError("%s: SSH_KEY %s is not a private key packrat can read (%s)"
                               % (self.describe(), self.key, exc))

    def _load_key(self):
        """SSH_KEY as paramiko uses it: the file itself when it has no
        passphrase; else the ssh-agent's copy of it (the agent holds a key
        with the same public part); else the file unlocked with
        SSH_KEY_PASSPHRASE."""
        paramiko = _paramiko()
        plain = self._plain_key()
        if plain is not None:
            return plain
        agent_key = self._agent_key()
        if agent_key is not None:
            return agent_key
        passphrase = self.settings.get("SSH_KEY_PASSPHRASE") or ""
        if not passphrase:
            raise PackratError(
                "%s: SSH_KEY %s is protected by a passphrase, and no ssh-agent holds it "
                "(SSH_AUTH_SOCK %s): add it to the agent (ssh-add %s) or set SSH_KEY_PASSPHRASE"
                % (self.describe(), self.key, "is not set" if not os.environ.get("SSH_AUTH_SOCK")
                   else "leads to an agent without it", self.key))
        try:
            return paramiko.PKey.from_path(self.key, passphrase.encode("utf-8", "surrogateescape"))
        except (TypeError, ValueError, paramiko.SSHException):
            raise PackratError("%s: SSH_KEY %s cannot be unlocked with SSH_KEY_PASSPHRASE "
                               "(wrong passphrase?)" % (self.describe(), self.key)) from None

    def _agent_key(self):
        """The agent's key whose public part is SSH_KEY's, or None."""
        paramiko = _paramiko()
        blob = _public_blob(self.key)
        if blob is None or not os.environ.get("SSH_AUTH_SOCK"):
            return None
        try:
            agent = paramiko.Agent()
            keys = agent.get_keys()
        except (OSError, paramiko.SSHException) as exc:
            log.verbose("%s: ssh-agent: %s" % (self.describe(), exc))
            return None
        for key in keys:
            if key.asbytes() == blob:
                return key
        return None

    def _needs_askpass(self):
        """Whether scp must be given SSH_KEY_PASSPHRASE (the key is protected
        and no agent holds it)."""
        if self._askpass is None:
            self._askpass = False
            if self.key and self.settings.get("SSH_KEY_PASSPHRASE"):
                try:
                    self._askpass = self._plain_key() is None and self._agent_key() is None
                except PackratError:  # not a key: scp reports it itself
                    pass
        return self._askpass

    def keepalive(self):
        """A keep-alive request, as OpenSSH's ServerAliveInterval sends (no reply awaited)."""
        transport = self.client.get_transport() if self.client is not None else None
        if transport is not None and transport.is_active():
            transport.global_request("keepalive@openssh.com", wait=False)

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
        """The remote path of ``name``: a str, or its bytes where the name is
        not UTF-8 (paramiko would encode a str strictly; bytes go as they are)."""
        path = posixpath.join(self.directory, name)
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(path)
        return path

    # -- data -------------------------------------------------------------------
    def _scp_argv(self, askpass=False):
        argv = ["scp", "-s", "-F", "none", "-P", str(self.port)] + self._ssh_options(askpass)
        if self.bwlimit:
            argv += ["-l", str(self.bwlimit)]
        return argv

    def _ssh_options(self, askpass=False):
        """OpenSSH's options for scp, and for any program that runs ssh
        (rsync -e): the key, the known_hosts files checked strictly, no
        password prompt (BatchMode, unless ``askpass`` hands ssh
        SSH_KEY_PASSPHRASE)."""
        argv = ["-o", "LogLevel=ERROR",  # not -q: that hides ssh's own error messages
                "-o", "BatchMode=%s" % ("no" if askpass else "yes"),
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "Ciphers=^" + FAST_CIPHER]
        if self.known_files:
            argv += ["-o", "UserKnownHostsFile=" + " ".join(self.known_files),
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if askpass:
            argv += ["-o", "NumberOfPasswordPrompts=1"]
        return argv

    def _askpass_env(self):
        """The environment that hands SSH_KEY_PASSPHRASE to ssh (through
        SSH_ASKPASS: a 0700 helper in packrat's private directory that prints
        it from the environment), or None where no passphrase is needed."""
        if not self._needs_askpass():
            return None
        helper = os.path.join(execute.private_dir(), "ssh-askpass")
        if not os.path.exists(helper):
            fd = os.open(helper, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
            with os.fdopen(fd, "w") as fh:
                fh.write('#!/bin/sh\nprintf \'%s\\n\' "$PACKRAT_SSH_KEY_PASSPHRASE"\n')
        if not os.access(helper, os.X_OK):
            raise PackratError("%s: SSH_CLIENT=openssh with a passphrase key needs an askpass helper, but %s "
                               "cannot be executed (noexec?); load the key into ssh-agent or set "
                               "SSH_CLIENT=paramiko" % (self.describe(), helper))
        return {"SSH_ASKPASS": helper, "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": os.environ.get("DISPLAY", ":0"),
                "PACKRAT_SSH_KEY_PASSPHRASE": self.settings["SSH_KEY_PASSPHRASE"]}

    def _spec(self, name):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s@%s:%s" % (self.user, host, os.fsdecode(self._path(name)))

    def _scp(self, files, watch=None, progress=None):
        """Run scp on ``files`` (source, destination), as _openssh() says."""
        self._openssh(lambda askpass: self._scp_argv(askpass=askpass) + ["--"] + list(files), watch, progress)

    def _openssh(self, argv_for, watch=None, progress=None):
        """Run a program that copies through OpenSSH's ssh (scp; rsync in
        rsync.py), its argv ``argv_for(askpass)``; meanwhile report the size
        of the remote file ``watch`` as progress. A refused key or host key
        is final (PackratError, with ssh's own message); anything else is
        transient (ScpFailed)."""
        env = self._askpass_env()
        argv = argv_for(env is not None)
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
            execute.run(argv, env=env)
        except execute.CommandFailed as exc:
            failed = ScpFailed(exc.code, exc.stderr, _ssh_message(exc.stderr) or str(exc), argv[0])
            if self.classify(failed) == transfer.TRANSIENT:
                raise failed  # retried
            hint = ""
            if "HOST IDENTIFICATION HAS CHANGED" in failed.stderr or "host key is known" in failed.stderr:
                hint = ("; if the change is expected, remove the old key (ssh-keygen -R '%s' -f %s) and %s"
                        % (_host_id(self.host, self.port), (self.known_files or ["~/.ssh/known_hosts"])[0],
                           self._fix()))
            raise PackratError("%s: %s refused (not retried): %s%s" % (self.describe(), argv[0], failed.message, hint))
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
        path = self._path(remote_name)
        try:  # a stale temporary keeps its mode: start afresh
            sftp.remove(path)
        except FileNotFoundError:
            pass
        if self.use_openssh():
            self._scp([local_path, self._spec(remote_name)], watch=path, progress=progress)
            sftp.chmod(path, REMOTE_MODE)  # scp gives the local file's mode; before the rename
            return
        with open(local_path, "rb") as src:
            self._write(sftp, src, path, progress)

    def _write(self, sftp, src, path, progress):
        """Write what ``src.read`` gives into a new file ``path`` over SFTP,
        pipelined, in the largest requests the server takes."""
        size = _request_size(sftp)
        done, started = 0, time.monotonic()
        with _create(sftp, path) as dst:
            dst.set_pipelined(True)
            dst.MAX_REQUEST_SIZE = size
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
                done += len(block)
                self._throttle(done, started)
                if progress:
                    progress(done)

    def streams(self):
        return "stream" in self.capabilities and not self.use_openssh()

    def put_stream(self, reader, remote_name, progress=None):
        sftp = self._conn()
        path = self._path(remote_name)
        try:
            try:  # a stale temporary keeps its mode: start afresh
                sftp.remove(path)
            except FileNotFoundError:
                pass
            self._write(sftp, reader, path, progress)
        except PermissionError as exc:  # not worth a retry
            raise PackratError("%s: cannot write %s: %s" % (self.describe(), remote_name, exc))

    def _throttle(self, done, started):
        if self.bwlimit:
            due = done * 8 / (self.bwlimit * 1000.0)
            late = due - (time.monotonic() - started)
            if late > 0:
                time.sleep(late)

    def get(self, remote_name, local_path, progress=None):
        sftp = self._conn()
        if self.use_openssh():
            self._scp([self._spec(remote_name), local_path])
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
        entries = _listdir(self._conn(), self.directory)
        plain = [e for e in entries if e.st_mode is not None and stat.S_ISREG(e.st_mode)]
        self._owners = {e.filename: e.st_uid for e in plain}  # for foreign()
        return sorted(e.filename for e in plain)

    def foreign(self, names):
        """The names of ``names`` (of the last listing) that another account
        of the server owns: files packrat did not write, which the purge
        neither deletes nor takes as this host's newest backup (a neighbour
        of a shared sticky directory could otherwise plant an empty newer
        master and have the real chain purged). The uid packrat's files get
        is learnt from a probe file, made and removed at once; nothing is
        filtered in a dry run (which writes nothing) or where the probe
        cannot be made."""
        owners = self._owners
        if self.ctx.dry_run or not owners:
            return set()
        sftp = self._conn()
        path = self._path(".packrat-probe-%d" % os.getpid())
        try:
            try:
                sftp.remove(path)  # one a killed run left
            except (OSError, IOError):
                pass
            handle = _create(sftp, path)
            try:
                mine = handle.stat().st_uid
            finally:
                handle.close()
                sftp.remove(path)
        except (OSError, IOError) as exc:
            log.verbose("%s: cannot tell the owner of packrat's files here (%s)" % (self.describe(), exc))
            return set()
        return {n for n in names if owners.get(n, mine) != mine}

    def delete(self, remote_name):
        try:
            self._conn().remove(self._path(remote_name))
        except FileNotFoundError:
            log.verbose("%s: %s was already gone" % (self.describe(), remote_name))

    def delete_many(self, names):
        """The purge's deletes, pipelined over the one SFTP connection: the
        remove requests go IN_FLIGHT at a time in one write (one SSH packet
        for all of them), the next batch before the answers to the last are
        read (one round trip and one packet per name made 10,000 names take
        10 s). A name already gone is not an error; the first other failure
        is raised once every answer in flight is read, so the connection
        stays usable (and a retry of the whole batch finds the names deleted
        so far gone)."""
        sftp = self._conn()
        answers, sent = _Answers(sftp), 0
        paths = [self._path(name) for name in names]
        for start in range(0, len(paths), IN_FLIGHT):
            sent += _send_removes(sftp, answers, paths[start:start + IN_FLIGHT])
            while sent - answers.read > IN_FLIGHT:  # at most two batches in flight
                sftp._read_response()  # one answer, handed to answers._async_response
        while answers.read < sent:
            sftp._read_response()
        if answers.error is not None:
            raise answers.error


def _send_removes(sftp, answers, paths):
    """SFTP remove requests for ``paths`` in one write, each as paramiko's
    _async_request makes it (its answer goes to ``answers``); the count."""
    import struct
    from paramiko.message import Message
    from paramiko.sftp import CMD_REMOVE
    out = []
    with sftp._lock:
        for path in paths:
            msg = Message()
            msg.add_int(sftp.request_number)
            msg.add_string(path)
            sftp._expecting[sftp.request_number] = answers
            sftp.request_number += 1
            body = msg.asbytes()
            out.append(struct.pack(">IB", len(body) + 1, CMD_REMOVE) + body)
    sftp._write_all(b"".join(out))
    return len(paths)


class _Answers:
    """The answers to pipelined SFTP remove requests: paramiko hands each to
    ``_async_response`` (as to a file's prefetch); the first failure other
    than "no such file" is kept."""

    def __init__(self, sftp):
        self.sftp, self.read, self.error = sftp, 0, None

    def _async_response(self, kind, msg, num):
        from paramiko.sftp import CMD_STATUS, SFTPError
        self.read += 1
        try:
            if kind != CMD_STATUS:
                raise SFTPError("Expected status")
            self.sftp._convert_status(msg)  # IOError (FileNotFoundError, PermissionError) unless OK
        except FileNotFoundError:
            pass
        except (IOError, EOFError, SFTPError) as exc:
            if self.error is None:
                self.error = exc


def _listdir(sftp, path):
    """SFTPAttributes of the entries of ``path`` (not . and ..), each
    filename a str that keeps bytes that are not UTF-8 as surrogates, as a
    local file name would: one such name in a shared directory (another
    host's, a planted one) must not make the whole listing fail, as
    paramiko's listdir_attr does (it decodes every name strictly)."""
    from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR, SFTPError
    from paramiko.sftp_attr import SFTPAttributes
    kind, msg = sftp._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise SFTPError("Expected handle")
    handle = msg.get_binary()
    entries = []
    try:
        while True:
            try:
                kind, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:  # the end of the listing
                break
            if kind != CMD_NAME:
                raise SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                filename = msg.get_string().decode("utf-8", "surrogateescape")
                longname = msg.get_string().decode("utf-8", "surrogateescape")
                attr = SFTPAttributes._from_msg(msg, filename, longname)
                if filename not in (".", ".."):
                    entries.append(attr)
    finally:
        sftp._request(CMD_CLOSE, handle)
    return entries


def _create(sftp, path):
    """Open ``path`` on the server for writing, created exclusively with
    mode 0600 (SFTP OPEN with the permissions attribute: the data never sits
    in a file others can read), and set 0600 once more through the handle
    where the server applied a umask of its own or kept an older mode."""
    from paramiko.sftp import CMD_HANDLE, CMD_OPEN
    from paramiko.sftp_attr import SFTPAttributes
    from paramiko.sftp_client import SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_TRUNC, SFTP_FLAG_WRITE
    from paramiko.sftp_file import SFTPFile
    attrs = SFTPAttributes()
    attrs.st_mode = REMOTE_MODE
    kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC | SFTP_FLAG_EXCL,
                              attrs)
    if kind != CMD_HANDLE:
        raise OSError("unexpected answer to OPEN of %s" % path)
    handle = SFTPFile(sftp, msg.get_binary(), "wb", -1)
    try:
        handle.chmod(REMOTE_MODE)
    except OSError as exc:
        log.verbose("cannot set the mode of %s on the server: %s" % (path, exc))
    return handle


def _known_algorithms(types):
    """The host key algorithms that verify the known_hosts key types."""
    out = set()
    for kind in types:
        out.update(("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if kind == "ssh-rsa" else (kind,))
    return out


def _public_blob(key_file):
    """The public key of SSH_KEY as the SSH wire format, without the
    passphrase: from KEY.pub, else from the unencrypted header of an OpenSSH
    format private key; None where neither tells."""
    try:
        with open(key_file + ".pub") as fh:
            return base64.b64decode(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(key_file) as fh:
            text = fh.read()
        body = text.split("-----BEGIN OPENSSH PRIVATE KEY-----", 1)[1].split("-----END", 1)[0]
        data = base64.b64decode("".join(body.split()))
        magic = b"openssh-key-v1\0"
        if not data.startswith(magic):
            return None
        from paramiko.message import Message
        m = Message(data[len(magic):])
        m.get_string(), m.get_string(), m.get_string()  # cipher, kdf, kdf options
        if m.get_int() < 1:
            return None
        return m.get_binary()
    except (OSError, IndexError, ValueError, UnicodeDecodeError):
        return None


def _ssh_message(stderr):
    """ssh's own lines of scp's stderr, the banners left out, in one line."""
    lines = []
    for line in (stderr or "").splitlines():
        line = line.strip().strip("@").strip()
        if not line or _BOILERPLATE.match(line):
            continue
        if lines and lines[-1].endswith(" sent by the remote host is"):
            lines[-1] += " " + line  # the fingerprint on a line of its own
        else:
            lines.append(line)
    return log.mask(" / ".join(lines[-8:]))


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


# The conformance suite's entries (tests/test_upload_conformance.py): how
# this module meets its test server (tests/servers/sshd.py), once per data
# path. What it can do is Remote.capabilities (no "checksum": SFTP on
# OpenSSH gives no digest).
_SSH_ENTRY = {
    "server": "sshd",                           # the pytest fixture
    "files": "{server.root}",                   # SSH_DIR, on this machine
    "refused": {"SSH_KEY": "{server.other_key}"},  # a key the server does not know
    "host_keys": {"setting": "SSH_KNOWN_HOSTS", "host": "SSH_HOST", "port": "SSH_PORT",
                  "other_key": "{server.other_key}"},  # its .pub: a host key not the server's
    "slow": {"SSH_BWLIMIT": 16000},             # Kbit/s: 2 MB/s, slow enough to cut a put
}
CONFORMANCE = {
    "ssh": dict(_SSH_ENTRY, settings={"SSH_CLIENT": "openssh"},
                connection_per_file=True),      # scp's own connection
    "ssh-paramiko": dict(_SSH_ENTRY, settings={"SSH_CLIENT": "paramiko"}),
}
