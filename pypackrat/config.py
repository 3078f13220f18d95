"""Reading and validating the configuration.

``packrat.conf`` is a Bash script, as it always was: it is evaluated by bash
itself (``shellconf.sh``), so arrays, quoting, ``$VAR`` expansion and a
``HOSTNAME`` set in the file mean exactly what they meant to the original.
The values are then held in a ConfigObj and validated against the
configspec made from the settings' declarations (``pypackrat/settings.py``).
Files ``MODULES_D/*.conf`` (configobj INI, a section per module, keys
named like the shell variables) are merged over it, in name order, so
settings can move out of the Bash file one module at a time.

Every problem is collected and reported at once, one line each, with the
setting's name and the file it came from.
"""
import bisect
import contextlib
import glob
import os
import re
import tempfile

from pypackrat import execute, log
from pypackrat.core import secrets
from pypackrat.core.secrets import is_secret
from pypackrat.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = "/etc/packrat.conf"
DEFAULT_MODULES_D = "/etc/packrat/modules.d"

WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


class InvalidSetting(KeyError):
    """A module check asked for a setting whose value failed validation."""


class Settings:
    """The effective settings: validated values, where each came from, and
    every other variable the config file defined (for Bash modules)."""

    def __init__(self, values, origin, raw, path, invalid=()):
        self.values = values      # validated ConfigObj
        self.origin = origin      # name -> file, or "default"
        self.raw = raw            # every variable as bash gave it (str or list)
        self.path = path
        self.invalid = set(invalid)  # names whose value failed validation (while checking)

    def __getitem__(self, key):
        if key in self.invalid:
            raise InvalidSetting(key)
        return self.values[key]

    def valid(self, *names):
        """Whether every one of ``names`` holds a validated value (checks
        whose inputs are invalid are skipped: their error is reported once)."""
        return not any(n in self.invalid for n in names)

    def where(self, name, role=None):
        """Where the value of ``name`` came from, for a message: a file, the
        command line, the kernel's host name, or the built-in default. With
        ``role`` ("backup" or "upload"), a built-in default is blamed on what
        enabled the module (BACKUP_MODULES or UPLOAD_MODULES): the file to edit."""
        origin = self.origin.get(name)
        if origin not in (None, "default"):
            return origin
        if role:
            key = "BACKUP_MODULES" if role == "backup" else "UPLOAD_MODULES"
            enabler = self.origin.get(key)
            if enabler not in (None, "default"):
                return enabler
            return self.path
        return "the built-in default"

    def get(self, key, default=None):
        if key in self.invalid:
            raise InvalidSetting(key)
        return self.values.get(key, default)

    def __contains__(self, key):
        return key in self.values

    def __setitem__(self, key, value):
        self.values[key] = value
        self.origin[key] = "command line"


class Spec:
    """One line of the configspec as validate parses it: the check's name
    (``integer``, ``option``...), its arguments (an option's values), its
    keyword arguments (min, max) and whether it has a default."""

    def __init__(self, check, kind, args, kwargs, default):
        self.check, self.kind, self.args, self.kwargs = check, kind, list(args), dict(kwargs)
        self.has_default = default is not None


_SPEC_CACHE = {}


def _spec():
    """The configspec: one line per declared setting (pypackrat/settings.py
    and each module's SETTINGS)."""
    if "lines" not in _SPEC_CACHE:
        from pypackrat import settings
        _SPEC_CACHE["lines"] = settings.spec_lines()
    return _SPEC_CACHE["lines"]


def _spec_types():
    """name -> Spec, from the configspec read by ConfigObj and each check
    parsed by validate itself."""
    if "types" not in _SPEC_CACHE:
        from configobj import ConfigObj
        spec = ConfigObj(_spec(), _inspec=True, list_values=False, interpolation=False,
                         raise_errors=True)
        validator = _validator()
        types = {}
        for name in spec.scalars:
            kind, args, kwargs, default = validator._parse_with_caching(spec[name])
            types[name] = Spec(spec[name], kind, args, kwargs, default)
        _SPEC_CACHE["types"] = types
    return _SPEC_CACHE["types"]


# Numbers are ASCII numbers: Python's int() and float() also take other
# scripts' digits ('\u0969'), '1_000', ' 7 ', 'nan' and 'inf'; Bash and
# the original took none of them.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _validator():
    import math
    from validate import Validator, VdtTypeError, is_float, is_integer

    def integer(value, min=None, max=None):
        if isinstance(value, str) and not _INTEGER.fullmatch(value):
            raise VdtTypeError(value)
        return is_integer(value, min, max)

    def decimal(value, min=None, max=None):
        if isinstance(value, str) and not _DECIMAL.fullmatch(value):
            raise VdtTypeError(value)
        number = is_float(value, min, max)
        if not math.isfinite(number):
            raise VdtTypeError(value)
        return number

    return Validator({"integer": integer, "float": decimal})


# Evaluating the config: bounded in time (PACKRAT_CONFIG_TIMEOUT seconds,
# for tests; CONFIG_TIMEOUT otherwise), its whole process group killed after.
CONFIG_TIMEOUT = 30
_OUTPUT_LIMIT = 64 * 1024  # what is kept of the config's own stdout/stderr
_STDERR_LINES = 10         # bash's lines shown in a config error


