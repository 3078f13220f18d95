"""What a nightly run tells the monitoring: the run's record (what each
module made or sent, and how long it took), the healthchecks-style ping
(PING_URL) and the Prometheus text file (METRICS_FILE).

The record lives on the run's context (``ctx.record``), never in a module
global. Monitoring never fails a backup: a ping that cannot be sent, or a
metrics file that cannot be written, is a warning."""
import contextlib
import errno
import math
import os
import re
import secrets as _random
import stat
import threading
import time
import urllib.parse

from pypackrat import log
from pypackrat.core.names import parse_dar, parse_dump_name

# -- the run's record ---------------------------------------------------------------


class Step:
    """One backup or upload module's run: ``kind`` ("backup"/"upload"),
    ``module``, ``seconds``, ``ok``, and for a backup the files it made,
    for an upload the files it sent."""

    def __init__(self, kind, module):
        self.kind, self.module = kind, module
        self.started = time.time()
        self.seconds = 0.0
        self.ok = False
        self.files = []

    def items(self):
        """What the files of this step are, for the report and the metrics:
        [(target, name, bytes, seconds)], one item per archive (a dar
        archive's slices together) or dump. A file's time is the time from
        the previous item's completion (or the step's start) to its own (the
        modules make them one after another)."""
        groups = {}
        for path in self.files:
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            base = os.path.basename(path)
            dar = parse_dar(base)
            if dar is not None:
                key, target = dar.archive, dar.prefix
            else:
                dump = parse_dump_name(base)
                key, target = base, (dump[2] if dump else base)
            size, end, _ = groups.get(key, (0, 0.0, target))
            groups[key] = (size + st.st_size, max(end, st.st_mtime), target)
        out, previous = [], self.started
        for key, (size, end, target) in sorted(groups.items(), key=lambda kv: kv[1][1]):
            out.append((target, key, size, max(0.0, end - previous)))
            previous = max(previous, end)
        return out


class Record:
    """One run's facts: start, end, exit status, and its steps."""

    def __init__(self):
        self.start = time.time()
        self.end = None
        self.status = None
        self.steps = []
        self.pre_failed = False  # PRE_BACKUP_COMMAND failed: nothing ran, no post-hook
        self.events = []  # (time.monotonic(), what, module, file or None), in the order they came

    def event(self, what, module, path=None):
        """Note a moment of the night (a backup module's start and end, a
        file made, an upload's start and end), from any thread: the order
        in which the work overlapped (run.Uploads), for -v and the tests."""
        self.events.append((time.monotonic(), what, module, path))

    @contextlib.contextmanager
    def step(self, kind, module):
        """Time one module's step; ``yield``s the Step (set its ``files``).
        An exception marks it failed (a PartialFailure's ``made`` files are
        still counted) and goes on."""
        entry = Step(kind, module)
        self.steps.append(entry)
        try:
            yield entry
            entry.ok = True
        except BaseException as exc:
            entry.files = entry.files or list(getattr(exc, "made", None) or [])
            raise
        finally:
            entry.seconds = time.time() - entry.started

    def finish(self, status):
        self.end, self.status = time.time(), status

    def of(self, kind):
        return [s for s in self.steps if s.kind == kind]


def record_of(ctx):
    """The run's record (made on first use)."""
    record = getattr(ctx, "record", None)
    if record is None:
        record = ctx.record = Record()
    return record


def size_words(size):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return ("%d %s" % (size, unit)) if unit == "bytes" else ("%.1f %s" % (size, unit))
        size /= 1024.0


def report_lines(record):
    """The success report: each archive and dump with its size and time,
    each upload with its throughput."""
    lines = []
    for step in record.of("backup"):
        lines.append("%s (%.1f s%s):" % (step.module, step.seconds, "" if step.ok else ", FAILED"))
        items = step.items()
        for _, name, size, seconds in items:
            lines.append("  %s  %s (%d bytes), %.1f s" % (name, size_words(size), size, seconds))
        if not items:
            lines.append("  (nothing made)")
    for step in record.of("upload"):
        sent = sum(size for _, _, size, _ in step.items()) if step.ok else 0
        speed = sent / step.seconds if step.seconds > 0 else 0
        lines.append("upload %s: %s in %d file(s), %.1f s, %s/s%s"
                     % (step.module, size_words(sent), len(step.files), step.seconds,
                        size_words(int(speed)), "" if step.ok else ", FAILED"))
    return lines


# -- PING_URL ---------------------------------------------------------------------------

