"""Dates in archive names, the age test, dar chains, and which names of a
place are this host's to purge.

A name's date is the last ``20YYMMDD`` in it that is a real date. A file is
old when ``floor((now - that date at 00:00) / 86400) > days``, the
original's test. A name without a date is never old: it is never purged.

Filesystem archives form chains: ``PREFIX-DATE.master.N.dar`` is a master;
``PREFIX-DATE.N.dar`` is an incremental taken against the newest master of
the same PREFIX dated on or before it (or a full archive that stands alone
when there is no such master). With chains kept, a master is not purged
while an incremental that is kept depends on it.

Whatever their age, a purge keeps the newest backup of each kind: for each
archive prefix (a target) its newest chain (its newest complete master,
slice 1 present, with every incremental taken against it; with
``whole_chain`` off, FS_INCREMENTAL=no, where later archives are full ones,
the master and the newest archive after it; or the newest full archive
where there is no master), the newest dump of each database, and the
newest file of every other series (a name with its date taken out). Dates
after the run's day do not count as newest. So backups that fail for longer
than the purge age, or a run date far ahead, never leave a place empty.

Planning is near-linear in the number of names: names are grouped by prefix
once, and each incremental finds its master by bisection.
"""
import bisect
import datetime
import fnmatch
import functools
import re

_DATE = re.compile(r"(?<!\d)(20\d{6})(?!\d)")
_DAR = re.compile(r"^(?P<prefix>.+)-(?P<date>20\d{6})\.(?P<master>master\.)?(?P<slice>\d+)\.dar$")


@functools.lru_cache(maxsize=1 << 16)
def _day(text):
    """``YYYYMMDD`` as a date, or None when it is not a real date."""
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _last_date(name):
    """(date, start, end) of the last valid date in ``name``, or None."""
    found = None
    for m in _DATE.finditer(name):
        day = _day(m.group(1))
        if day is not None:
            found = (day, m.start(1), m.end(1))
    return found


def date_in_name(name):
    """The date a name carries (the last valid one), or None."""
    found = _last_date(name)
    return found[0] if found else None


