"""Dates in archive names, the age test, dar chains, and which names of a
place are this host's to purge.

A name's date is the last ``20YYMMDD`` in it that is a real date. A file is
old when ``floor((now - that date at 00:00) / 86400) > days``, the
original's test. A name without a date is never old: it is never purged.

Filesystem archives form chains (core.names, core.chains): an incremental
is taken against the newest master of its prefix dated on or before it (or
is a full archive that stands alone when there is no such master). With
chains kept, a master is not purged while an incremental that is kept
depends on it.

Whatever their age, a purge keeps the newest backup of each kind: for each
archive prefix (a target) its newest chain (its newest complete master,
slice 1 present, with every incremental taken against it; with
``whole_chain`` off, FS_INCREMENTAL=no, where later archives are full ones,
the master and the newest archive after it; or the newest full archive
where there is no master), the newest dump of each database, and the
newest file of every other series (a name with its date taken out). Dates
after the run's day do not count as newest. So backups that fail for longer
than the purge age, or a run date far ahead, never leave a place empty.

Retention by count (PURGE_KEEP_DAILY, PURGE_KEEP_WEEKLY,
PURGE_KEEP_MONTHLY; 0 turns a rule off) keeps more, never less: a name is
deleted only when no rule keeps it (the age rule, the newest, the chains,
the counts). Per series (a target's prefix, a database's dumps, any other
name with its date taken out), over the days that have a backup and are
not after the run's day: daily N keeps the newest backup of each of the
last N such days, weekly N the newest of each of the last N ISO weeks,
monthly N the newest of each of the last N months. A target's day is kept
whole: the archives that restore it (core.chains.pick: its master and the
day's incremental), whatever PURGE_KEEP_CHAINS says. ``plan(why=...)``
says which rule keeps each name.

Planning is near-linear in the number of names: names are grouped by prefix
once, and each incremental finds its master by bisection (core.chains.Masters).
"""
import collections
import datetime
import fnmatch
import re

from pypackrat.core import chains, names

_DATE = re.compile(r"(?<!\d)(20\d{6})(?!\d)")


def _last_date(name):
    """(date, start, end) of the last valid date in ``name``, or None."""
    found = None
    for m in _DATE.finditer(name):
        day = names.day(m.group(1))
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


def _dump_key(name):
    """(host, engine, database part) of a dump's name, or None."""
    parsed = names.parse_dump_name(name)
    return None if parsed is None else parsed[:3]


def _newest_chain(group, today, whole_chain=True):
    """The archives ((day, master) of each) that restore one prefix's newest
    state as of ``today``, from its parsed slices ``group``: what restores
    ``today`` (core.chains.pick over the first slices). With
    ``whole_chain``, every incremental of that master up to ``today`` as
    well: an older incremental is what is left when the newest one turns out
    damaged. Dates after ``today`` do not count."""
    picked = chains.pick([p for p in group if p.slice == 1], group[0].prefix, today)
    chain = {(p.day, p.master) for p in picked}
    master = picked[0] if picked and picked[0].master else None
    if whole_chain and master is not None:
        chain.update((p.day, False) for p in group
                     if not p.master and master.day <= p.day <= today)
    return chain


class Counts(collections.namedtuple("Counts", "daily weekly monthly")):
    """How many days, ISO weeks and months keep their newest backup
    (PURGE_KEEP_DAILY, PURGE_KEEP_WEEKLY, PURGE_KEEP_MONTHLY); 0 turns a
    rule off. False when every rule is off."""
    __slots__ = ()

    def __bool__(self):
        return any(n > 0 for n in self)

    @classmethod
    def of(cls, settings):
        return cls(*(int(settings.get("PURGE_KEEP_" + rule.upper()) or 0) for rule in cls._fields))


NO_COUNTS = Counts(0, 0, 0)
MASTER_OF_KEPT_DAY = "master of a kept day"
_PERIOD = {
    "daily": lambda d: d,
    "weekly": lambda d: tuple(d.isocalendar())[:2],
    "monthly": lambda d: (d.year, d.month),
}
_LABEL = {
    "daily": lambda d, i, n: "daily %d of %d" % (i, n),
    "weekly": lambda d, i, n: "weekly %d-W%02d (%d of %d)" % (tuple(d.isocalendar())[:2] + (i, n)),
    "monthly": lambda d, i, n: "monthly %d-%02d (%d of %d)" % (d.year, d.month, i, n),
}