def config_timeout():
    """CONFIG_TIMEOUT, or PACKRAT_CONFIG_TIMEOUT seconds when that is a
    positive number (tests shorten the bound with it)."""
    try:
        value = float(os.environ.get("PACKRAT_CONFIG_TIMEOUT", ""))
    except ValueError:
        return CONFIG_TIMEOUT
    return value if 0 < value < float("inf") else CONFIG_TIMEOUT


# -- who may write what packrat runs as root ---------------------------------------

def owner_name(uid):
    """A user's name for a message (``uid N`` when it has none)."""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


def _trusted_owners():
    return {0, os.geteuid()}


def invoker():
    """Who runs packrat, for a message: root, or the user's name."""
    return "root" if os.geteuid() == 0 else owner_name(os.geteuid())


def _fix(path, is_dir):
    import shlex
    return "chown %s %s; chmod go-w %s" % (invoker(), shlex.quote(path), shlex.quote(path))


def _chain(path):
    """``path`` (made absolute) and every directory above it, both as
    written and with symbolic links resolved: whoever can write to one of
    them can replace what packrat reads."""
    seen, out = set(), []
    for start in (os.path.abspath(path), os.path.realpath(path)):
        p = start
        while True:
            if p not in seen:
                seen.add(p)
                out.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
    return out


def untrusted(path, what, holds_files=False):
    """Problems (one line each, naming the file and the fix) when ``path`` or
    a directory above it is not owned by root (or by the user running
    packrat) or can be written by group or others. ``what`` says what packrat
    does with it ("runs as root"). ``holds_files``: ``path`` is a directory
    whose files are all trusted (MODULE_PATH, modules.d), so it may not be
    writable by others even with the sticky bit; directories above may be
    sticky (as /tmp is): there, others cannot replace what is not theirs."""
    import stat
    problems = []
    target = os.path.abspath(path)
    leaves = {target, os.path.realpath(path)}
    for p in _chain(path):
        try:
            st = os.stat(p)
        except OSError as exc:
            if p in leaves:
                continue  # missing: reported where it is read
            problems.append("%s: cannot check its owner and mode: %s" % (p, exc.strerror))
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        kind = "directory" if is_dir else "file"
        role = what if p in leaves else "it is above %s, which %s" % (target, what)
        if st.st_uid not in _trusted_owners():
            problems.append("%s: refusing this %s: it is owned by %s, not by root, and %s; fix: %s"
                            % (p, kind, owner_name(st.st_uid), role, _fix(p, is_dir)))
            continue
        writable = st.st_mode & 0o022
        sticky = is_dir and st.st_mode & stat.S_ISVTX and not (holds_files and p in leaves)
        if writable and not sticky:
            who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if writable & bit)
            problems.append("%s: refusing this %s: it can be written by %s (mode %04o), and %s; fix: %s"
                            % (p, kind, who, stat.S_IMODE(st.st_mode), role, _fix(p, is_dir)))
    return problems


def warn_if_readable(path, names):
    """Warn when ``path``, which sets the secrets ``names``, can be read by
    group or others."""
    import shlex
    import stat
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if names and mode & 0o044:
        log.warn("Warning: %s sets %s but can be read by %s (mode %04o); fix: chmod go-r %s"
                 % (path, ", ".join(sorted(names)), "group and others" if mode & 0o044 == 0o044
                    else ("group" if mode & 0o040 else "others"), mode, shlex.quote(path)))


# -- the config file ------------------------------------------------------------------

_ASSIGN = re.compile(r"(?:^|(?<=[\s;&|({]))(?:(?:export|declare|typeset|readonly|local)\s+(?:-\w+\s+)*)?"
                     r"([A-Za-z_][A-Za-z0-9_]*)(?:\[[^]]*\])?\+?=", re.M)


def _statement_end(text, i):
    """Where the shell statement whose words start at ``i`` ends: the first
    newline outside quotes and not escaped by a backslash (a quoted value
    may span lines, and so may a line that ends with a backslash)."""
    quote = None
    n = len(text)
    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = None
        elif c == "\\":
            i += 1  # the next character is taken as it is (a newline: the line goes on)
        elif quote == '"':
            if c == '"':
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "\n":
            return i
        i += 1
    return n


# NAME=value where NAME is no shell name (S3_SECRET-KEY=..., a slip of the
# keyboard): bash runs it as a command and its message repeats the value
_LOOSE_ASSIGN = re.compile(r"(?:^|(?<=[\s;&|{]))([^\s=;&|'\"`$<>\\]+)=", re.M)


