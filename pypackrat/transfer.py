"""Uploads, the same for every transport: the two interfaces an upload
module's ``Remote`` implements, and the wrapper that puts a file under a
temporary name, verifies it, renames it, and retries transient failures.

``Lister`` is what the purge needs: list, delete, delete_many, foreign,
describe (a Bash upload module has it: list_NAME and purge_NAME).
``Transport(Lister)`` adds the transfer: put, get, size, rename, checksum;
only the Python transports have it. What a remote can do is declared in
its class's ``capabilities`` (CAPABILITIES says what each means), never
guessed from which methods it overrides.

A transport only moves bytes; this module decides what counts as done:

1. put the file as ``NAME.partial`` (skipped with the "atomic_put"
   capability: an S3 object appears whole or not at all);
2. compare the remote size with the local one, and the checksum where the
   transport has the "checksum" capability and gives one;
3. rename it to ``NAME``;
4. on an error the transport's own ``classify(exc)`` calls transient,
   reconnect and start again, with backoff, up to UPLOAD_RETRIES times;
   then give up with the last error.
"""
import contextlib
import hashlib
import os
import sys
import threading
import time
from concurrent.futures import CancelledError

from pypackrat import log
from pypackrat.core.growing import Abandoned
from pypackrat.core.temp import PARTIAL, temporary_name
from pypackrat.errors import PackratError

TRANSIENT, PERMANENT = "transient", "permanent"  # what classify() answers

# What a remote may declare in ``capabilities``; the conformance suite
# (tests/test_upload_conformance.py) skips a test only for a capability
# the module does not declare.
CAPABILITIES = {
    "transfer": "put, get, size, rename (a Transport): uploads, downloads for restore and verify",
    "checksum": "checksum() gives a digest of a remote file, compared with the local file's",
    "atomic_put": "a put appears whole or not at all: no temporary NAME.partial",
    "credentials": "logs in with credentials of its settings, which the server may refuse",
    "host_keys": "checks the server's host key against known_hosts",
    "reconnect": "holds a network connection, which a failure can cut; reopened for a retry",
    "bulk_delete": "delete_many removes thousands of names in seconds (one connection, batched)",
    "stream": "put_stream sends a file while it is still being written (an archive dar is making)",
    "threadsafe": "its calls may come from two threads at once: a streamed archive is finished (completed, "
                  "checked, renamed) in a thread of its own while the module already sends its next file",
}


class Lister:
    """One remote as the purge sees it: list and delete. Subclasses
    implement list() and delete(); a connection in open() and close()."""

    name = "?"
    capabilities = frozenset()
    transient = ()  # the exception types classify() calls transient

    def __init__(self, ctx):
        self.ctx = ctx
        self.settings = ctx.settings

    # connection --------------------------------------------------------
    def open(self):
        """Connect (called once per run, and again after a transient error)."""

    def close(self):
        """Disconnect; must not raise."""

    def reconnect(self):
        self.close()
        self.open()

    def keepalive(self):
        """Keep an idle connection open (an upload worker waiting for the
        next file calls this every run.KEEPALIVE seconds); nothing by default."""

    def __enter__(self):
        _retrying(self, "connection", self.open, reconnect=False)
        return self

    def __exit__(self, *exc):
        self.close()

    def classify(self, exc):
        """TRANSIENT where trying again may help (a dropped link, a timeout,
        a server's passing refusal: reconnect and retry), PERMANENT where it
        cannot (refused credentials, a missing directory: retrying only
        delays the report). Each transport knows its protocol's errors; by
        default the exception types of ``transient`` are transient, and a
        PackratError, whose message is already the operator's, is final."""
        if isinstance(exc, PackratError) or not isinstance(exc, tuple(self.transient)):
            return PERMANENT
        return TRANSIENT

    # listing and deleting ---------------------------------------------
    def list(self):
        """The file names in the remote directory (base names)."""
        raise NotImplementedError

    def delete(self, remote_name):
        raise NotImplementedError

    def foreign(self, names):
        """The names of ``names`` (this host's, by name) whose files another
        account of the remote owns: planted, so neither purged nor taken as
        a backup. Where the remote tells owners (local, SFTP); none else."""
        return set()

    def delete_many(self, names):
        """Delete several names (a purge); a transport with a batch delete
        (S3: 1,000 keys a request) overrides this. A name already gone is
        not an error, so that a retried batch goes through."""
        for name in names:
            try:
                self.delete(name)
            except FileNotFoundError:
                pass

    def describe(self):
        return self.name


