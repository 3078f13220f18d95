"""The JSON documents of ``packrat list --json``, ``verify --json`` and
``check --json``: their fields, declared once here.

The README's "Machine-readable output" tables are generated from these
declarations (``python -m pypackrat.report_schema readme README.md``), and
tests/test_json.py validates the real output against them (``problems``)
and fails when the README drifts from them. A field may be added under
the same ``version`` (scripts ignore the keys they do not know); a
field's meaning never changes under it.

Writing a document (``emit``): secrets are masked in every string (the
run's secrets, ``log``), names from outside stay as they are (json escapes
control characters), and a byte that is not UTF-8 (a file name on Linux is
any bytes; Python carries it as a surrogate escape) is written as the
escape ``\\udcXX`` of byte 0xXX, which Python's ``json`` reads back to the
same str that ``os.listdir`` gives: the output is pure ASCII and never
fails to encode.
"""
import contextlib
import re
import json
import os
import sys

VERSION = 1


class Field:
    """One key of a JSON object. ``type``: "string", "integer", "boolean",
    "any" (a setting's value: string, number, boolean, list of strings or
    null), an ``Object`` or a ``List`` of one of these. ``null``: the value
    may be null. ``choices``: the only values a string may take."""

    def __init__(self, name, type, meaning, null=False, choices=()):
        self.name, self.type, self.meaning = name, type, meaning
        self.null, self.choices = null, tuple(choices)


class Object:
    def __init__(self, *fields):
        self.fields = fields


class List:
    def __init__(self, item):
        self.item = item


def _head(action):
    """The fields every document starts with."""
    return (
        Field("version", "integer", "the schema's version: 1 (a new key may appear under the same "
                                    "version; a key's meaning never changes)", choices=(VERSION,)),
        Field("action", "string", "the action that wrote the document", choices=(action,)),
        Field("exit_status", "integer", "packrat's exit status for this run (also its real one)"),
    )

LIST = Object(
    *_head("list"),
    Field("host", "string", "the host name the files are named after (HOSTNAME, or --host)"),
    Field("backup_dir", "string", "BACKUP_DIR"),
    Field("locations", List(Object(
        Field("name", "string", "BACKUP_DIR, or the upload module's name"),
        Field("kind", "string", "local (BACKUP_DIR) or remote (an upload module)", choices=("local", "remote")),
        Field("description", "string", "where it is (a directory, a server), secrets masked"),
        Field("error", "string", "why it could not be read; null when it was", null=True),
    )), "the places looked at, in order: BACKUP_DIR, then each upload module"),
    Field("archives", List(Object(
        Field("name", "string", "the archive's base name as dar takes it (no slice number, no .dar)"),
        Field("target", "string", "its FS_TARGETS directory; null when no target of the config has "
                                  "this prefix", null=True),
        Field("prefix", "string", "HOST-TARGET, the part of the name before the date"),
        Field("day", "string", "its date, YYYYMMDD"),
        Field("kind", "string", "master, incremental (of the chain's master), full (FS_INCREMENTAL=no), "
                                "or orphan (an incremental whose master is gone)",
              choices=("master", "incremental", "full", "orphan")),
        Field("master", "string", "the name of the master this incremental restores from; null for a "
                                  "master, a full archive or an orphan", null=True),
        Field("slices", "integer", "the number of slices (the highest slice number seen anywhere)"),
        Field("missing_slices", List("integer"), "slice numbers missing everywhere"),
        Field("size", "integer", "its size in bytes (all slices) in the first location holding all "
                                 "of them with a known size; null when none does", null=True),
        Field("locations", List(Object(
            Field("name", "string", "a location's name (see locations)"),
            Field("slices", "integer", "how many of its slices are there"),
            Field("size", "integer", "their size in bytes there; null when the location gives no size "
                                     "(a Bash module)", null=True),
        )), "the locations holding at least one of its slices"),
    )), "every dar archive of the host, by prefix then date"),
    Field("dumps", List(Object(
        Field("name", "string", "the dump's file name"),
        Field("engine", "string", "mysql or postgresql"),
        Field("database", "string", "the database (all: a whole-server dump)"),
        Field("day", "string", "its date, YYYYMMDD"),
        Field("size", "integer", "its size in bytes in the first location that gives one; null when "
                                 "none does", null=True),
        Field("locations", List(Object(
            Field("name", "string", "a location's name"),
            Field("size", "integer", "its size in bytes there; null when unknown", null=True),
        )), "the locations holding it"),
    )), "every database dump of the host, by engine, database and date"),
    Field("problems", List("string"), "what is wrong, one sentence each (as the plain output's "
                                      "Problems, the locations' errors first)"),
)