def _assignments(text):
    """(match, setting name) of every assignment, and of every word that
    looks like one with a name that is not a shell name (its odd characters
    taken out or read as '_': S)3_SECRET-KEY is taken as S3_SECRETKEY and
    S3_SECRET_KEY)."""
    for m in _ASSIGN.finditer(text):
        yield m, m.group(1)
    for m in _LOOSE_ASSIGN.finditer(text):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m.group(1)):
            for name in (re.sub(r"\W", "", m.group(1)), re.sub(r"\W", "_", m.group(1))):
                if name:
                    yield m, name
    # a secret setting's name with its '=' forgotten (ENCRYPTION_KEY"..."):
    # bash's 'command not found' repeats the value glued to the name
    names = sorted((n for n in _spec_types() if is_secret(n)), key=len, reverse=True)
    glued = re.compile(r"(?:^|(?<=[\s;&|{]))(%s)(?=[^\s=\[+])" % "|".join(names), re.M)
    for m in glued.finditer(text):
        yield m, m.group(1)


def _secret_lines(text):
    """({line number: setting}, words) for the lines of the file that
    assign a secret, every line of the statement (a quoted value or a
    backslash continuation goes on over several lines; a statement may
    assign something else first): bash's messages about those lines are
    not shown, and the words of the value are masked wherever they appear
    (an unquoted ``ENCRYPTION_KEY=correct horse battery`` defines nothing,
    but makes bash complain about ``horse``)."""
    lines, words = {}, set()
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for m, name in _assignments(text):
        if not _looks_secret(name):  # MYSQL_PSS too: a slip of the keyboard
            continue
        first = bisect.bisect_right(starts, m.start())
        if text[starts[first - 1]:m.start()].lstrip().startswith("#"):
            continue  # a comment
        end = _statement_end(text, m.end())
        if not text[m.end():end].strip() and end < len(text):
            # NAME= with the value on the next line: bash assigns nothing and
            # runs the value as a command, whose message would repeat it
            end = _statement_end(text, end + 1)
        last = bisect.bisect_right(starts, max(end - 1, m.start()))
        for number in range(first, last + 1):
            lines[number] = m.group(1)
        value = text[m.end():end].strip()
        if value:
            words.add(value)
            for quote in ("'", '"'):
                words.add(value.strip(quote))
        for word in re.split(r"[\s'\"();&|<>`$\\]+", value):
            if len(word) >= 3:
                words.add(word)
    return lines, {w for w in words if w}


def _line_endings(data, path):
    if b"\r\n" in data:
        return ("%s: the file has Windows (CRLF) line endings, so every value would end in a "
                "carriage return; convert it: sed -i 's/\\r$//' %s" % (path, path))
    if b"\r" in data and b"\n" not in data.rstrip(b"\r"):
        return ("%s: the file has old Mac (CR-only) line endings, so Bash reads it as one line; "
                "convert it: sed -i 's/\\r/\\n/g' %s" % (path, path))
    return None


def _evaluate(argv, env, timeout):
    """Run ``argv`` (bash) in a process group of its own, stdin from
    /dev/null, for at most ``timeout`` seconds; kill the whole group when
    bash ends (a background job of the config does not outlive it) or when
    the time is up. Returns (exit code or None on timeout, stdout, stderr)."""
    import selectors
    import subprocess
    import time
    try:
        proc = execute.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, start_new_session=True,
                             close_fds=True)
    except OSError as exc:
        raise ConfigError(["%s: cannot start %s to read it: %s" % (argv[2], argv[0], exc.strerror)])
    outputs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sel = selectors.DefaultSelector()
    for pipe in outputs:
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    code, drain_until = None, None
    try:
        while sel.get_map():
            now = time.monotonic()
            if code is None:
                code = proc.poll()
                if code is not None:
                    _kill_group(proc.pid)   # background jobs of the config
                    drain_until = now + 1.0
                elif now >= deadline:
                    break
            if drain_until is not None and now >= drain_until:
                break  # a job that left the group holds the pipe: stop reading
            for key, _ in sel.select(0.05):
                try:
                    data = key.fileobj.read(65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                kept = outputs[key.fileobj]
                if len(kept) < _OUTPUT_LIMIT:
                    kept += data[:_OUTPUT_LIMIT - len(kept)]
        if code is None:
            code = proc.poll()
        if code is None and time.monotonic() < deadline:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _kill_group(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
        _kill_marked(env)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return code, bytes(outputs[proc.stdout]), bytes(outputs[proc.stderr])


def _kill_group(pgid):
    import signal
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


_MARK = "__packrat_run"  # in the environment of the config's bash (shellconf.sh skips __packrat_*)


def _kill_marked(env):
    """Kill what the config started and moved out of its process group
    (``setsid sleep 60 &``, a daemon): every process that still carries
    this evaluation's mark in its environment. A few passes, for a process
    forked while the previous pass ran."""
    import signal
    mark = env.get(_MARK)
    if not mark:
        return
    needle = ("%s=%s" % (_MARK, mark)).encode() + b"\0"
    me = os.getpid()
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open("/proc/%s/environ" % entry, "rb") as fh:
                    marked = needle in (fh.read() + b"\0")
            except OSError:
                continue
            if marked:
                found = True
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)
        if not found:
            return


def _records(data):
    """Parse shellconf.sh's result: (values, end) where end is ("E"|"X",
    status, line) or None when the record of the end is missing."""
    values, end = {}, None
    fields = data.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    i = 0
    try:
        while i < len(fields):
            kind = fields[i]
            if kind in (b"E", b"X", b"R"):
                end = (kind.decode(), int(fields[i + 1]), fields[i + 2].decode("ascii", "replace"))
                break
            name = fields[i + 1].decode("utf-8", "surrogateescape")
            if kind == b"S":
                values[name] = fields[i + 2].decode("utf-8", "surrogateescape")
                i += 3
            elif kind == b"A":
                count = int(fields[i + 2])
                items = fields[i + 3:i + 3 + count]
                if len(items) != count:
                    return values, None
                values[name] = [f.decode("utf-8", "surrogateescape") for f in items]
                i += 3 + count
            else:
                return values, None
    except (IndexError, ValueError):
        return values, None
    return values, end


_DECLARATION = re.compile(r"(?:^|(?<=[\s;&|({]))(?:export|declare|typeset|readonly|local)(?=\s)", re.M)


def _declared_words(text, path):
    """Problems for ``export ENCRYPTION_KEY=correct horse battery`` and the
    like (declare, typeset, readonly, local): bash reports nothing, takes
    "correct" as the key and the other words as names of more variables, so
    the backup would be made with a part of the key. The words themselves
    are never shown."""
    import shlex
    problems = []
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for m in _DECLARATION.finditer(text):
        number = bisect.bisect_right(starts, m.start())
        if text[starts[number - 1]:m.start()].lstrip().startswith("#"):
            continue  # a comment
        statement = text[m.end():_statement_end(text, m.end())]
        try:
            lexer = shlex.shlex(statement, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = list(lexer)
        except ValueError:
            continue  # unbalanced quotes: bash says so itself
        secret = None
        for word in words:
            if word and word[0] in ";&|":
                break
            name = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[[^]]*\])?\+?=", word)
            if name and is_secret(name.group(1)):
                value = word[name.end():]
                secret = None if ("$(" in value or "`" in value) else name.group(1)
            elif secret and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
                problems.append("%s: line %d: the value of %s is not quoted: bash cut it at the first "
                                "space and took the words after it as names of more variables, so "
                                "only a part of it would be used; quote it (%s=\"...\")"
                                % (path, number, secret, secret))
                break
    return problems