class Transport(Lister):
    """A remote that moves the bytes itself (the Python upload modules)."""

    capabilities = frozenset({"transfer"})
    transient = (OSError, EOFError)

    def put(self, local_path, remote_name, progress=None):
        """Store the local file under ``remote_name``; call
        ``progress(bytes_done)`` now and then if given."""
        raise NotImplementedError

    def put_stream(self, reader, remote_name, progress=None):
        """Store what ``reader.read(n)`` gives, until it gives b"", under
        ``remote_name``: a file still being written (core.growing.Reader),
        whose size is known only at its end. With the "stream" capability.
        Returns None; with "atomic_put" too, an upload still open instead,
        whose complete() makes the file appear and abort() drops it, and
        whose ``checksum_algorithm`` is what checksum() will then report
        (or None)."""
        raise NotImplementedError

    def streams(self):
        """Whether put_stream can be used, over this connection (ssh: not
        where scp moves the bytes)."""
        return "stream" in self.capabilities

    def get(self, remote_name, local_path, progress=None):
        """Fetch ``remote_name`` into the local file ``local_path`` (for
        restore and verify)."""
        raise NotImplementedError

    def rename(self, old, new):
        """Rename ``old`` to ``new``, replacing ``new`` if it exists."""
        raise NotImplementedError

    def size(self, remote_name):
        """Size in bytes, or None if there is no such file."""
        raise NotImplementedError

    def checksum(self, remote_name):
        """(algorithm, hex digest) of the remote file, where the protocol
        gives one cheaply (hashlib names: "md5", "sha256"), else None. Asked
        only with the "checksum" capability."""
        return None

    def upload_checksum(self, local_path):
        """The algorithm checksum() will report for ``local_path`` once put,
        where it is known before the put (None: not known): upload() then
        computes the local digest while the put runs, not after it."""
        return None


class Digest(str):
    """A checksum algorithm of a transport's own, where a remote's digest is
    not a hashlib one (s3.MultipartETag): its str is its name in messages,
    ``file_digest(path)`` computes it over a local file."""

    def file_digest(self, path):
        raise NotImplementedError