VERIFY = Object(
    *_head("verify"),
    Field("host", "string", "the host name the files are named after"),
    Field("day", "string", "the run verified, YYYYMMDD; null when none was found", null=True),
    Field("status", "string", "ok when every test passed, else failed", choices=("ok", "failed")),
    Field("checked", Object(
        Field("archives", "integer", "archives tested with dar -t"),
        Field("dumps", "integer", "dumps decrypted and decompressed in full"),
        Field("copies", "integer", "remote copies found equal to the local file"),
    ), "what passed"),
    Field("results", List(Object(
        Field("kind", "string", "archive (dar -t), dump (decoded), copy (a remote copy), sample "
                                "(--sample files), expected (a target or database the run should have "
                                "covered), location (a remote that cannot be read), run (the run as a "
                                "whole)",
              choices=("archive", "dump", "copy", "sample", "expected", "location", "run")),
        Field("name", "string", "the archive's base name, the dump's or copy's file name, the target or "
                                "database expected, the location; null for the run", null=True),
        Field("location", "string", "where it was read or compared: BACKUP_DIR or an upload module; null "
                                    "when none applies", null=True),
        Field("status", "string", "ok or failed", choices=("ok", "failed")),
        Field("message", "string", "what failed (secrets masked); empty when ok"),
    )), "one entry per test, in the order they ran"),
    Field("failures", List("string"), "the failure lines, as on stderr and in the mail"),
    Field("notes", List("string"), "what is worth knowing but no failure (files changed since the "
                                   "backup, files dated after today)"),
)

CHECK = Object(
    *_head("check"),
    Field("config", "string", "the configuration file"),
    Field("valid", "boolean", "whether the configuration is valid (exit_status 0)"),
    Field("problems", List(Object(
        Field("setting", "string", "the setting the problem is about, when one is named", null=True),
        Field("file", "string", "the file to edit (or \"command line\"), when known", null=True),
        Field("message", "string", "the problem, as on stderr (one line, secrets masked)"),
    )), "why the configuration is invalid; empty when valid"),
    Field("warnings", List("string"), "what this machine lacks, typos of setting names, a BACKUP_DIR "
                                      "open to others: the module concerned fails at run time"),
    Field("modules", List(Object(
        Field("name", "string", "the module's name"),
        Field("role", "string", "backup or upload", choices=("backup", "upload")),
        Field("description", "string", "what it is (a Python or Bash module, its file)"),
    )), "the enabled modules (BACKUP_MODULES, UPLOAD_MODULES); empty when invalid"),
    Field("settings", List(Object(
        Field("name", "string", "the setting's (or variable's) name"),
        Field("value", "any", "its effective value (string, number, boolean, list of strings, or null "
                              "when unset); \"****\" for a secret that is set", null=True),
        Field("origin", "string", "where the value came from: a file, \"command line\", \"the "
                                  "kernel's host name\" or \"the built-in default\""),
        Field("secret", "boolean", "whether the value is masked in every output"),
        Field("declared", "boolean", "a declared setting (false: another variable of the config, "
                                     "which Bash modules read)"),
        Field("group", "string", "the title of its group (a module's settings); null when not "
                                 "declared", null=True),
        Field("meaning", "string", "what it means (from its declaration); null when not declared",
              null=True),
    )), "every effective setting, in the order of the declarations, then the other variables; "
        "empty when invalid"),
)

SCHEMAS = {"list": LIST, "verify": VERIFY, "check": CHECK}


# -- checking a document ------------------------------------------------------------

def problems(document, schema=None, path="$"):
    """What is wrong with ``document`` against ``schema`` (by its "action"
    when not given): a list of messages, empty when it conforms. Every
    declared key is required; a key not declared is a problem too (so that
    the README lists every field)."""
    if schema is None:
        schema = SCHEMAS.get(document.get("action") if isinstance(document, dict) else None)
        if schema is None:
            return ["%s: no known action" % path]
    return _check(document, schema, path, False, ())