def read_shell(path):
    """Evaluate a Bash config file; return ({name: str|list}, warnings).

    Refuses a file that is not root's (ConfigError naming the fix). Raises
    ConfigError, messages masked, when bash writes anything on stderr, when
    the file ends with a non-zero status, stops early (exit, set -e, exec),
    takes longer than the bound, or has CRLF or CR line endings. What the
    file prints on stdout is returned as warnings."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(["Cannot read config file: %s" % path])
    problems = untrusted(path, "packrat runs it as root (it is a Bash script)")
    if problems:
        raise ConfigError(problems)
    try:
        with open(path, "rb") as fh:
            text_bytes = fh.read()
    except OSError as exc:
        raise ConfigError(["Cannot read config file: %s: %s" % (path, exc.strerror)])
    ending = _line_endings(text_bytes, path)
    if ending:
        raise ConfigError([ending])
    text = text_bytes.decode("utf-8", "surrogateescape")
    secret_lines, secret_words = _secret_lines(text)

    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8",
           _MARK: os.urandom(8).hex()}
    timeout = config_timeout()
    out_fd, out_path = tempfile.mkstemp(prefix="conf-", dir=execute.private_dir())
    os.close(out_fd)
    try:
        code, stdout, stderr = _evaluate(["bash", os.path.join(HERE, "shellconf.sh"), path, out_path],
                                         env, timeout)
        with open(out_path, "rb") as fh:
            data = fh.read()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out_path)
    values, end = _records(data)
    defined = register_secrets(values.items())  # the secrets are known before anything is shown

    def shown(line):
        return log.mask(line, extra=secret_words)

    problems = []
    lines = [l for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    traced = [l for l in lines if l.startswith("+")]
    if traced and re.search(r"\bset\s+(-\w*x|-o\s+xtrace)", text):
        # set -x traces every command on stderr, packrat's own too: one line for all
        problems.append("%s: the file turns on set -x (xtrace), whose trace on stderr makes it a "
                        "configuration error; remove it" % path)
        lines = [l for l in lines if not l.startswith("+")]
    for line in lines[:_STDERR_LINES]:
        message = _bash_message(line, path)
        m = re.match(r"line (\d+): ", message)
        if m and int(m.group(1)) in secret_lines:
            message = ("line %s: bash reports an error on the line that sets %s (its message is not "
                       "shown: it may hold part of the secret); is the value quoted?"
                       % (m.group(1), secret_lines[int(m.group(1))]))
        problem = shown("%s: %s" % (path, message))
        if problem not in problems:  # bash's syntax error is two lines on the same line
            problems.append(problem)
    if len(lines) > _STDERR_LINES:
        problems.append("%s: ... and %d more lines on stderr" % (path, len(lines) - _STDERR_LINES))
    at = lambda line: ("line %s: " % line) if line else ""  # noqa: E731
    if code is None:
        problems.append("%s: evaluating the file took longer than %g seconds and was stopped "
                        "(a command that waits or loops? set PACKRAT_CONFIG_TIMEOUT to change "
                        "the bound)" % (path, timeout))
    elif end is None:
        problems.append("%s: the evaluation ended before the file was read to its end (%s): does it "
                        "call exec, or kill its own shell?"
                        % (path, "killed by signal %d" % -code if code < 0 else "status %d" % code))
    elif end[0] == "X":
        problems.append("%s: %sthe file exited before its end, with status %d (exit, or a failing "
                        "command under set -e): the settings after that point were not read"
                        % (path, at(end[2]), end[1]))
    elif end[0] == "R":
        problems.append("%s: %sa return outside any function stopped the file there: the settings "
                        "after that point were not read" % (path, at(end[2])))
    elif end[1] != 0:
        problems.append("%s: %sthe file ended with status %d (its last command failed): a "
                        "configuration must end with status 0" % (path, at(end[2]), end[1]))
    elif code != 0:
        problems.append("%s: the evaluation exited with status %d after the file was read (an EXIT "
                        "trap set in the file?)" % (path, code))
    problems += _declared_words(text, path)
    if problems:
        error = ConfigError(problems)
        # what the file defined before it failed (ADMIN_EMAIL, SMTP), for the
        # failure mail; where bash never reached them (a hang, exec, an early
        # exit), their plain literal assignments in the file
        error.values = dict(values)
        for name, value in _literal_mail_settings(text).items():
            error.values.setdefault(name, value)
        raise error
    warn_if_readable(path, defined)
    warnings = [shown("%s: printed while it was read: %s" % (path, line))
                for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()][:5]
    return values, warnings


_MAIL_SETTINGS = ("ADMIN_EMAIL", "MAIL_FROM", "HOSTNAME", "SMTP_HOST", "SMTP_PORT", "SMTP_TLS",
                  "SMTP_CA", "SMTP_USER", "SMTP_PASS")
_LITERAL = re.compile(r"[ \t]*(?:export[ \t]+)?(%s)=(.*)$" % "|".join(_MAIL_SETTINGS))


def _literal_mail_settings(text):
    """The mail settings a config assigns as plain literals (``NAME=value``
    alone on a line, quoted or not, no expansion), the last one of each:
    what the failure mail of a config whose evaluation never finished can
    still use. Nothing is run."""
    import shlex
    found = {}
    for line in text.split("\n"):
        m = _LITERAL.match(line)
        if not m or any(c in m.group(2) for c in "$`\\;&|<>(){}"):
            continue
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            continue
        if len(words) <= 1:
            found[m.group(1)] = words[0] if words else ""
    return found


def _bash_message(line, path):
    # "/etc/packrat.conf: line 3: unexpected EOF ..." -> "line 3: unexpected EOF ..."
    for prefix in (path + ": ", "shellconf.sh: "):
        if line.startswith(prefix):
            line = line[len(prefix):]
    return line


def _ini_lines(path):
    """The lines of one modules.d file, or raise ValueError with the reason
    it cannot be read as text. Whole-line ``;`` comments (the INI habit)
    are comments, as ``#`` ones."""
    import stat
    # O_NONBLOCK: a FIFO or device planted under a *.conf name must not hang
    # the run; only a regular file is read
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file; modules.d holds plain text files only")
        data = fh.read()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError("the file is UTF-16 text; save it as UTF-8")
    if b"\0" in data:
        raise ValueError("the file holds NUL bytes (UTF-16 text?); save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError("line %d: byte 0x%02x is not UTF-8; save the file as UTF-8 text"
                         % (line, data[exc.start])) from None
    text = text.lstrip("\ufeff")
    return ["#" + l if l.lstrip().startswith(";") else l for l in text.splitlines()]