def file_digest(source, algorithm):
    """The hex digest of a local file, ``source`` a path or a binary file
    open for reading; ``algorithm`` a hashlib name or a Digest."""
    if isinstance(algorithm, Digest):
        return algorithm.file_digest(source)
    if isinstance(source, (str, bytes, os.PathLike)):
        with open(source, "rb") as fh:
            return file_digest(fh, algorithm)
    h = hashlib.new(algorithm)
    for block in iter(lambda: source.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


class _Progress:
    """A progress line on a terminal; nothing at all under cron."""

    def __init__(self, label, total):
        self.label, self.total = label, max(total, 1)
        self.enabled = sys.stderr.isatty() and total > 8 << 20
        self.last = 0.0

    def __call__(self, done):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        sys.stderr.write("\r%s %3d%% (%d MiB)" % (self.label, done * 100 // self.total, done >> 20))
        sys.stderr.flush()

    def finish(self):
        if self.enabled:
            sys.stderr.write("\n")


class _Digesting:
    """The digest of a local file, computed in a thread of its own while the
    upload runs (hashlib works without the GIL): verify() takes it when the
    remote reports the same algorithm."""

    def __init__(self, path, algorithm):
        self.algorithm, self.value = algorithm, None
        self.thread = threading.Thread(target=self._run, args=(path,), name="packrat-digest", daemon=True)
        self.thread.start()

    def _run(self, path):
        try:
            self.value = file_digest(path, self.algorithm)
        except Exception:  # no value: verify() computes it again, and reports
            pass

    def get(self, algorithm):
        """The digest, if it is of ``algorithm`` and was computed; else None."""
        if str(algorithm) != str(self.algorithm):
            return None
        self.thread.join()
        return self.value


def verify(remote, local_path, remote_name, digesting=None):
    """Raise PackratError unless the remote copy matches the local file
    (``digesting``: a _Digesting of the local file, begun with the put)."""
    local_size = os.path.getsize(local_path)
    remote_size = remote.size(remote_name)
    if remote_size != local_size:
        raise VerifyError("%s: remote copy %s has %s bytes, the local file %d"
                          % (remote.describe(), remote_name, remote_size, local_size))
    digest = remote.checksum(remote_name) if "checksum" in remote.capabilities else None
    if digest:
        algorithm, value = digest
        local = digesting.get(algorithm) if digesting is not None else None
        if (local or file_digest(local_path, algorithm)) != value:
            raise VerifyError("%s: remote copy %s differs from the local file (%s)"
                              % (remote.describe(), remote_name, algorithm))


class VerifyError(PackratError):
    pass


class Cancelled(BaseException):
    """The run is being stopped (SIGTERM) while an upload goes on: no fault
    of the remote, never retried; the temporary copy is removed (upload())."""


class Stopping(CancelledError):
    """Cancelled, raised in a transport's own thread (boto3's transfer
    threads call the progress report): an ordinary Exception, which those
    threads catch and record, ending their transfer as failed with their
    own clean-up (s3transfer aborts a multipart upload); botocore passes a
    CancelledError on unwrapped and never retries it. The uploading thread
    turns the failure into Cancelled (upload())."""


def _words(exc):
    """What an error says, for the operator: an OSError made without an
    errno (paramiko's NoValidConnectionsError) without its "[Errno None]"."""
    if isinstance(exc, OSError) and exc.errno is None and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _retrying(remote, what, action, reconnect=True, cancel=None):
    """Run ``action()``; on an error ``remote.classify`` calls transient,
    reconnect and retry with backoff. Verification failures are retried too
    (a torn upload). ``reconnect=False`` where the action is the connection
    itself. Once ``cancel`` (a threading.Event) is set, nothing is retried
    and the wait between attempts ends."""
    import tenacity

    settings = remote.settings
    attempts = int(settings.get("UPLOAD_RETRIES", 4)) + 1
    base = float(settings["UPLOAD_RETRY_WAIT"])

    def worth_retrying(exc):
        if cancel is not None and cancel.is_set() or isinstance(exc, Abandoned):
            return False
        return isinstance(exc, VerifyError) or remote.classify(exc) == TRANSIENT

    def before_sleep(state):
        exc = state.outcome.exception()
        log.warn("%s: %s failed (%s), retrying (attempt %d of %d)"
                 % (remote.describe(), what, _words(exc), state.attempt_number + 1, attempts))
        if not reconnect:
            return
        try:
            remote.reconnect()
        except Exception as again:  # the next attempt reports it
            log.verbose("%s: reconnect failed: %s" % (remote.describe(), _words(again)))

    retry = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=base, max=60) if base else tenacity.wait_none(),
        retry=tenacity.retry_if_exception(worth_retrying),
        before_sleep=before_sleep,
        reraise=True,
        **({"sleep": cancel.wait} if cancel is not None else {}),
    )
    try:
        return retry(action)
    except (PackratError, Abandoned):
        raise
    except Exception as exc:
        raise PackratError("%s: %s failed: %s" % (remote.describe(), what, _words(exc)))


def _stopper(cancel):
    """What a transfer asks now and then once ``cancel`` may be set: raises
    Cancelled in the thread that made it (the uploading one), Stopping in
    any other (a transport's own: never a BaseException there)."""
    uploader = threading.get_ident()

    def stopped():
        if cancel is not None and cancel.is_set():
            if threading.get_ident() == uploader:
                raise Cancelled()
            raise Stopping("the run is being stopped")
    return stopped


def upload(remote, local_path, cancel=None):
    """Upload one file: temporary name, verify, rename; retried. Once
    ``cancel`` (a threading.Event) is set, the transfer stops at its next
    progress report or attempt, with Cancelled, and its temporary copy is
    removed. A report made in the uploading thread raises Cancelled; one
    made in a thread of the transport's own (boto3's part uploads) raises
    Stopping there, which ends the transfer as a failure; a failure while
    ``cancel`` is set becomes Cancelled."""
    name = os.path.basename(local_path)
    log.verbose("[%s] uploading %s" % (remote.name.upper(), name))
    if remote.ctx.dry_run:
        log.info("[dry run] would upload %s to %s" % (local_path, remote.describe()))
        return
    target = name if "atomic_put" in remote.capabilities else name + PARTIAL
    progress = _Progress("%s %s" % (remote.name, name), os.path.getsize(local_path))
    stopped = _stopper(cancel)

    def report(done):
        stopped()
        progress(done)

    # the local digest, computed beside the put (once: the file does not change between attempts)
    expected = remote.upload_checksum(local_path) if "checksum" in remote.capabilities else None
    digesting = _Digesting(local_path, expected) if expected is not None else None

    def attempt():
        stopped()
        remote.put(local_path, target, report)
        stopped()
        verify(remote, local_path, target, digesting)
        if target != name:
            remote.rename(target, name)

    try:
        with _cleaning(lambda: _discard(remote, target), cancel):
            _retrying(remote, "upload of %s" % name, attempt, cancel=cancel)
    finally:
        progress.finish()


@contextlib.contextmanager
def _cleaning(clean, cancel):
    """On any failure, ``clean()`` (remove what the upload left); once the
    run is being stopped, the failure becomes Cancelled (stopped
    mid-transfer: Stopping, a socket shut...)."""
    try:
        yield
    except BaseException as exc:
        clean()
        if cancel is not None and cancel.is_set() and not isinstance(exc, Cancelled):
            raise Cancelled() from exc
        raise


def upload_growing(remote, growing, cancel=None, event=None, defer=None):
    """Upload the slices of an archive still being written (core.growing):
    each is sent while it grows, to its temporary remote name (where puts
    are atomic, S3, into an upload left open: put_stream returns what
    completes or aborts it), one slice after the other. Once the archive
    ended well, each copy is finished (_finish_growing): checked, completed,
    checked as upload() checks, and renamed. Where the remote is
    "threadsafe" and ``defer`` is given, ``defer(finish)`` gets that work to
    run in a thread of its own, and this returns None at once: the module
    sends its next file while, say, S3 assembles a large object. Where the
    remote cannot stream (scp), the slices go once the archive ended, as
    files. Raises growing.Abandoned, after removing what it sent, when dar
    failed. ``event(what, path)`` records each slice's start and end.
    Returns the final paths uploaded."""
    from pypackrat.core.growing import Reader
    stopped = _stopper(cancel)
    event = event or (lambda what, path: None)
    if remote.ctx.dry_run or not remote.streams():
        while not growing.wait(POLL_END):
            stopped()
        if not growing.ok:
            raise Abandoned(growing.base)
        sent = []
        for number in growing.slice_numbers(stopped):
            path = growing.final_path(number)
            event("upload started", path)
            upload(remote, path, cancel)
            event("upload ended", path)
            sent.append(path)
        return sent
    atomic = "atomic_put" in remote.capabilities
    pending = []  # [number, target, reader, open upload or None]: put, not yet finished

    with _cleaning(lambda: _drop(remote, pending), cancel):
        for number in growing.slice_numbers(stopped):
            name = os.path.basename(growing.final_path(number))
            target = name if atomic else name + PARTIAL
            log.verbose("[%s] uploading %s while it is written" % (remote.name.upper(), name))
            event("upload started", growing.final_path(number))
            progress = _Progress("%s %s" % (remote.name, name), 0)

            def report(done):
                stopped()
                progress(done)

            def attempt():
                stopped()
                with Reader(growing, number, stopped) as reader:
                    return reader, remote.put_stream(reader, target, report)

            item = [number, target, None, None]
            pending.append(item)
            item[2], item[3] = _retrying(remote, "upload of %s" % name, attempt, cancel=cancel)
        while not growing.wait(POLL_END):
            stopped()
        if not growing.ok:
            raise Abandoned(growing.base)

    def finish():
        with _cleaning(lambda: _drop(remote, pending), cancel):
            return _finish_growing(remote, growing, pending, cancel, event)

    if defer is not None and "threadsafe" in remote.capabilities:
        defer(finish)
        return None
    return finish()


def _finish_growing(remote, growing, pending, cancel, event):
    """The slices of an archive that ended well, sent while they grew
    (``pending``, emptied as they are done): each read is compared with
    the final file (its digest read once, for every module); an open
    upload is completed (the local digest its checksum will be compared
    with is computed meanwhile); the copy is checked as upload() checks,
    and renamed. A copy that fails a check is sent again from the final
    file, the usual way (upload())."""
    stopped = _stopper(cancel)
    sent = []
    while pending:
        item = pending[0]
        number, target, reader, unfinished = item
        path = growing.final_path(number)
        name = os.path.basename(path)
        try:
            stopped()
            if reader.digest() != growing.final_digest(number):
                raise VerifyError("%s changed after it was read" % path)
            digesting = None
            if unfinished is not None:
                expected = unfinished.checksum_algorithm
                digesting = _Digesting(path, expected) if expected is not None else None
                unfinished.complete()
                item[3] = None  # there now, under its name: a failed check deletes it
            verify(remote, path, target, digesting)
            if target != name:
                remote.rename(target, name)
        except Exception as exc:  # once more from the final file, the usual way
            stopped()  # not when the failure is the stop's
            log.warn("%s: the copy of %s sent while it was written is not right (%s): sent again"
                     % (remote.describe(), name, _words(exc)))
            _drop(remote, [item])
            upload(remote, path, cancel)
        pending.pop(0)
        event("upload ended", path)
        sent.append(path)
    return sent


def _drop(remote, pending):
    """Remove what was sent of the slices in ``pending``: abort an upload
    still open, else delete the copy."""
    for _, target, _, unfinished in pending:
        if unfinished is not None:
            try:
                unfinished.abort()
            except Exception as exc:
                log.verbose("%s: could not abort the upload of %s: %s" % (remote.describe(), target, exc))
        else:
            _discard(remote, target)


POLL_END = 0.5  # how often a wait for the archive's end asks whether the run is being stopped


def _discard(remote, target):
    """After a failed upload, remove what it left: the temporary file, or,
    where puts are atomic, an object that failed verification (best effort:
    the connection may be gone: then one reconnection is tried)."""
    for again in (False, True):
        try:
            if again:
                remote.reconnect()
            if remote.size(target) is not None:
                remote.delete(target)
                log.verbose("%s: removed %s after the failed upload" % (remote.describe(), target))
            return
        except Exception as exc:
            log.verbose("%s: could not remove %s after the failed upload: %s"
                        % (remote.describe(), target, exc))


def download(remote, remote_name, local_path):
    """Fetch one file into ``local_path``, retried; verified by size against
    the remote. The bytes land first in a file of a private directory (0700,
    made beside ``local_path``, so that the final rename stays on one file
    system): nobody else can plant a link where the transport writes."""
    import shutil
    import tempfile
    from pypackrat import execute
    directory, name = os.path.split(os.path.abspath(local_path))
    private = tempfile.mkdtemp(prefix=temporary_name(""), dir=directory)
    tmp = os.path.join(private, name)

    def attempt():
        os.close(execute.create_private(tmp))
        remote.get(remote_name, tmp)
        if remote.size(remote_name) != os.path.getsize(tmp):
            raise VerifyError("%s: download of %s is incomplete" % (remote.describe(), remote_name))
        os.replace(tmp, local_path)

    try:
        _retrying(remote, "download of %s" % remote_name, attempt)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def listing(remote):
    return _retrying(remote, "listing", remote.list)


def delete(remote, name):
    if remote.ctx.dry_run:
        log.info("[dry run] would delete %s from %s" % (name, remote.describe()))
        return
    _retrying(remote, "delete of %s" % name, lambda: remote.delete(name))


def delete_many(remote, names):
    """Delete ``names`` over the open connection (batched where the transport
    can), retried as a whole."""
    names = list(names)
    if not names:
        return
    if remote.ctx.dry_run:
        for name in names:
            log.info("[dry run] would delete %s from %s" % (name, remote.describe()))
        return
    _retrying(remote, "delete of %d files" % len(names), lambda: remote.delete_many(names))


def safe_name(name):
    """A plain file name: what a listing may hand to delete."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\n" not in name and "\r" not in name and "\0" not in name)
