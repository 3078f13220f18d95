"""Every setting, declared once.

A setting is declared where it belongs: the global ones here, each
module's in a ``SETTINGS = Group(...)`` near the top of its file in
``pypackrat/backup/`` or ``pypackrat/upload/``. A declaration holds the
setting's name, type, default, allowed values, whether it is a secret, a
one-line meaning, and the common checks that apply when its module is
enabled (``required``: not empty; ``host``: a host name or address;
``readable``: a readable file when set). From the declarations come:

- the configspec that ``config`` validates with (``spec_lines()``);
- the comments and values of the shipped ``packrat.conf`` (``conf()``);
- the settings tables of README.md, between ``<!-- settings: KEY... -->``
  and ``<!-- /settings -->`` (``readme()``);
- what ``packrat check`` prints (``effective()``).

``python -m pypackrat.settings conf`` prints the shipped packrat.conf,
``python -m pypackrat.settings readme [README.md]`` rewrites the tables in
place, ``python -m pypackrat.settings spec`` prints the configspec.

A module reads its settings through a ``View``: the values, and where each
came from; a value left at its default is blamed on the file that enabled
the module. A module may reuse another's declarations (``uses=``): it gets
their common checks under its own name, and their settings are declared
(and documented) once.
"""
import importlib
import re
import textwrap

TYPES = ("string", "string_list", "integer", "float", "boolean", "option")
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class _Marker:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


NO_DEFAULT = _Marker("NO_DEFAULT")  # the setting must be in the config file
_TYPE_DEFAULT = _Marker("TYPE_DEFAULT")  # "" for a string, () for a list


def _is_secret(name):
    try:
        from pypackrat.core.secrets import is_secret
    except ImportError:  # pragma: no cover - before the secret list moved
        from pypackrat.config import is_secret
    return is_secret(name)


class Setting:
    """One setting. ``type``: string, string_list, integer, float (a
    decimal number), boolean or option (one of ``choices``). ``default``:
    its value when the config does not set it (``NO_DEFAULT``: the config
    must set it). ``sample``: the value the shipped packrat.conf sets, when
    it is not the default; ``shipped``: True (written), "commented" (written
    as a comment) or False (not in the shipped file). ``secret``: from the
    one rule (``core.secrets.is_secret``); a declaration may only repeat it.
    ``required``, ``host``, ``readable``, ``carried_by``: the common checks
    made when the module that declares (or uses) the setting is enabled:
    not empty; a host name or address; a readable file (when set); no
    control characters or bytes that are not UTF-8, which ``carried_by``
    (what takes the value: "an FTP command") cannot carry."""

    def __init__(self, name, type="string", default=_TYPE_DEFAULT, *, meaning="", choices=(), min=None,
                 max=None, secret=None, sample=_TYPE_DEFAULT, shipped=True, default_text=None,
                 required=False, host=False, readable=False, carried_by=None):
        if not _NAME.fullmatch(name):
            raise ValueError("setting %r: a name is upper-case letters, digits and '_'" % name)
        if type not in TYPES:
            raise ValueError("setting %s: unknown type %r (one of %s)" % (name, type, ", ".join(TYPES)))
        if default is _TYPE_DEFAULT:
            if type not in ("string", "string_list"):
                raise ValueError("setting %s: a %s needs a default (or NO_DEFAULT)" % (name, type))
            default = "" if type == "string" else ()
        if type == "option" and (not choices or (default is not NO_DEFAULT and default not in choices)):
            raise ValueError("setting %s: an option's default must be one of its choices" % name)
        if secret is not None and bool(secret) != _is_secret(name):
            raise ValueError("setting %s: secret=%s, but the secret rule (core.secrets.is_secret) says %s"
                             % (name, secret, not secret))
        if shipped not in (True, False, "commented"):
            raise ValueError("setting %s: shipped is True, False or 'commented'" % name)
        self.name, self.type, self.default = name, type, default
        self.meaning = meaning
        self.choices, self.min, self.max = tuple(choices), min, max
        self.secret = _is_secret(name)
        self.sample = default if sample is _TYPE_DEFAULT else sample
        self.shipped, self.default_text = shipped, default_text
        self.required, self.host, self.readable = required, host, readable
        self.carried_by = carried_by

    def __repr__(self):
        return "Setting(%r)" % self.name

    @property
    def has_default(self):
        return self.default is not NO_DEFAULT

    # -- the configspec ------------------------------------------------------

    def spec(self):
        """This setting's configspec line, as ConfigObj's validate reads it."""
        args = ['"%s"' % _plain(self.name, c) for c in self.choices]
        args += ["%s=%s" % (k, v) for k, v in (("min", self.min), ("max", self.max)) if v is not None]
        if self.has_default:
            args.append("default=" + self._spec_value(self.default))
        return "%s = %s(%s)" % (self.name, self.type, ", ".join(args))

    def _spec_value(self, value):
        if value is None:
            return "None"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return "list(%s)" % ", ".join('"%s"' % _plain(self.name, v) for v in value)
        if isinstance(value, (int, float)):
            return str(value)
        return '"%s"' % _plain(self.name, value)

    # -- the shell file and the README ---------------------------------------

    def shell(self, value):
        """``value`` as packrat.conf writes it."""
        if isinstance(value, (list, tuple)):
            return "(%s)" % " ".join("'%s'" % v for v in value)
        if isinstance(value, bool):
            return '"%s"' % ("yes" if value else "no")
        if value is None:
            return '""'
        if isinstance(value, (int, float)):
            return str(value)
        return '"%s"' % value

    def allowed(self):
        """The allowed values in words, or "" when any value of the type goes."""
        if self.type == "option":
            return "one of " + ", ".join(self.choices)
        if self.type == "boolean":
            return "yes or no"
        if self.type in ("integer", "float") and (self.min is not None or self.max is not None):
            if self.min is not None and self.max is not None:
                return "%s to %s" % (self.min, self.max)
            return ">= %s" % self.min if self.min is not None else "<= %s" % self.max
        return ""

    def default_words(self):
        """The default for a reader: ``'1000M'``, empty, (), yes..."""
        if self.default_text:
            return self.default_text
        if not self.has_default:
            return "must be set"
        value = self.default
        if value in ("", None):
            return "empty"
        if isinstance(value, (list, tuple)):
            return "`()`" if not value else "`%s`" % self.shell(value)
        if isinstance(value, bool):
            return "`yes`" if value else "`no`"
        return "`%s`" % value