def age_in_days(day, now):
    """Whole days from ``day`` at 00:00 (local) to ``now``."""
    midnight = datetime.datetime.combine(day, datetime.time())
    return int((now - midnight).total_seconds() // 86400)


def is_old(name, days, now):
    day = date_in_name(name)
    return day is not None and age_in_days(day, now) > days


class DarName:
    """A parsed dar slice name."""

    __slots__ = ("name", "prefix", "day", "master", "slice")

    def __init__(self, name, prefix, day, master, slice_no):
        self.name, self.prefix, self.day = name, prefix, day
        self.master, self.slice = master, slice_no

    @property
    def archive(self):
        """The archive's base name, as dar takes it (no slice, no .dar)."""
        return self.name[: -len(".%d.dar" % self.slice)]


def parse_dar(name):
    m = _DAR.match(name)
    if not m:
        return None
    prefix, date, master, slice_no = m.groups()
    day = _day(date)
    if day is None:
        return None
    return DarName(name, prefix, day, bool(master), int(slice_no))


def master_of(incremental, masters):
    """The master (DarName of any of its slices) an incremental depends on:
    the newest master of the same prefix dated on or before it."""
    best = None
    for m in masters:
        if m.prefix == incremental.prefix and m.day <= incremental.day:
            if best is None or m.day > best.day:
                best = m
    return best


def _dump_key(name):
    """(host, engine, database part) of a dump's name, or None."""
    from pypackrat import dumps
    parsed = dumps.parse_dump_name(name)
    return None if parsed is None else parsed[:3]


def _newest_chain(group, today, whole_chain=True):
    """The archives ((day, master) of each) that restore one prefix's newest state as of
    ``today``, from its parsed slices ``group``: the newest master that has a
    first slice and the newest incremental dated from that master's day, or
    the newest full archive where there is no master (as
    filesystem.restore_chain). With ``whole_chain``, every incremental of
    that master up to ``today`` as well: an older incremental is what is left
    when the newest one turns out damaged. Dates after ``today`` do not
    count."""
    master = None
    for p in group:
        if p.master and p.slice == 1 and p.day <= today and (master is None or p.day > master.day):
            master = p
    best = None
    for p in group:
        if (not p.master and p.slice == 1 and p.day <= today
                and (master is None or p.day >= master.day) and (best is None or p.day > best.day)):
            best = p
    chain = {(p.day, p.master) for p in (master, best) if p is not None}
    if whole_chain and master is not None:
        chain.update((p.day, False) for p in group
                     if not p.master and master.day <= p.day <= today)
    return chain


_UNKNOWN = object()


def plan(names, days, now, keep_chains=True, keep_newest=True, parsed=None, whole_chain=True):
    """The names to delete, of ``names`` (base names in one place).
    ``whole_chain``: the newest chain kept is its master with every
    incremental (FS_INCREMENTAL=yes); without it, the master and the newest
    archive on it (full archives, FS_INCREMENTAL=no, are not incrementals).
    ``parsed``: parse_dar's answers already known ({name: DarName or None},
    as Owner.filter leaves them), so that no name is parsed twice."""
    today = now.date()
    known = parsed if parsed is not None else {}
    ages = {}

    def old_day(day):
        if day not in ages:
            ages[day] = age_in_days(day, now) > days
        return ages[day]

    old = set()
    dars = {}       # prefix -> [DarName]
    newest = {}     # series key -> (day, [names])
    for name in names:
        dar = known.get(name, _UNKNOWN)
        if dar is _UNKNOWN:
            dar = parse_dar(name)
        if dar is not None:
            if old_day(dar.day):
                old.add(name)
            dars.setdefault(dar.prefix, []).append(dar)
            continue
        found = _last_date(name)
        if found is None:
            continue  # never old, never purged
        day, start, end = found
        if old_day(day):
            old.add(name)
        if not keep_newest or day > today:
            continue
        key = _dump_key(name)
        key = ("dump",) + key if key else ("name", name[:start], name[end:])
        have = newest.get(key)
        if have is None or day > have[0]:
            newest[key] = (day, [name])
        elif day == have[0]:
            have[1].append(name)
    if not old:
        return []

    keep = set()
    for prefix, group in dars.items():
        if keep_chains:
            master_days = sorted({p.day for p in group if p.master})
            needed = set()
            if master_days:
                for p in group:
                    if not p.master and p.name not in old:
                        i = bisect.bisect_right(master_days, p.day) - 1
                        if i >= 0:
                            needed.add(master_days[i])
            keep.update(p.name for p in group if p.master and p.day in needed)
        if keep_newest:
            chain = _newest_chain(group, today, whole_chain)
            keep.update(p.name for p in group if (p.day, p.master) in chain)
    for _, kept in newest.values():
        keep.update(kept)
    return sorted(old - keep)


class Owner:
    """Which names of a place are this host's archives, the only ones a
    purge considers: names that start with a dot never; then

    - a dar slice whose prefix is ``HOST<TARGET>`` of a configured target;
    - a database dump ``HOST-ENGINE-DB-DATE.sql.*`` whose host part is this
      host exactly (``dumps.parse_dump_name``);
    - a name starting with ``HOST-MODULE-`` for a Bash backup module
      (modules/example.sh's convention: ``HOST-example-srv-www-DATE.tar.gz``);
    - a name matching one of ``patterns`` (shell globs on the base name).

    With ``any_host`` (PURGE_REMOTE_ALL_HOSTS), every dar slice, every dump,
    and every name holding ``-MODULE-`` of any host. Matching a target's full
    prefix rather than ``HOST-`` is what tells host ``web`` (target
    ``/db/etc``) from host ``web-db`` (target ``/etc``): both make
    ``web-db-etc-DATE...``; each host purges only its own targets' names."""

    def __init__(self, host, dar_prefixes=(), modules=(), patterns=(), any_host=False):
        self.host = host
        self.dar_prefixes = frozenset(dar_prefixes)
        self.modules = tuple(modules)
        self.starts = tuple("%s-%s-" % (host, m) for m in self.modules)
        self.patterns = tuple(patterns)
        self.any_host = any_host
        self.mine = tuple(self.dar_prefixes) + (host + "-",)
        self.parsed = {}  # parse_dar's answers, for plan(parsed=...)

    def __call__(self, name):
        if not name or name.startswith("."):
            return False
        if self.patterns and any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns):
            return True
        if not self.any_host and not name.startswith(self.mine):
            return False  # the quick answer for most of a shared remote's names
        parsed = self.parsed[name] = parse_dar(name)
        if parsed is not None:
            if self.any_host or parsed.prefix in self.dar_prefixes:
                return True
        elif name.startswith(self.host + "-") or self.any_host:
            key = _dump_key(name)
            if key is not None and (self.any_host or key[0] == self.host):
                return True
        if self.any_host:
            return any("-%s-" % m in name for m in self.modules)
        return name.startswith(self.starts)

    def filter(self, names):
        """The names that are this host's; their parse_dar answers stay in
        ``self.parsed`` for plan()."""
        self.parsed = {}
        return [n for n in names if self(n)]