def _ini_error(exc):
    errors = getattr(exc, "errors", None)
    return str(errors[0] if errors else exc).splitlines()[0]


def read_modules_d(directory):
    """Merge the INI files of modules.d: ({name: value}, {name: file}, problems).

    The directory and each file must be root's and not writable by others
    (problems name the file and the fix); a file setting a secret that
    others can read is warned about. Secrets are registered for masking
    as soon as they are read."""
    from configobj import ConfigObj, ConfigObjError
    values, origin, problems = {}, {}, []
    if os.path.isdir(directory):
        problems += untrusted(directory, "packrat reads settings from its files as root", holds_files=True)
        if problems:
            return values, origin, problems
    for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
        refused = untrusted(path, "packrat takes settings from it as root")
        if refused:
            problems += refused
            continue
        try:
            ini = ConfigObj(_ini_lines(path), list_values=True, interpolation=False)
        except ValueError as exc:
            problems.append("%s: %s" % (path, exc))
            continue
        except (ConfigObjError, OSError, SyntaxError) as exc:
            problems.append("%s: %s" % (path, _ini_error(exc)))
            continue
        found = []
        for section in ini.sections:
            for key, value in ini[section].items():
                if isinstance(value, dict):
                    problems.append("%s: [%s] %s: nested sections are not settings" % (path, section, key))
                    continue
                found.append((key, value))
        found += [(key, ini[key]) for key in ini.scalars]
        for key, value in found:
            values[key] = value
            origin[key] = path
        warn_if_readable(path, register_secrets(found))
    return values, origin, problems