def _plain(name, text):
    if '"' in str(text) or "\n" in str(text):
        raise ValueError("setting %s: a declared value holds a quote or a line break" % name)
    return text


class Group:
    """The settings of one module (or of the run as a whole): a title for
    packrat.conf and the README, its settings in the order shown, and the
    groups of other modules it ``uses`` (their settings apply to it too,
    declared and documented where they belong). ``key`` names the group in
    README markers; a plugin's group is keyed by its module's name."""

    def __init__(self, title, *settings, uses=(), key=None):
        self.title, self.settings, self.uses, self.key = title, tuple(settings), tuple(uses), key

    def __iter__(self):
        return iter(self.settings)

    def all(self):
        """Its settings and those of the groups it uses (each once)."""
        seen, out = set(), []
        for group in (self,) + self.uses:
            for setting in (group.all() if group is not self else group.settings):
                if setting.name not in seen:
                    seen.add(setting.name)
                    out.append(setting)
        return out


# -- the global settings --------------------------------------------------------

GLOBAL = Group(
    "Global settings",
    Setting("ADMIN_EMAIL", default=NO_DEFAULT, sample="root",
            meaning="Where failure reports are mailed (empty: no mail)."),
    Setting("BACKUP_DIR", default=NO_DEFAULT, min=1, sample="/var/backup",
            meaning="Where archives and dumps are written (an absolute path)."),
    Setting("BACKUP_MODULES", "string_list", NO_DEFAULT, sample=("filesystem",),
            meaning="Backup modules to run, in order: filesystem, mysql, postgresql, or the name of a "
                    "Bash module (a mod_NAME function in a *.sh file of MODULE_PATH)."),
    Setting("UPLOAD_MODULES", "string_list",
            meaning="Upload modules to run, in order: local, ssh, ftp, s3, or a Bash module. Empty: the "
                    "archives stay in BACKUP_DIR only."),
    Setting("PURGE_LOCAL_ARCHIVES", "integer", NO_DEFAULT, min=0, sample=10,
            meaning="Delete local archives whose date (in the name) is more than this many days ago. "
                    "Files without a date in their name are never deleted."),
    Setting("PURGE_REMOTE_ARCHIVES", "integer", NO_DEFAULT, min=0, sample=10,
            meaning="The same for the archives at the upload destinations."),
    Setting("ENCRYPTION_KEY", secret=True,
            meaning="Encrypt archives and dumps with this key (empty: no encryption). Keep a copy of it "
                    "somewhere else: without it nothing can be restored."),
    Setting("HOSTNAME", default=NO_DEFAULT, min=1, shipped=False, default_text="the host's name",
            meaning="The name that begins every archive name and names the failure mail; bash sets it "
                    "(the kernel's host name) unless the config file does."),
    key="global")

