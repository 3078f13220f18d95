"""Dates in archive names, the age test, and dar chains.

A name's date is the last ``20YYMMDD`` in it that is a real date. A file is
old when ``floor((now - that date at 00:00) / 86400) > days``, the
original's test. A name without a date is never old: it is never purged.

Filesystem archives form chains: ``PREFIX-DATE.master.N.dar`` is a master;
``PREFIX-DATE.N.dar`` is an incremental taken against the newest master of
the same PREFIX dated on or before it (or a full archive that stands alone
when there is no such master). With chains kept, a master is not purged
while an incremental that is kept depends on it.
"""
import datetime
import re

_DATE = re.compile(r"(?<!\d)(20\d{6})(?!\d)")
_DAR = re.compile(r"^(?P<prefix>.+)-(?P<date>20\d{6})\.(?P<master>master\.)?(?P<slice>\d+)\.dar$")


def date_in_name(name):
    """The date a name carries (the last valid one), or None."""
    for text in reversed(_DATE.findall(name)):
        try:
            return datetime.datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            continue
    return None


def age_in_days(day, now):
    """Whole days from ``day`` at 00:00 (local) to ``now``."""
    midnight = datetime.datetime.combine(day, datetime.time())
    return int((now - midnight).total_seconds() // 86400)


def is_old(name, days, now):
    day = date_in_name(name)
    return day is not None and age_in_days(day, now) > days


class DarName:
    """A parsed dar slice name."""

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
    try:
        day = datetime.datetime.strptime(m.group("date"), "%Y%m%d").date()
    except ValueError:
        return None
    return DarName(name, m.group("prefix"), day, bool(m.group("master")), int(m.group("slice")))


def master_of(incremental, masters):
    """The master (DarName of any of its slices) an incremental depends on:
    the newest master of the same prefix dated on or before it."""
    best = None
    for m in masters:
        if m.prefix == incremental.prefix and m.day <= incremental.day:
            if best is None or m.day > best.day:
                best = m
    return best


def plan(names, days, now, keep_chains=True):
    """The names to delete, of ``names`` (base names in one place)."""
    old = {n for n in names if is_old(n, days, now)}
    if not keep_chains or not old:
        return sorted(old)
    parsed = [p for p in (parse_dar(n) for n in names) if p]
    masters = [p for p in parsed if p.master]
    keep_masters = set()
    for p in parsed:
        if not p.master and p.name not in old:
            m = master_of(p, masters)
            if m is not None:
                keep_masters.add((m.prefix, m.day))

    def needed(name):
        p = parse_dar(name)
        return p is not None and p.master and (p.prefix, p.day) in keep_masters

    return sorted(n for n in old if not needed(n))