PING_TIMEOUT = 10.0  # seconds for one request (PACKRAT_PING_TIMEOUT may lower it)
PING_RETRIES = 2
TAIL_LINES = 100
TAIL_BYTES = 100000  # what healthchecks.io keeps of a body
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\udc80-\udcff]")


def ping_problem(url):
    """Why PING_URL cannot be used (the URL itself never shown), or None."""
    if _CONTROL.search(url):
        return "holds a space, a control character or bytes that are not UTF-8"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # a bad port raises
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if "@" in parts.netloc:
        return "holds a user name or password (user@host): not supported"
    if parts.fragment:
        return "holds a fragment (#...)"
    return None


def ping_url(url, suffix):
    """``url`` with ``/suffix`` added to its path (its query kept)."""
    if not suffix:
        return url
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


def _timeout():
    try:
        value = float(os.environ.get("PACKRAT_PING_TIMEOUT", PING_TIMEOUT))
    except ValueError:
        value = PING_TIMEOUT
    return min(max(value, 0.1), PING_TIMEOUT) if math.isfinite(value) else PING_TIMEOUT


def ping(ctx, what, body=b""):
    """Ping PING_URL: ``what`` is "start", "success" or "fail". Returns True
    when the server answered 2xx. Never raises: a failure is a warning.
    The whole ping (retries included) ends within a bounded time."""
    url = ctx.settings.get("PING_URL", "") if hasattr(ctx.settings, "get") else ""
    if not url:
        return False
    log.add_secret(url)  # its UUID lets anyone ping: never shown
    if ping_problem(url):
        return False  # reported once by check_ping
    target = ping_url(url, {"start": "start", "fail": "fail"}.get(what, ""))
    if ctx.dry_run:
        log.info("[dry run] would ping PING_URL (%s)" % what)
        return False
    timeout = _timeout()
    outcome = {}

    def send():
        try:
            import urllib3
            pool = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=urllib3.Retry(total=PING_RETRIES, connect=PING_RETRIES, read=PING_RETRIES,
                                      status=PING_RETRIES, backoff_factor=0.2, redirect=2,
                                      allowed_methods=None, status_forcelist=(429, 500, 502, 503, 504),
                                      raise_on_status=False),
                headers={"User-Agent": "packrat"})
            answer = pool.request("POST", target, body=body,
                                  headers={"Content-Type": "text/plain; charset=utf-8"})
            outcome["status"] = answer.status
        except Exception as exc:  # urllib3's errors, a bad TLS certificate...
            outcome["error"] = exc

    worker = threading.Thread(target=send, name="packrat-ping", daemon=True)
    worker.start()
    worker.join((PING_RETRIES + 1) * (2 * timeout) + 2)
    if worker.is_alive():
        log.warn("Warning: PING_URL (%s) did not answer in time; the backup is not affected" % what)
        return False
    if "error" in outcome:
        reason = getattr(outcome["error"], "reason", None) or outcome["error"]
        log.warn("Warning: could not ping PING_URL (%s): %s; the backup is not affected"
                 % (what, log.mask(type(reason).__name__ + ": " + str(reason))))
        return False
    if not 200 <= outcome.get("status", 0) < 300:
        log.warn("Warning: PING_URL (%s) answered HTTP %s; the backup is not affected"
                 % (what, outcome.get("status")))
        return False
    log.verbose("Pinged PING_URL (%s)" % what)
    return True


def protect(ctx):
    """Mask PING_URL in every output of the run (its UUID lets anyone ping
    the check, as a password would)."""
    url = ctx.settings.get("PING_URL", "")
    if url:
        log.add_secret(url)


def ping_warning(settings):
    """The line saying PING_URL is set but unusable (the URL unshown), or
    None: the run's failure message, and `check`'s warning beforehand."""
    url = settings.get("PING_URL", "")
    problem = url and ping_problem(url)
    if problem:
        return "%s: PING_URL %s; no ping is sent" % (settings.where("PING_URL"), problem)
    return None


def check_ping(ctx):
    """The run's failure message when PING_URL is set but unusable, or None."""
    url = ctx.settings.get("PING_URL", "")
    if url:
        log.add_secret(url)
    return ping_warning(ctx.settings)


def tail(lines=None):
    """The run's last log lines (masked), as a failure ping's body."""
    lines = log.transcript() if lines is None else lines
    text = "\n".join(log.mask(line) for line in lines[-TAIL_LINES:]) + "\n"
    data = text.encode("utf-8", "replace")
    return data[-TAIL_BYTES:]


# -- METRICS_FILE -----------------------------------------------------------------------

_LAST_SUCCESS = "packrat_last_success_timestamp_seconds"
_SAMPLE = re.compile(r"%s ([0-9]{1,12}(?:\.[0-9]{1,9})?)" % _LAST_SUCCESS)
_READ_LIMIT = 1 << 20