PYTHON_EDITION = Group(
    "New in the Python edition",
    Setting("MODULE_PATH", default="/usr/share/packrat/modules",
            meaning="Where Bash modules (*.sh) are looked for; a colon-separated list is fine."),
    Setting("SHELL_MODULES", "string_list",
            meaning="Names that run their Bash module even where a Python port exists."),
    Setting("MODULES_D", default="/etc/packrat/modules.d",
            meaning="Directory of per-module INI settings files (*.conf), merged over this file in "
                    "name order."),
    Setting("PURGE_KEEP_CHAINS", "boolean", True,
            meaning="Never purge a master archive while a kept incremental depends on it."),
    Setting("PURGE_KEEP_DAILY", "integer", 0, min=0,
            meaning="Retention by count, besides the age (PURGE_LOCAL_ARCHIVES, PURGE_REMOTE_ARCHIVES): "
                    "keep the newest backup of each of the last N days that have one, per target and "
                    "per database, whatever its age; a target's day is kept with its master. An archive "
                    "is deleted only when no rule keeps it. 0: the rule is off."),
    Setting("PURGE_KEEP_WEEKLY", "integer", 0, min=0,
            meaning="The same for the newest backup of each of the last N ISO weeks (Monday to Sunday) "
                    "that have one. 0: off."),
    Setting("PURGE_KEEP_MONTHLY", "integer", 0, min=0,
            meaning="The same for the newest backup of each of the last N calendar months that have "
                    "one. 0: off."),
    Setting("PURGE_REMOTE_ALL_HOSTS", "boolean", False,
            meaning="A purge considers only this host's archives (dar slices of its FS_TARGETS, its "
                    "database dumps, HOSTNAME-MODULE-... names of its Bash backup modules, names "
                    "matching PURGE_PATTERNS) and keeps each target's newest chain and each database's "
                    "newest dump, however old. Several servers may share one remote directory: yes "
                    "considers the archives of every host there (still only archive names)."),
    Setting("PURGE_LOCAL_RECURSIVE", "boolean", False,
            meaning="Purge subdirectories of BACKUP_DIR too (the original did); no: the top level only."),
    Setting("PURGE_PATTERNS", "string_list",
            meaning="More names of yours to purge by the date in them (shell globs on file names), e.g. "
                    "archives of a target no longer in FS_TARGETS: (\"$HOSTNAME-old-target-*.dar\")."),
    Setting("LOCK_FILE", default="/run/packrat/packrat.lock",
            meaning="One run at a time: a second run exits with status 75 while this is held. Keep it "
                    "in a directory only root can write (created 0700 if missing)."),
    Setting("LOG",
            meaning="Where the run's lines also go, each with its level (info: progress, notice, warning, "
                    "err), progress lines with or without -v: syslog (facility daemon, tag packrat: the "
                    "journal under systemd), or the absolute path of a file (appended; created 0600; "
                    "never a symbolic link, nor a file of another user's). Empty: the terminal only."),
    Setting("UPLOAD_RETRIES", "integer", 4, min=0, max=100,
            meaning="Attempts of a failed upload after the first, each on a new connection."),
    Setting("UPLOAD_RETRY_WAIT", "float", 2, min=0, max=600,
            meaning="The wait before the first retry, in seconds (doubled at each attempt, at most 60)."),
    Setting("UPLOAD_CONCURRENCY", "integer", 2, min=0, max=64,
            meaning="How many upload modules send at once, each file as soon as it is made, while the "
                    "backups go on (Bash upload modules: after the backups); 0: the original's order, "
                    "every backup first, then one upload module after another."),
    Setting("NICE", "integer", None, min=-20, max=19, sample=10, shipped="commented",
            meaning="The niceness (CPU priority) of the nightly run and of every program it starts: "
                    "dar, dumps, compressors, ssh, hooks (19: the lowest priority; empty: unchanged)."),
    Setting("IONICE", sample="idle", shipped="commented",
            meaning="Their disk scheduling class (ionice): idle (disk time only when nobody else wants it), "
                    "best-effort, or best-effort:0 (highest) to best-effort:7 (lowest); realtime is "
                    "refused. Empty: unchanged."),
    key="python")