def kept_days(days, counts, today):
    """{day: [reasons]}: the days of ``days`` (the days one series has a
    backup) that the count rules keep, each the newest day of its period
    (a day, an ISO week, a month) among the last N periods that have a
    backup. Days after ``today`` do not count."""
    out = {}
    past = sorted({d for d in days if d <= today}, reverse=True)
    for rule, n in zip(Counts._fields, counts):
        period, label, seen = _PERIOD[rule], _LABEL[rule], None
        found = 0
        for d in past:  # newest first: a period's days are together, its newest first
            key = period(d)
            if key == seen:
                continue
            if found == n:
                break
            found += 1
            seen = key
            out.setdefault(d, []).append(label(d, found, n))
    return out


def is_count_reason(reason):
    """A reason of ``plan(why=...)`` that a count rule gave."""
    return reason == MASTER_OF_KEPT_DAY or reason.startswith(tuple(r + " " for r in Counts._fields))


def plan(listing, days, now, keep_chains=True, keep_newest=True, whole_chain=True, counts=NO_COUNTS,
         why=None):
    """The names to delete, of ``listing`` (base names in one place).
    ``whole_chain``: the newest chain kept is its master with every
    incremental (FS_INCREMENTAL=yes); without it, the master and the newest
    archive on it (full archives, FS_INCREMENTAL=no, are not incrementals).
    ``counts``: the count rules (Counts). ``why``: a dict to fill with the
    reasons each dated name of ``listing`` is kept ([] for one deleted)."""
    today = now.date()
    ages = {}

    def old_day(day):
        if day not in ages:
            ages[day] = age_in_days(day, now) > days
        return ages[day]

    old = set()
    dars = {}       # prefix -> [DarName]
    newest = {}     # series key -> (day, [names])
    series = {}     # series key -> {day: [names]}, for the count rules
    for name in listing:
        dar = names.parse_dar(name)
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
        if (not keep_newest and not counts) or day > today:
            continue
        key = _dump_key(name)
        key = ("dump",) + key if key else ("name", name[:start], name[end:])
        if counts:
            series.setdefault(key, {}).setdefault(day, []).append(name)
        if not keep_newest:
            continue
        have = newest.get(key)
        if have is None or day > have[0]:
            newest[key] = (day, [name])
        elif day == have[0]:
            have[1].append(name)
    if not old and why is None:
        return []

    keep = set()
    reasons = {}

    def tag(kept, reason):
        keep.update(kept)
        if why is not None:
            for name in kept:
                reasons.setdefault(name, []).append(reason)

    for prefix, group in dars.items():
        if keep_chains:
            masters = chains.Masters(group)
            needed = {masters.of(prefix, p.day) for p in group if not p.master and p.name not in old}
            needed_days = {m.day for m in needed if m is not None}
            tag([p.name for p in group if p.master and p.day in needed_days],
                "master of a kept incremental")
        if keep_newest:
            chain = _newest_chain(group, today, whole_chain)
            tag([p.name for p in group if (p.day, p.master) in chain], "newest chain")
        if counts:
            firsts = [p for p in group if p.slice == 1]
            archives = {}  # (day, master) -> its slices' names
            for p in group:
                archives.setdefault((p.day, p.master), []).append(p.name)
            for day, given in sorted(kept_days({p.day for p in firsts}, counts, today).items()):
                for archive in chains.pick(firsts, prefix, day):
                    slices = archives[(archive.day, archive.master)]
                    if archive.day == day:
                        for reason in given:
                            tag(slices, reason)
                    elif MASTER_OF_KEPT_DAY not in reasons.get(slices[0], ()):
                        tag(slices, MASTER_OF_KEPT_DAY)
    for key, (_, kept) in newest.items():
        tag(kept, "newest dump" if key[0] == "dump" else "newest")
    for by_day in series.values():
        for day, given in kept_days(by_day, counts, today).items():
            for reason in given:
                tag(by_day[day], reason)
    if why is not None:
        for name in listing:
            dar = names.parse_dar(name)
            day = dar.day if dar is not None else date_in_name(name)
            if day is None:
                continue
            given = reasons.get(name, [])
            if name not in old:
                given = ["within %d day%s" % (days, "" if days == 1 else "s")] + given
            why[name] = given
    return sorted(old - keep)


class Owner:
    """Which names of a place are this host's archives, the only ones a
    purge considers: names that start with a dot never; then

    - a dar slice whose prefix is ``HOST<TARGET>`` of a configured target;
    - a database dump ``HOST-ENGINE-DB-DATE.sql.*`` whose host part is this
      host exactly (``core.names.parse_dump_name``);
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

    def __call__(self, name):
        if not name or name.startswith("."):
            return False
        if self.patterns and any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns):
            return True
        if not self.any_host and not name.startswith(self.mine):
            return False  # the quick answer for most of a shared remote's names
        parsed = names.parse_dar(name)
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

    def filter(self, listing):
        """The names of ``listing`` that are this host's."""
        return [n for n in listing if self(n)]
