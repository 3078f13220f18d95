"""Reading and validating the configuration.

``packrat.conf`` is a Bash script, as it always was: it is evaluated by bash
itself (``shellconf.sh``), so arrays, quoting, ``$VAR`` expansion and a
``HOSTNAME`` set in the file mean exactly what they meant to the original.
The values are then held in a ConfigObj and validated against
``configspec.ini``. Files ``MODULES_D/*.conf`` (configobj INI, a section per
module, keys named like the shell variables) are merged over it, in name
order, so settings can move out of the Bash file one module at a time.

Every problem is collected and reported at once, one line each, with the
setting's name and the file it came from.
"""
import glob
import os
import re
import tempfile

from pypackrat import execute, log
from pypackrat.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "configspec.ini")
DEFAULT_CONFIG = "/etc/packrat.conf"
DEFAULT_MODULES_D = "/etc/packrat/modules.d"

WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


class InvalidSetting(KeyError):
    """A module check asked for a setting whose value failed validation."""


def is_secret(name):
    return (name == "ENCRYPTION_KEY" or name == "S3_SECRET_KEY"
            or name.endswith("_PASS") or name.endswith("_PASSWORD"))


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
    """One line of configspec.ini as validate parses it: the check's name
    (``integer``, ``option``...), its arguments (an option's values), its
    keyword arguments (min, max) and whether it has a default."""

    def __init__(self, check, kind, args, kwargs, default):
        self.check, self.kind, self.args, self.kwargs = check, kind, list(args), dict(kwargs)
        self.has_default = default is not None

    def __getitem__(self, i):  # (kind, has_default) as a tuple, for older callers
        return (self.kind, self.has_default, self.check)[i]


_SPEC_CACHE = {}


def _spec_types():
    """name -> Spec, from configspec.ini read by ConfigObj as a configspec and
    each check parsed by validate itself."""
    if SPEC not in _SPEC_CACHE:
        from configobj import ConfigObj
        spec = ConfigObj(SPEC, _inspec=True, list_values=False, interpolation=False,
                         file_error=True, raise_errors=True)
        validator = _validator()
        types = {}
        for name in spec.scalars:
            kind, args, kwargs, default = validator._parse_with_caching(spec[name])
            types[name] = Spec(spec[name], kind, args, kwargs, default)
        _SPEC_CACHE[SPEC] = types
    return _SPEC_CACHE[SPEC]


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