MAIL = Group(
    "Mail through an SMTP server instead of the local sendmail/mail",
    Setting("SMTP_HOST", meaning="The SMTP server (empty: the local sendmail or mail)."),
    Setting("SMTP_PORT", "integer", 25, min=1, max=65535, meaning="Its port."),
    Setting("SMTP_TLS", "option", "no", choices=("no", "starttls", "ssl"),
            meaning="starttls (port 587) or ssl (port 465): the server's certificate is checked "
                    "against the system's CAs or SMTP_CA."),
    Setting("SMTP_CA", meaning="CA file for the server's certificate (empty: the system's)."),
    Setting("SMTP_USER", meaning="Login at the SMTP server (empty: none); needs SMTP_TLS."),
    Setting("SMTP_PASS", secret=True, meaning="Its password."),
    Setting("MAIL_FROM", meaning="The sender of every mail, a full address (empty: packrat@ and the "
                                 "host's fully qualified name)."),
    Setting("MAIL_ON", "option", "failure", choices=("failure", "always", "change"),
            meaning="When to mail a report: failure (a failed run, as the original), always (a success "
                    "report too: each archive and dump with its size and time, each upload with its "
                    "throughput), change (a failure, then the first success after one, \"Recovered\"; "
                    "the last status is kept in /var/lib/packrat/state)."),
    key="mail")

MONITORING = Group(
    "Monitoring",
    Setting("PING_URL", meaning="An http(s) URL pinged at the start (URL/start), on success (URL) and on "
                                "failure (URL/fail, with the log's last lines), as healthchecks.io does. A "
                                "monitoring server that is down is a warning, never a failed backup. "
                                "Masked in every output, as a secret."),
    Setting("METRICS_FILE", meaning="A Prometheus text file for the textfile collector of the node exporter "
                                    "(e.g. /var/lib/prometheus/node-exporter/packrat.prom), written "
                                    "atomically at the end of each run, mode 0644 (empty: none)."),
    key="monitoring")

HOOKS = Group(
    "Hooks (commands as Bash arrays, run without a shell: write (bash -c '...') for one)",
    Setting("PRE_BACKUP_COMMAND", "string_list",
            meaning="Run under the lock before anything else, the purge included. A failure fails the "
                    "run before anything is made; the exit status 75 skips the night (exit 0, no mail)."),
    Setting("POST_BACKUP_COMMAND", "string_list",
            meaning="Run after the uploads, whatever the result; a failure of its own fails the run."),
    Setting("ON_ERROR_COMMAND", "string_list",
            meaning="Run when the run failed, before the mail (PACKRAT_EXIT_STATUS is set). Every hook "
                    "gets PACKRAT_DATE, PACKRAT_HOST, PACKRAT_BACKUP_DIR, PACKRAT_NEW_FILES (one per "
                    "line) and PACKRAT_FAILURES (one per line, masked) in an environment without "
                    "secrets (PATH, LANG); a hook is stopped after HOOK_TIMEOUT seconds."),
    Setting("HOOK_TIMEOUT", "integer", 3600, min=1, meaning="The time a hook may take, in seconds."),
    key="hooks")

GLOBAL_GROUPS = (GLOBAL, PYTHON_EDITION, MAIL, MONITORING, HOOKS)

# Not secrets by name, but shown as **** all the same: a healthchecks URL's
# UUID lets anyone ping the check (the run masks it in its output too).
MASKED = ("PING_URL",)


# -- collecting the declarations ------------------------------------------------

def groups(extra=()):
    """[(key, Group)]: the global groups, then each role's plugins by name
    (backup, then upload), each followed at the end of its role by the groups
    its modules share (``uses``) that are no plugin's own. ``extra``:
    (key, Group) pairs of modules outside the folders (tests)."""
    from pypackrat import plugins
    out = [(g.key, g) for g in GLOBAL_GROUPS]
    found = []
    for role in plugins.ROLES:
        for name, dotted in plugins.available(role).items():
            group = getattr(importlib.import_module(dotted), "SETTINGS", None)
            if group is not None:
                found.append((role, group.key or name, group))
    found += [("extra", key, group) for key, group in extra]
    seen = {id(g) for _, g in out} | {id(g) for _, _, g in found}
    for i, (role, key, group) in enumerate(found):
        out.append((key, group))
        last_of_role = i + 1 == len(found) or found[i + 1][0] != role
        if last_of_role:
            for _, _, member in (f for f in found if f[0] == role):
                for used in member.uses:
                    if id(used) not in seen:
                        seen.add(id(used))
                        out.append((used.key or used.title, used))
    return out