def _normalise(values, types, origin):
    """Give each known setting the shape its type expects, as Bash would
    read it: an array of one element used as a scalar is that element; a
    scalar used as an array is a one-element array (none when empty); an
    empty value of a setting with a default takes the default. An array of
    several values for a scalar setting is an error (Bash's ``$NAME`` would
    silently be its first element). Returns (values, problems, bad names)."""
    out, problems, bad = {}, [], set()
    for name, value in values.items():
        spec = types.get(name)
        if spec is None:
            out[name] = value
            continue
        if spec.kind.endswith("_list"):
            if isinstance(value, str):
                value = [value] if value else []
        elif isinstance(value, list):
            if len(value) > 1:
                problems.append("%s: %s is an array of %d values, but it takes one value (Bash's $%s "
                                "would be only the first%s)"
                                % (origin.get(name, "?"), name, len(value), name,
                                   "" if is_secret(name) else ", %r" % (value[0],)))
                bad.add(name)
                continue
            value = value[0] if value else ""
        if value == "" and spec.has_default and spec.kind != "string":
            continue
        out[name] = value
    return out, problems, bad


def _describe(name, value, spec):
    """``NAME='value': must be RULE``, the rule told from the parsed spec."""
    shown = "****" if is_secret(name) else value
    lo, hi = spec.kwargs.get("min"), spec.kwargs.get("max")
    if spec.kind in ("integer", "float"):
        rule = "a whole number" if spec.kind == "integer" else "a number (digits 0-9, a decimal point)"
        if lo is not None and hi is not None:
            rule += " from %s to %s" % (lo, hi)
        elif lo is not None:
            rule += " >= %s" % lo
        elif hi is not None:
            rule += " <= %s" % hi
        if spec.kind == "integer":
            rule += " (digits 0-9)"
    elif spec.kind == "option":
        rule = "one of " + ", ".join(spec.args)
    elif spec.kind == "boolean":
        rule = "yes or no"
    elif lo is not None and str(lo) != "0":
        rule = "a non-empty value"
    else:
        rule = "valid"
    return "%s=%r: must be %s" % (name, shown, rule)


def _check_master_day(values):
    day = str(values.get("FS_MASTER_DAY", ""))
    if values.get("FS_MASTER_FREQ") == "monthly":
        if not re.fullmatch(r"0?[1-9]|[12][0-9]|3[01]", day):
            return "FS_MASTER_DAY=%r: must be a day of the month, 01 to 31, when FS_MASTER_FREQ is monthly" % day
        values["FS_MASTER_DAY"] = "%02d" % int(day)
    else:
        if day not in WEEKDAYS and day not in local_weekdays():
            return ("FS_MASTER_DAY=%r: must be a weekday as `date +%%a` prints it (Sun, Mon, Tue, Wed, "
                    "Thu, Fri, Sat) when FS_MASTER_FREQ is weekly" % day)
    return None


def local_weekdays():
    """The weekday abbreviations of the operator's locale (what `date +%a` gives)."""
    import datetime
    import locale
    try:
        locale.setlocale(locale.LC_TIME, "")
    except locale.Error:
        return set(WEEKDAYS)
    base = datetime.date(2023, 1, 1)  # a Sunday
    return {(base + datetime.timedelta(days=i)).strftime("%a") for i in range(7)}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}")
_SERVER = re.compile(r"[A-Za-z0-9_.:%-]{1,255}")  # a host name, IPv4 or IPv6 address (no brackets)


def server_problem(settings, name, role=None):
    """A problem line when setting ``name`` is not a host name or address
    (nothing of it may become an option or a second word); None when fine."""
    value = settings[name]
    if value and (not _SERVER.fullmatch(value) or value.startswith("-")):
        return ("%s: %s=%r: must be a host name or an IP address (letters, digits, '.', '-', ':')"
                % (settings.where(name, role), name, value))
    return None