def previous_success(path):
    """The last success's time in the metrics file a previous run wrote, or
    None. The file is read with care: never through a symbolic link, a
    plain file only, at most 1 MiB; a line that is not exactly ours is
    ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _READ_LIMIT)
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in data.decode("ascii", "replace").splitlines():
        m = _SAMPLE.fullmatch(line.strip())
        if m:
            value = float(m.group(1))
            if 0 < value <= time.time() + 86400:
                return value
    return None


def _label(value):
    value = log.mask(str(value))
    try:  # a byte that was not UTF-8 (a surrogate escape) becomes U+FFFD
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(record, last_success):
    """The Prometheus text exposition of ``record``."""
    out = []

    def metric(name, help_, samples):
        out.append("# HELP %s %s" % (name, help_))
        out.append("# TYPE %s gauge" % name)
        for labels, value in samples:
            shown = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels)
            out.append("%s%s %s" % (name, "{%s}" % shown if shown else "", repr(float(value))))

    end = record.end or time.time()
    metric("packrat_last_run_start_timestamp_seconds", "When the last run started.", [((), record.start)])
    metric("packrat_last_run_end_timestamp_seconds", "When the last run ended.", [((), end)])
    metric("packrat_last_run_duration_seconds", "How long the last run took.", [((), end - record.start)])
    metric("packrat_last_run_exit_status", "The last run's exit status (0: success).",
           [((), record.status or 0)])
    if last_success is not None:
        metric(_LAST_SUCCESS, "When a run last succeeded.", [((), last_success)])
    made, made_time, status, sent, up_time, up_status = [], [], [], [], [], []
    for step in record.of("backup"):
        status.append(((("module", step.module),), 1 if step.ok else 0))
        made_time.append(((("module", step.module),), step.seconds))
        per_target = {}
        for target, _, size, _ in step.items():
            per_target[target] = per_target.get(target, 0) + size
        made += [((("module", step.module), ("target", t)), size) for t, size in sorted(per_target.items())]
    for step in record.of("upload"):
        up_status.append(((("module", step.module),), 1 if step.ok else 0))
        up_time.append(((("module", step.module),), step.seconds))
        per_target = {}
        for target, _, size, _ in step.items():
            per_target[target] = per_target.get(target, 0) + (size if step.ok else 0)
        sent += [((("module", step.module), ("target", t)), size) for t, size in sorted(per_target.items())]
    metric("packrat_backup_bytes", "Bytes made by a backup module for a target in the last run.", made)
    metric("packrat_backup_duration_seconds", "How long a backup module took in the last run.", made_time)
    metric("packrat_backup_success", "1 when a backup module succeeded in the last run, else 0.", status)
    metric("packrat_upload_bytes", "Bytes an upload module sent for a target in the last run.", sent)
    metric("packrat_upload_duration_seconds", "How long an upload module took in the last run.", up_time)
    metric("packrat_upload_success", "1 when an upload module succeeded in the last run, else 0.",
           up_status)
    return "\n".join(out) + "\n"


def write_metrics(ctx, record):
    """Write METRICS_FILE atomically (mode 0644 for node_exporter): a new
    file beside it, created with O_EXCL|O_NOFOLLOW (a planted file or link
    is never written through), then renamed over it. Returns True when
    written; a failure is a warning."""
    path = ctx.settings.get("METRICS_FILE", "")
    if not path:
        return False
    if ctx.dry_run:
        log.info("[dry run] would write the metrics to %s" % path)
        return False
    if not path.startswith("/"):
        log.warn("Warning: METRICS_FILE=%s could not be written: not an absolute path" % path)
        return False
    directory, base = os.path.split(os.path.normpath(path))
    last = time.time() if record.status == 0 else previous_success(path)
    data = metrics_text(record, last).encode("utf-8")
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for _ in range(5):
                temp = ".%s.%s.tmp" % (base, _random.token_hex(6))  # not *.prom: the collector skips it
                try:
                    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o600, dir_fd=dfd)
                    break
                except FileExistsError:
                    continue
            else:
                raise OSError(errno.EEXIST, "cannot create a temporary file")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fchmod(fh.fileno(), 0o644)
                    os.fsync(fh.fileno())
                os.rename(temp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dfd)
                raise
        finally:
            os.close(dfd)
    except OSError as exc:
        log.warn("Warning: METRICS_FILE=%s could not be written: %s" % (path, exc.strerror or exc))
        return False
    log.verbose("Metrics written to %s" % path)
    return True