def declarations(extra=()):
    """Every declared setting, in the order of ``groups()``; a name declared
    twice is a ValueError."""
    out, where = [], {}
    for key, group in groups(extra):
        for setting in group.settings:
            if setting.name in where:
                raise ValueError("setting %s is declared twice (in %s and %s)"
                                 % (setting.name, where[setting.name], key))
            where[setting.name] = key
            out.append(setting)
    return out


def declared(name):
    """The declaration of ``name``, or None."""
    return {s.name: s for s in declarations()}.get(name)


def spec_lines(extra=()):
    """The configspec, one line per setting, for ConfigObj."""
    return [s.spec() for s in declarations(extra)]


# -- what a module sees -----------------------------------------------------------

class View:
    """The settings as a module's check sees them: the values (``view[NAME]``,
    ``get``, ``valid``) and where each came from (``where(NAME)``): the file
    that set it, or, for a value left at its default, the file that enabled
    the module (BACKUP_MODULES or UPLOAD_MODULES): the file to edit."""

    def __init__(self, settings, role=None, module=None):
        while isinstance(settings, View):
            settings = settings.settings
        self.settings, self.role, self.module = settings, role, module

    def __getitem__(self, name):
        return self.settings[name]

    def __contains__(self, name):
        return name in self.settings

    def __getattr__(self, attr):  # values, origin, raw, path, get...
        if attr == "settings":  # not set yet (copy, pickle): no endless lookup
            raise AttributeError(attr)
        return getattr(self.settings, attr)

    def valid(self, *names):
        valid = getattr(self.settings, "valid", None)
        return valid(*names) if valid else True

    def where(self, name, role=None):
        return self.settings.where(name, role or self.role)

    def origin_of(self, name):
        """"default", a file, "command line", or "the kernel's host name"
        (``origin``, the settings' dict, stays readable as it is)."""
        return getattr(self.settings, "origin", {}).get(name, "default")


_UNCARRIED = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff]")


def common_problems(view, settings):
    """The checks the declarations ask for (``required``, ``host``,
    ``readable``, ``carried_by``), of the settings whose values validated,
    for the module ``view.module`` of ``view.role``."""
    import os
    from pypackrat.config import InvalidSetting, server_problem
    problems = []
    for setting in settings:
        name = setting.name
        try:
            if not view.valid(name):
                continue
            value = view[name]
        except (KeyError, InvalidSetting):
            continue
        if setting.required and value in ("", None, []):
            problems.append("%s: %s is empty, but the %s %s module is enabled"
                            % (view.where(name), name, view.module, view.role))
            continue
        if setting.carried_by and isinstance(value, str) and _UNCARRIED.search(value):
            problems.append("%s: %s%s: holds a control character or bytes that are not UTF-8, which %s "
                            "cannot carry" % (view.where(name), name, "" if setting.secret else "=%r" % value,
                                              setting.carried_by))
        if setting.host and value:
            problems += filter(None, [server_problem(view, name)])
        if setting.readable and value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            problems.append("%s: %s=%s: %s" % (view.where(name), name, value,
                                               "not readable" if os.path.isfile(value) else "no such file"))
    return problems


def check(code, view):
    """A Python module's configuration problems: the common checks of its
    declarations (and of those it uses), then its own ``check(view)``."""
    group = getattr(code, "SETTINGS", None)
    problems = common_problems(view, group.all()) if group is not None else []
    own = getattr(code, "check", None)
    return problems + (list(own(view)) if own else [])


# -- what `packrat check` prints -----------------------------------------------------

def shown(name, value):
    """A value as `packrat check` shows it, secrets masked."""
    from pypackrat import config
    if value and (config._looks_secret(name) or name in MASKED):
        return "****"
    if isinstance(value, list):
        return "(" + " ".join(repr(v) for v in value) + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "(unset)"
    return repr(value) if isinstance(value, str) else str(value)


