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


def is_secret(name):
    return (name == "ENCRYPTION_KEY" or name == "S3_SECRET_KEY"
            or name.endswith("_PASS") or name.endswith("_PASSWORD"))


class Settings:
    """The effective settings: validated values, where each came from, and
    every other variable the config file defined (for Bash modules)."""

    def __init__(self, values, origin, raw, path):
        self.values = values      # validated ConfigObj
        self.origin = origin      # name -> file, or "default"
        self.raw = raw            # every variable as bash gave it (str or list)
        self.path = path

    def __getitem__(self, key):
        return self.values[key]

    def get(self, key, default=None):
        return self.values.get(key, default)

    def __contains__(self, key):
        return key in self.values

    def __setitem__(self, key, value):
        self.values[key] = value
        self.origin[key] = "command line"


def _spec_types():
    """name -> (check function name, has default) from configspec.ini."""
    types = {}
    with open(SPEC) as fh:
        for line in fh:
            m = re.match(r"^([A-Z0-9_]+)\s*=\s*([a-z_]+)\((.*)\)\s*$", line)
            if m:
                types[m.group(1)] = (m.group(2), "default=" in m.group(3), m.group(3))
    return types


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


def _normalise(values, types):
    """Give each known setting the shape its type expects, as Bash would
    read it: an array used as a scalar is its first element; a scalar used
    as an array is a one-element array (none when empty); an empty value
    of a setting with a default takes the default."""
    out = {}
    for name, value in values.items():
        kind = types.get(name, (None, False, ""))
        if kind[0] is None:
            out[name] = value
            continue
        if kind[0].endswith("_list"):
            if isinstance(value, str):
                value = [value] if value else []
        elif isinstance(value, list):
            value = value[0] if value else ""
        if value == "" and kind[1] and kind[0] != "string":
            continue
        out[name] = value
    return out


def _describe(name, value, spec):
    kind, _, args = spec
    shown = "****" if is_secret(name) else value
    if kind == "integer":
        rule = "a whole number"
        lo = re.search(r"min=(\d+)", args)
        hi = re.search(r"max=(\d+)", args)
        if lo and hi:
            rule += " from %s to %s" % (lo.group(1), hi.group(1))
        elif lo:
            rule += " >= %s" % lo.group(1)
    elif kind == "option":
        rule = "one of " + ", ".join(re.findall(r'"([^"]*)"', args))
    elif kind == "boolean":
        rule = "yes or no"
    else:
        rule = "a non-empty value" if "min=1" in args else "valid"
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


def load(path=DEFAULT_CONFIG, overrides=None):
    """Read, merge and validate; raise ConfigError listing every problem."""
    from configobj import ConfigObj, flatten_errors
    from validate import Validator

    raw, problems = read_shell(path)
    for line in problems:
        log.warn("Warning: " + line)
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

    types = _spec_types()
    required = [n for n, t in types.items() if not t[1]]
    for name in required:
        if name not in merged:
            problems.append("Error: Configuration setting %s is not defined in %s" % (name, path))
    for name in ("BACKUP_DIR", "PURGE_LOCAL_ARCHIVES", "PURGE_REMOTE_ARCHIVES"):
        if merged.get(name) in ("", []):
            problems.append("Error: Configuration setting %s is not defined in %s (it is empty)" % (name, path))
    normal = _normalise(merged, types)
    values = ConfigObj(normal, configspec=SPEC, interpolation=False)
    result = values.validate(Validator(), preserve_errors=True)
    if result is not True:
        for _, name, err in flatten_errors(values, result):
            if name is None or err is False:
                continue  # missing: reported above
            problems.append("%s: %s" % (origin.get(name, path), _describe(name, merged.get(name), types[name])))
    for name in types:
        origin.setdefault(name, "default")
    if not problems:
        msg = _check_master_day(values)
        if msg:
            problems.append("%s: %s" % (origin.get("FS_MASTER_DAY", path), msg))
    settings = Settings(values, origin, merged, path)
    if not problems:
        from pypackrat import modules
        problems += modules.check(settings)
    if problems:
        raise ConfigError(problems)
    for name, value in values.items():
        if is_secret(name) and value:
            log.add_secret(value)
    return settings


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