def _check(value, kind, path, null, choices):
    if value is None:
        return [] if null else ["%s: null" % path]
    if isinstance(kind, Object):
        if not isinstance(value, dict):
            return ["%s: not an object" % path]
        out = []
        names = [f.name for f in kind.fields]
        out += ["%s.%s: not a documented field" % (path, k) for k in value if k not in names]
        for f in kind.fields:
            if f.name not in value:
                out.append("%s.%s: missing" % (path, f.name))
            else:
                out += _check(value[f.name], f.type, "%s.%s" % (path, f.name), f.null, f.choices)
        return out
    if isinstance(kind, List):
        if not isinstance(value, list):
            return ["%s: not a list" % path]
        out = []
        for i, item in enumerate(value):
            out += _check(item, kind.item, "%s[%d]" % (path, i), False, ())
        return out
    if kind == "any":
        ok = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value))
        return [] if ok else ["%s: not a setting's value: %r" % (path, value)]
    expected = {"string": str, "integer": int, "boolean": bool}[kind]
    if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
        return ["%s: not a %s: %r" % (path, kind, value)]
    if choices and value not in choices:
        return ["%s: %r is not one of %s" % (path, value, ", ".join(choices))]
    return []


# -- writing a document ------------------------------------------------------------

def masked(value):
    """``value`` (str, list, dict, number...) with the run's secrets masked
    in every string; names stay as they are otherwise."""
    from pypackrat import log
    secrets = log.current().secrets
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, dict):
        return {masked(k): masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value


def dumps(document):
    """The document as JSON text: secrets masked, pure ASCII (a surrogate
    escape of a byte that is not UTF-8 becomes \\udcXX), one document."""
    return json.dumps(masked(document), ensure_ascii=True, indent=2, allow_nan=False)


@contextlib.contextmanager
def stdout_for_json():
    """For the block, whatever else would reach stdout (progress lines, a
    Bash module's or a program's output) goes to stderr: stdout carries
    the JSON document alone. Yields a function that writes the document to
    the real stdout once the block is over."""
    documents = []
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no stderr to send them to: they go where they went
        saved = None
    try:
        yield documents.append
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        for document in documents:
            emit(document)


def emit(document):
    """Write a document to stdout."""
    sys.stdout.write(dumps(document) + "\n")
    sys.stdout.flush()


# -- the README's tables ------------------------------------------------------------

def rows(kind, prefix=""):
    """(dotted field, type in words, meaning) of every field, depth first."""
    out = []
    for f in kind.fields:
        name = prefix + f.name
        out.append((name, _words(f), f.meaning))
        inner = f.type.item if isinstance(f.type, List) else f.type
        if isinstance(inner, Object):
            out += rows(inner, name + ("[]." if isinstance(f.type, List) else "."))
    return out


def _words(field):
    kind = field.type
    if isinstance(kind, List):
        inner = kind.item
        text = "list of objects" if isinstance(inner, Object) else "list of %ss" % inner
    elif isinstance(kind, Object):
        text = "object"
    elif kind == "any":
        text = "value"
    else:
        text = kind
    if field.choices:
        text += ": " + ", ".join("`%s`" % c for c in field.choices)
    if field.null:
        text += " or null"
    return text


def table(action):
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for name, words, meaning in rows(SCHEMAS[action]):
        lines.append("| `%s` | %s | %s |" % (name, words, meaning.replace("|", "\\|")))
    return "\n".join(lines) + "\n"



_MARKED = re.compile(r"(<!-- json: (\w+) -->\n)(.*?)(<!-- /json -->)", re.S)


def readme(text):
    """``text`` (README.md) with every marked table generated afresh."""
    return _MARKED.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def marked(text):
    """The actions the README's markers name, in order."""
    return [m.group(2) for m in _MARKED.finditer(text)]


def main(argv):
    if argv[:1] != ["readme"]:
        print("usage: python -m pypackrat.report_schema readme [README.md]")
        return 2
    from pypackrat.settings import rewrite
    rewrite(argv[1] if len(argv) > 1 else "README.md", readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