def effective(settings, meanings=False):
    """Lines for `packrat check`: each declared setting in the order of the
    declarations, under its group's title, with its value and where it came
    from (``meanings``: with its meaning above it); then the other variables
    the config defined (Bash modules read them)."""
    lines = []
    names = set()
    for key, group in groups():
        lines.append("# -- %s --" % group.title)
        if not group.settings:  # a module built on another's settings
            lines.append("# (the settings of: %s)" % "; ".join(used.title for used in group.uses))
        for setting in group.settings:
            names.add(setting.name)
            if meanings:
                lines += _wrap(_meaning_line(setting), 100)
            lines.append("%s=%s    # %s" % (setting.name, shown(setting.name, settings.values.get(setting.name)),
                                            settings.where(setting.name)))
    others = sorted(n for n in settings.values if n not in names)
    if others:
        lines.append("# -- other variables of the config (Bash modules read them) --")
        lines += ["%s=%s    # %s" % (n, shown(n, settings.values[n]), settings.where(n)) for n in others]
    return lines


def _meaning_line(setting):
    """The meaning, then the allowed values and whether it is a secret."""
    text = setting.meaning
    if setting.required:
        text += " Must not be empty when the module is enabled."
    if setting.allowed():
        text += " Allowed: %s." % setting.allowed()
    if setting.secret:
        text += " A secret: masked in every output."
    return text


def _wrap(text, width, prefix="# "):
    return textwrap.wrap(text, width, initial_indent=prefix, subsequent_indent=prefix,
                         break_on_hyphens=False, break_long_words=False)


# -- the shipped packrat.conf ---------------------------------------------------------

CONF_HEADER = """\
# Packrat configuration.
#
# This file is a Bash script, read the way the original Packrat read it:
# NAME="value", arrays NAME=('a' 'b') on one line or several, comments and
# $OTHER expansions all mean what they mean to Bash. Every variable here is
# also visible to Bash modules. Settings can also move, one module at a time,
# into INI files in MODULES_D (see modules.d/README in the source).
#
# It may hold keys and passwords: keep it readable by root only
# (chmod 600 /etc/packrat.conf). Check it with: packrat check
#
# Generated from the settings' declarations (python -m pypackrat.settings conf).
"""


def conf():
    """The shipped packrat.conf: each setting with its meaning as a comment,
    set to its sample value."""
    out = [CONF_HEADER]
    for key, group in groups():
        if not any(setting.shipped for setting in group.settings):
            continue  # nothing of its own (a module that uses another's settings)
        out.append("#" * 78)
        out.append("# " + group.title)
        out.append("#" * 78)
        out.append("")
        for setting in group.settings:
            if setting.shipped is False:
                continue
            out += _wrap(_meaning_line(setting), 78)
            line = "%s=%s" % (setting.name, setting.shell(setting.sample))
            out.append(("#" + line) if setting.shipped == "commented" else line)
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# -- the README's tables --------------------------------------------------------------

_MARKED = re.compile(r"(<!-- settings: ([\w ]+) -->\n)(.*?)(<!-- /settings -->)", re.S)


def table(keys):
    """The README table of the groups ``keys``."""
    by_key = dict(groups())
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for key in keys:
        for setting in by_key[key].settings:
            meaning = _markdown(_meaning_line(setting))
            rows.append("| `%s` | %s | %s |" % (setting.name, setting.default_words(), meaning))
    return "\n".join(rows) + "\n"


_WORD = re.compile(r"(?<!\S)([('\"]*)(\S+?)([)'\".,;:]*)(?!\S)")


def _markdown(text):
    """A meaning in a Markdown table: names, paths and globs as code."""
    def code(m):
        before, word, after = m.groups()
        if not any(c in word for c in "_*/$~") or word.startswith("http"):
            return m.group(0)
        if before.endswith("'") and after.startswith("'"):  # 'test_*': the quotes go
            before, after = before[:-1], after[1:]
        return "%s`%s`%s" % (before, word, after)
    return _WORD.sub(code, text).replace("|", "\\|")


def readme(text):
    """``text`` (README.md) with every marked table generated afresh."""
    return _MARKED.sub(lambda m: m.group(1) + table(m.group(2).split()) + m.group(4), text)


def marked_keys(text):
    """The group keys the README's markers name, in order."""
    return [key for m in _MARKED.finditer(text) for key in m.group(2).split()]


def rewrite(path, render):
    """Write ``render(text)`` over the file ``path`` when it differs (the
    README's generated tables: this module's and report_schema's)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    new = render(text)
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)


def main(argv):
    usage = "usage: python -m pypackrat.settings conf | spec | readme [README.md]"
    if argv[:1] == ["conf"]:
        print(conf(), end="")
    elif argv[:1] == ["spec"]:
        print("\n".join(spec_lines()))
    elif argv[:1] == ["readme"]:
        rewrite(argv[1] if len(argv) > 1 else "README.md", readme)
    else:
        print(usage)
        return 2
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
