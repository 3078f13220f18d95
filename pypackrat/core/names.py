"""Archive and dump names, and their parsing: the one place of the names
the original made (kept as they were: restores and purges depend on them).

Filesystem archives (dar slices)::

    HOST<TARGET>-DATE.master.N.dar    slice N of a master
    HOST<TARGET>-DATE.N.dar           slice N of an incremental, or of a
                                      full archive when FS_INCREMENTAL=no

where ``HOST<TARGET>`` (the prefix) is the host name followed by the target
path with every ``/`` turned into ``-`` (``/home/sites`` ->
``HOST-home-sites``). dar takes an archive by its base name, without
``.N.dar``.

Database dumps::

    HOST-ENGINE-DB-DATE.sql.bz2       (``.sql.zst`` with zstd)

ENGINE is ``mysql`` or ``postgresql``; DB is the database's name,
percent-encoded where it could not stand in a file name or would read as
an escape (``file_part``); ``all`` is a whole server (``__ALL__``) and
``all.globals`` PostgreSQL's roles and tablespaces of a split ``__ALL__``.

DATE is ``YYYYMMDD``, a real date. Parsing is cached: the purge asks the
same name twice (whose it is, then how old).
"""
import datetime
import functools
import os
import re
import unicodedata

from pypackrat.errors import PackratError


# -- dates ----------------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 16)
def day(text):
    """``YYYYMMDD`` as a date, or None when it is not a real date."""
    if not re.fullmatch(r"[0-9]{8}", text or ""):
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def day_text(date):
    """A date as names and messages write it: ``YYYYMMDD``."""
    return date.strftime("%Y%m%d")


def parse_date(text):
    """A YYYYMMDD argument (-d) as a date; PackratError otherwise."""
    found = day(text)
    if found is None:
        raise PackratError("a date is written YYYYMMDD, not %r" % text)
    return found


# -- filesystem archives ----------------------------------------------------------

def archive_prefix(host, target):
    """``HOST`` plus the target with every ``/`` turned into ``-``, as the
    original did (``myserver`` + ``/home/sites`` -> ``myserver-home-sites``)."""
    return host + target.replace("/", "-")


def target_prefix(host, target):
    """The prefix of a target as a user names it: a path is turned into its
    prefix (``archive_prefix``); a word without ``/`` is taken as a prefix
    as it is (the part of an archive name before ``-DATE``)."""
    return archive_prefix(host, target) if "/" in target else target


def archive_base(prefix, date, master=False):
    """The base name dar takes (no slice number, no ``.dar``):
    ``PREFIX-DATE`` or ``PREFIX-DATE.master``; ``date`` is YYYYMMDD."""
    return "%s-%s%s" % (prefix, date, ".master" if master else "")


def slice_name(base, number):
    return "%s.%d.dar" % (base, number)


def slice_of(name, base):
    """The slice number of ``name`` when it is a slice of archive ``base``
    (``BASE.N.dar``), else None."""
    if not name.startswith(base + "."):
        return None
    m = _SLICE.fullmatch(name, len(base))
    return int(m.group(1)) if m else None


_SLICE = re.compile(r"\.([0-9]+)\.dar")
_DAR = re.compile(r"(?P<prefix>.+)-(?P<date>20[0-9]{6})\.(?P<master>master\.)?(?P<slice>[0-9]+)\.dar")


class DarName:
    """A parsed dar slice name: ``prefix``, ``day``, ``master`` (bool),
    ``slice`` (its number) and ``archive`` (its base name, as dar takes it)."""

    __slots__ = ("name", "prefix", "day", "master", "slice")

    def __init__(self, name, prefix, day_, master, slice_no):
        self.name, self.prefix, self.day = name, prefix, day_
        self.master, self.slice = master, slice_no

    @property
    def archive(self):
        return self.name[: -len(".%d.dar" % self.slice)]

    def __repr__(self):
        return "<DarName %s>" % self.name


@functools.lru_cache(maxsize=1 << 17)
def parse_dar(name):
    """The DarName of a dar slice's file name, or None."""
    m = _DAR.fullmatch(name)
    if not m:
        return None
    prefix, date, master, slice_no = m.groups()
    found = day(date)
    if found is None:
        return None
    return DarName(name, prefix, found, bool(master), int(slice_no))


def first_slices(names):
    """The parsed first slices among file names (a listing): what marks an
    archive as present."""
    return [p for p in map(parse_dar, names) if p is not None and p.slice == 1]


# -- database dumps ----------------------------------------------------------------

ENGINES = ("mysql", "postgresql")
ALL = "__ALL__"                 # the target word for a whole server
ALL_NAME = "all"                # its file name part
GLOBALS_NAME = "all.globals"    # PostgreSQL's globals of a split __ALL__
BZ2, ZST = ".sql.bz2", ".sql.zst"

_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_ESCAPE = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_DUMP = re.compile(r"(?P<host>.+)-(?P<engine>%s)-(?P<database>.+)-(?P<date>20[0-9]{6})(?P<suffix>%s)"
                   % ("|".join(ENGINES), "|".join(re.escape(s) for s in (BZ2, ZST))))


def file_part(database):
    """A database name as it goes into a file name, one-to-one: ``__ALL__``
    is ``all``; ``/`` (legal in a database name, not in a file name),
    control characters, and a ``%`` that would read as an escape (followed
    by two hex digits) are percent-encoded (``shop/eu`` is ``shop%2Feu``,
    never the same as ``shop-eu``). Every other name is itself, as it
    always was. ``database_of`` is the reverse."""
    if database == ALL:
        return ALL_NAME
    out = []
    for i, c in enumerate(database):
        if c == "%" and _HEX2.match(database, i + 1):
            out.append("%25")
        elif c == "/" or unicodedata.category(c) in ("Cc", "Cs"):
            try:
                raw = c.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raw = c.encode("utf-8", "surrogatepass")
            out.append("".join("%%%02X" % b for b in raw))
        else:
            out.append(c)
    return "".join(out)


def database_of(part):
    """The database name of a file name's database part (``file_part``
    reversed; ``all`` stays ``all``)."""
    return _ESCAPE.sub(lambda m: bytes.fromhex(m.group(0).replace("%", ""))
                       .decode("utf-8", "surrogateescape"), part)


def reserved(database):
    """A database whose file name would be that of a whole-server dump
    (``all``, ``all.globals``), which ``restore ... all`` reads as one:
    the message to fail it with, or None."""
    if database != ALL and is_whole_server(database):
        return ("a database is named %r, the file name of a whole-server dump (__ALL__%s); "
                "it is not dumped on its own (rename it, or dump the server with __ALL__ "
                "without DB_SPLIT_ALL)" % (database, "" if database == ALL_NAME else " with DB_SPLIT_ALL"))
    return None


def is_whole_server(database):
    """A database argument that names a whole-server dump (``__ALL__``,
    ``all``, ``all.globals``)."""
    return file_part(database) in (ALL_NAME, GLOBALS_NAME)


def dump_name(host, engine, database, date, suffix=BZ2):
    """``HOST-ENGINE-DB-DATE.sql.bz2`` (``suffix``: the compressor's)."""
    return "%s-%s-%s-%s%s" % (host, engine, file_part(database), date, suffix)


def parse_dump_name(name):
    """(host, engine, database part, date, suffix) of a dump's file name, or
    None. The database part is ``all`` for an __ALL__ dump and
    ``all.globals`` for PostgreSQL's globals of a split __ALL__."""
    m = _DUMP.fullmatch(os.path.basename(name))
    if not m:
        return None
    return m.group("host"), m.group("engine"), m.group("database"), m.group("date"), m.group("suffix")