def _check_values(settings):
    """Checks across settings and of values validate cannot judge."""
    problems = []
    s = settings
    if s.valid("FS_MASTER_FREQ", "FS_MASTER_DAY"):
        msg = _check_master_day(s.values)
        if msg:
            problems.append("%s: %s" % (s.where("FS_MASTER_DAY"), msg))
    if s.valid("HOSTNAME") and "HOSTNAME" in s.values and s["HOSTNAME"]:
        host = s["HOSTNAME"]
        if not _HOSTNAME.fullmatch(host):
            problems.append("%s: HOSTNAME=%r: must be a host name (letters, digits, '.', '-', '_'; "
                            "no '/', spaces or control characters): it names every archive and the "
                            "failure mail" % (s.where("HOSTNAME"), host))
    if s.valid("BACKUP_DIR") and s.values.get("BACKUP_DIR") and not s["BACKUP_DIR"].startswith("/"):
        problems.append("%s: BACKUP_DIR=%r: must be an absolute path" % (s.where("BACKUP_DIR"), s["BACKUP_DIR"]))
    if s.valid("LOG") and log.destination_problem(s.values.get("LOG") or ""):  # syslog or a file's path
        problems.append("%s: LOG=%r: %s" % (s.where("LOG"), s["LOG"], log.destination_problem(s["LOG"])))
    for name in ("ADMIN_EMAIL", "MAIL_FROM", "SMTP_USER"):
        if not s.valid(name) or not s.values.get(name):
            continue
        value = s[name]
        if _CONTROL.search(value):
            problems.append("%s: %s=%r: holds a control character or bytes that are not UTF-8; "
                            "it goes into a mail header" % (s.where(name), name, value))
        elif name == "ADMIN_EMAIL" and any(w.startswith("-") for w in re.split(r"[\s,]+", value)):
            problems.append("%s: ADMIN_EMAIL=%r: an address cannot start with '-'" % (s.where(name), value))
    if s.valid("SMTP_HOST"):
        problems += filter(None, [server_problem(s, "SMTP_HOST")])
    for name in ("MYSQL_HOST", "MYSQL_USER", "POSTGRESQL_HOST", "POSTGRESQL_USER"):
        # the client libraries take them as UTF-8 text (a PostgreSQL host may be a socket directory)
        value = s.values.get(name) if s.valid(name) else None
        if value and (_CONTROL.search(value) or value.startswith("-")):
            problems.append("%s: %s=%r: holds a control character or bytes that are not UTF-8, or "
                            "starts with '-'" % (s.where(name), name, value))
    if s.valid("SMTP_USER", "SMTP_TLS") and s.values.get("SMTP_USER") and s.values.get("SMTP_TLS") == "no":
        problems.append("%s: SMTP_USER is set but SMTP_TLS=no: the SMTP password would go over the "
                        "network in clear text; set SMTP_TLS=starttls (port 587) or SMTP_TLS=ssl (port 465)"
                        % s.where("SMTP_USER"))
    from pypackrat import dumps, execute  # COMPRESSOR (a name and a level), IONICE
    problems += filter(None, [dumps.compressor_problem(s), execute.politeness_problem(s)])
    return problems


def requirements(settings):
    """What the run needs from this machine, beyond the values: programs,
    directories, readable files. Each missing one fails only its module (or
    the mail) at run time; `packrat check` prints them as warnings."""
    lines = []
    backup_dir = settings.get("BACKUP_DIR")
    if backup_dir and backup_dir.startswith("/") and not os.path.isdir(backup_dir):
        above = backup_dir
        while not os.path.lexists(above):
            above = os.path.dirname(above)
        if not os.path.isdir(above):
            lines.append("%s: BACKUP_DIR=%s: %s is not a directory: no backup can be written"
                         % (settings.where("BACKUP_DIR"), backup_dir, above))
    ca = settings.get("SMTP_CA")
    if ca and not (os.path.isfile(ca) and os.access(ca, os.R_OK)):
        lines.append("%s: SMTP_CA=%s: no such readable file: the failure mail cannot be sent"
                     % (settings.where("SMTP_CA"), ca))
    if settings.get("IONICE") and not execute.which("ionice"):
        lines.append("%s: IONICE=%s: ionice is not installed (util-linux): the run goes at the "
                     "machine's disk scheduling" % (settings.where("IONICE"), settings["IONICE"]))
    from pypackrat import monitor, plugins
    lines += filter(None, [monitor.ping_warning(settings)])  # the run goes on without pings
    metrics = settings.get("METRICS_FILE")
    if metrics and not metrics.startswith("/"):
        lines.append("%s: METRICS_FILE=%s: not an absolute path: the metrics are not written"
                     % (settings.where("METRICS_FILE"), metrics))
    return list(dict.fromkeys(log.one_line(line) for line in lines + plugins.requirements(settings)))


_CLOSEST = {}
_PAIRS = {}  # length -> [(known name, its letter pairs)]


def _pairs(text):
    return {text[i:i + 2] for i in range(len(text) - 1)}


def _closest(name):
    """The known setting ``name`` is most likely a typo of (same letters in
    another case, difflib's ratio >= 0.85, or the one setting whose name is
    ``name`` and more words), or None. Fast enough for
    10,000 variables: only names of a similar length that share half their
    letter pairs are compared."""
    import difflib
    upper = name.upper()
    if upper not in _CLOSEST:
        types = _spec_types()
        if upper in types:
            _CLOSEST[upper] = upper
        else:
            if not _PAIRS:
                for k in types:
                    _PAIRS.setdefault(len(k), []).append((k, _pairs(k)))
            pairs = _pairs(upper)
            candidates = [k for n in range(len(upper) - 2, len(upper) + 3) for k, known in _PAIRS.get(n, ())
                          if 2 * len(pairs & known) >= len(pairs)]
            close = difflib.get_close_matches(upper, candidates, n=1, cutoff=0.85)
            if not close:  # a setting's name without its last word (S3_ENDPOINT), if only one has it
                close = [k for k in types if k.startswith(upper + "_")][:2]
            _CLOSEST[upper] = close[0] if len(close) == 1 else None
    return _CLOSEST[upper]


