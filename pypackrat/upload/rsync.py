"""Upload module ``rsync``: the ssh module, with the bytes sent by rsync
over OpenSSH's ssh (rsync must be installed here and on the server).

It is built on ``ssh`` and declares nothing of its own: the settings are
ssh's (SSH_HOST, SSH_USER, SSH_KEY, SSH_KEY_PASSPHRASE, SSH_DIR, SSH_PORT,
SSH_KNOWN_HOSTS, SSH_BWLIMIT; SSH_CLIENT chooses only how downloads go),
checked as ssh checks them; the listing, deletes, sizes, renames and
downloads are ssh's (one SFTP connection per run). Only ``put`` differs:
the file is created on the server through SFTP (exclusively, 0600), then
rsync writes into it (``--inplace``: its name stays the temporary
``NAME.partial`` that transfer.upload verifies and renames), through an
``ssh -e`` command with ssh's own options (the key, known_hosts checked
strictly, BatchMode; a passphrase through ssh's askpass helper, never in
argv). SSH_BWLIMIT (Kbit/s) becomes rsync's --bwlimit (KiB/s).
"""
import os
import re

from pypackrat import execute, transfer
from pypackrat.settings import Group
from pypackrat.upload import ssh

SETTINGS = Group("rsync upload module (over ssh)", uses=(ssh.SETTINGS,))

check = ssh.check  # ssh's own checks of its settings, under this module's name

# what rsync (or the server's shell) says when retrying cannot help
PERMANENT = re.compile(r"command not found|rsync: not found|protocol version mismatch|"
                       r"unknown option|unrecognized option")


def requirements(settings):
    """rsync and ssh here (and ssh's own: scp with SSH_CLIENT=openssh)."""
    return ssh.requirements(settings) + [
        "%s: UPLOAD_MODULES has rsync, but %s is not installed (not found in PATH): the rsync upload "
        "will fail" % (settings.where("UPLOAD_MODULES"), program)
        for program in ("rsync", "ssh") if not execute.which(program)]


def _rsh_word(word):
    """One word of rsync's -e command, quoted as rsync splits it (in single
    quotes; a quote inside is doubled)."""
    return "'%s'" % word.replace("'", "''")


class Remote(ssh.Remote):
    name = "rsync"
    capabilities = ssh.Remote.capabilities - {"stream"}  # rsync moves the bytes of whole files

    def classify(self, exc):
        if isinstance(exc, ssh.ScpFailed) and PERMANENT.search(exc.stderr):
            return transfer.PERMANENT
        return super().classify(exc)

    def _rsync_argv(self, askpass=False):
        # -s (--secluded-args, once --protect-args): names go through the protocol, no shell
        rsh = ["ssh", "-F", "none", "-p", str(self.port)] + self._ssh_options(askpass)
        argv = ["rsync", "-s", "--whole-file", "--ignore-times", "--inplace",
                "--perms", "--chmod=F600", "--timeout=%d" % (ssh.TIMEOUT * 5),
                "-e", " ".join(_rsh_word(w) for w in rsh)]
        if self.bwlimit:  # Kbit/s -> KiB/s
            argv.append("--bwlimit=%d" % max(1, self.bwlimit * 1000 // 8192))
        return argv

    def _put(self, local_path, remote_name, progress):
        sftp = self._conn()
        path = self._path(remote_name)
        try:  # a stale temporary: start afresh
            sftp.remove(path)
        except FileNotFoundError:
            pass
        ssh._create(sftp, path).close()  # ours, 0600 from the start; rsync writes into it
        source = os.path.abspath(local_path)  # a ':' before any '/' would make it a host
        self._openssh(lambda askpass: self._rsync_argv(askpass) + ["--", source, self._spec(remote_name)],
                      watch=path, progress=progress)


# The conformance suite's entry (tests/test_upload_conformance.py): ssh's
# test server; each put is one more SSH login (rsync's own).
CONFORMANCE = {
    "rsync": {
        "server": "sshd",                           # the pytest fixture
        "files": "{server.root}",                   # SSH_DIR, on this machine
        "refused": {"SSH_KEY": "{server.other_key}"},  # a key the server does not know
        "host_keys": {"setting": "SSH_KNOWN_HOSTS", "host": "SSH_HOST", "port": "SSH_PORT",
                      "other_key": "{server.other_key}"},
        "slow": {"SSH_BWLIMIT": 16000},             # Kbit/s: 2 MB/s, slow enough to cut a put
        "connection_per_file": True,
    },
}