def read_shell(path):
    """Evaluate a Bash config file; return ({name: str|list}, warnings).

    Raises ConfigError when bash reports an error in the file."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(["Cannot read config file: %s" % path])
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8"}
    out_fd, out_path = tempfile.mkstemp(prefix="conf-", dir=execute.private_dir())
    os.close(out_fd)
    try:
        result = execute.run(["bash", os.path.join(HERE, "shellconf.sh"), path, out_path],
                             env=env, clean_env=True, ok_codes=range(256),
                             changes=False, quiet=True, stdin="")
        code, stderr = result.code, result.err
        with open(out_path, "rb") as fh:
            data = fh.read()
    finally:
        os.unlink(out_path)
    lines = [l for l in stderr.splitlines() if l.strip()]
    problems = ["%s: %s" % (path, _bash_message(l, path)) for l in lines]
    if code != 0 and problems:
        raise ConfigError(problems)
    values = {}
    fields = data.split(b"\0")
    i = 0
    while i + 2 < len(fields) + 1 and i < len(fields) - 1:
        kind, name = fields[i].decode(), fields[i + 1].decode()
        if kind == "S":
            values[name] = fields[i + 2].decode("utf-8", "surrogateescape")
            i += 3
        else:
            count = int(fields[i + 2])
            values[name] = [f.decode("utf-8", "surrogateescape")
                            for f in fields[i + 3:i + 3 + count]]
            i += 3 + count
    return values, problems


def _bash_message(line, path):
    # "/etc/packrat.conf: line 3: unexpected EOF ..." -> "line 3: unexpected EOF ..."
    for prefix in (path + ": ", "shellconf.sh: "):
        if line.startswith(prefix):
            line = line[len(prefix):]
    return line


def read_modules_d(directory):
    """Merge the INI files of modules.d: ({name: value}, {name: file}, problems)."""
    from configobj import ConfigObj, ConfigObjError
    values, origin, problems = {}, {}, []
    for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
        try:
            ini = ConfigObj(path, file_error=True, list_values=True, interpolation=False)
        except (ConfigObjError, OSError, SyntaxError) as exc:
            problems.append("%s: %s" % (path, str(exc).splitlines()[0]))
            continue
        for section in ini.sections:
            for key, value in ini[section].items():
                if isinstance(value, dict):
                    problems.append("%s: [%s] %s: nested sections are not settings" % (path, section, key))
                    continue
                values[key] = value
                origin[key] = path
        for key in ini.scalars:
            values[key] = ini[key]
            origin[key] = path
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
_SERVER = re.compile(r"[A-Za-z0-9_.:%\[\]-]{1,255}")  # a host name, IPv4 or IPv6 address


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
    if s.valid("SMTP_USER", "SMTP_TLS") and s.values.get("SMTP_USER") and s.values.get("SMTP_TLS") == "no":
        problems.append("%s: SMTP_USER is set but SMTP_TLS=no: the SMTP password would go over the "
                        "network in clear text; set SMTP_TLS=starttls (port 587) or SMTP_TLS=ssl (port 465)"
                        % s.where("SMTP_USER"))
    return problems


def requirements(settings):
    """What the run needs from this machine, beyond the values: programs,
    directories, readable files. Each missing one fails only its module (or
    the mail) at run time; `packrat check` prints them as warnings."""
    lines = []
    ca = settings.get("SMTP_CA")
    if ca and not (os.path.isfile(ca) and os.access(ca, os.R_OK)):
        lines.append("%s: SMTP_CA=%s: no such readable file: the failure mail cannot be sent"
                     % (settings.where("SMTP_CA"), ca))
    from pypackrat import modules
    return lines + modules.requirements(settings)


def _typos(merged, types, origin):
    """Warnings for unknown names close to a known setting (FS_TARGET,
    HOSTNAM, hostname). Other names are left alone: Bash modules have
    variables of their own."""
    import difflib
    known = sorted(types)
    lines = []
    for name in merged:
        if name in types:
            continue
        upper = name.upper()
        close = [upper] if upper in types else difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
        if close:
            lines.append("%s: %s is not a packrat setting: did you mean %s?"
                         % (origin.get(name, "?"), name, close[0]))
    return lines


def _register_secrets(merged):
    for name, value in merged.items():
        if is_secret(name):
            for item in (value if isinstance(value, list) else [value]):
                if item:
                    log.add_secret(item)


def load(path=DEFAULT_CONFIG, overrides=None):
    """Read, merge and validate; raise ConfigError listing every problem.
    The error carries ``settings``: the values that did validate (the
    failure mail of a nightly run takes ADMIN_EMAIL and SMTP from them)."""
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
    _register_secrets(merged)

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
    values = ConfigObj(normal, configspec=SPEC, interpolation=False)
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
    from pypackrat import modules
    problems += modules.check(settings)
    return settings, problems


def effective(settings):
    """Lines for `packrat check`: every known setting, its value and origin."""
    lines = []
    for name in sorted(settings.values):
        value = settings.values[name]
        if is_secret(name) and value:
            shown = "****"
        elif isinstance(value, list):
            shown = "(" + " ".join(repr(v) for v in value) + ")"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        elif value is None:
            shown = "(unset)"
        else:
            shown = repr(value) if isinstance(value, str) else str(value)
        lines.append("%s=%s    # %s" % (name, shown, settings.origin.get(name, "default")))
    return lines