def _typos(merged, types, origin):
    """Warnings for unknown names close to a known setting (FS_TARGET,
    HOSTNAM, hostname). Other names are left alone: Bash modules have
    variables of their own."""
    lines = []
    for name in merged:
        if name in types:
            continue
        close = _closest(name)
        if close:
            lines.append("%s: %s is not a packrat setting: did you mean %s?"
                         % (origin.get(name, "?"), name, close))
    return lines


def _looks_secret(name):
    """A secret's name, or an unknown name close to one (MYSQL_PSS): its value
    is hidden all the same."""
    return secrets.looks_secret(name, _closest)


def register_secrets(items, secret=is_secret):
    """The run's secrets (log.current()) get the secret values among
    ``items`` ((name, value) pairs); returns the names that held one."""
    return secrets.register(log.current().secrets, items, secret)


def load(path=DEFAULT_CONFIG, overrides=None, output=None):
    """Read, merge and validate; raise ConfigError listing every problem.
    The error carries ``settings``: the values that did validate (the
    failure mail of a nightly run takes ADMIN_EMAIL and SMTP from them).

    Loading a configuration starts a run: its output (``log.setup``: the
    secrets the file holds, the transcript) is ``output`` or a fresh one,
    and is the settings' ``output``."""
    output = output or log.setup()
    try:
        raw, warnings = read_shell(path)
    except ConfigError as exc:
        # what the file defined before it failed, if bash told: ADMIN_EMAIL and
        # SMTP for the failure mail of a nightly run (best effort)
        raw = getattr(exc, "values", None)
        if raw and getattr(exc, "settings", None) is None:
            try:
                exc.settings = _validate(path, raw, overrides, quiet=True)[0]
            except Exception:
                exc.settings = None
        raise
    for line in warnings:
        log.warn("Warning: " + line)
    settings, problems = _validate(path, raw, overrides)
    if problems:
        error = ConfigError(problems)
        error.settings = settings
        raise error
    settings.output = output
    return settings


def _validate(path, raw, overrides=None, quiet=False):
    """Merge modules.d and the command line over the file's values, and
    validate: (Settings, problems). Every check runs on the values that
    validated; one bad value hides no other problem."""
    from configobj import ConfigObj, flatten_errors

    problems = []
    origin = {name: path for name in raw}
    import socket
    if raw.get("HOSTNAME") == socket.gethostname():
        origin["HOSTNAME"] = "the kernel's host name"
    modules_d = raw.get("MODULES_D") or DEFAULT_MODULES_D
    if isinstance(modules_d, list):
        modules_d = modules_d[0] if modules_d else DEFAULT_MODULES_D
    merged = dict(raw)
    extra, extra_origin, extra_problems = read_modules_d(modules_d)
    problems += extra_problems
    merged.update(extra)
    origin.update(extra_origin)
    for key, value in (overrides or {}).items():
        merged[key] = value
        origin[key] = "command line"
    register_secrets(merged.items(), _looks_secret)
    for key in ("BACKUP_MODULES", "UPLOAD_MODULES"):  # twice: two runs of one module would race
        names = merged.get(key)
        if isinstance(names, list) and len(set(names)) < len(names):
            if not quiet:
                log.warn("Warning: %s: %s lists %s more than once: each runs once"
                         % (origin.get(key, path), key, ", ".join(sorted({n for n in names if names.count(n) > 1}))))
            merged[key] = list(dict.fromkeys(names))

    types = _spec_types()
    for line in [] if quiet else _typos(merged, types, origin):
        log.warn("Warning: " + line)
    invalid = set()
    for name, spec in types.items():
        if not spec.has_default and name not in merged:
            problems.append("Error: Configuration setting %s is not defined in %s" % (name, path))
            invalid.add(name)
    for name in ("BACKUP_DIR", "PURGE_LOCAL_ARCHIVES", "PURGE_REMOTE_ARCHIVES"):
        if merged.get(name) in ("", []):
            problems.append("Error: Configuration setting %s is not defined in %s (it is empty)"
                            % (name, origin.get(name, path)))
            invalid.add(name)
    normal, shape_problems, bad = _normalise(merged, types, origin)
    problems += shape_problems
    reported = invalid | bad
    values = ConfigObj(normal, configspec=_spec(), interpolation=False)
    result = values.validate(_validator(), preserve_errors=True)
    if result is not True:
        for _, name, err in flatten_errors(values, result):
            if name is None:
                continue
            invalid.add(name)
            if err is False or name in reported:
                continue  # missing or misshapen: reported above
            problems.append("%s: %s" % (origin.get(name, path), _describe(name, merged.get(name), types[name])))
    invalid |= bad
    for name in types:
        origin.setdefault(name, "default")
    settings = Settings(values, origin, merged, path, invalid)
    problems += _check_values(settings)
    from pypackrat import plugins
    problems += plugins.check(settings)
    return settings, problems


def effective(settings, meanings=False):
    """Lines for `packrat check`: every setting, its value and origin
    (pypackrat.settings.effective: in the order of the declarations)."""
    from pypackrat import settings as declared
    return declared.effective(settings, meanings)
