"""Retention planning: the near-linear planner gives the same answer as the
rules written out naively (master_of over every master, restore_chain for
the newest chain), and a hostile listing of 100,000 names is planned in
seconds, growing linearly, where the previous planner was quadratic."""
import datetime
import random
import time

import pytest

from pypackrat import retention
from pypackrat.core import chains
from pypackrat.core.names import parse_dar, parse_dump_name

NOW = datetime.datetime(2026, 11, 26, 3, 0)
HOST = "h"


def reference(names, days, now, keep_chains=True, keep_newest=True, whole_chain=True):
    """The rules, naively: quadratic, for small inputs."""
    today = now.date()
    old = set()
    for n in names:
        p = parse_dar(n)
        day = p.day if p else retention.date_in_name(n)
        if day is not None and retention.age_in_days(day, now) > days:
            old.add(n)
    keep = set()
    parsed = [p for p in map(parse_dar, names) if p]
    if keep_chains:
        masters = [p for p in parsed if p.master]
        for p in parsed:
            if not p.master and p.name not in old:
                m = chains.master_of(p, masters)
                if m is not None:
                    keep.update(q.name for q in masters if q.prefix == m.prefix and q.day == m.day)
    if keep_newest:
        for prefix in {p.prefix for p in parsed}:
            group = [p.name for p in parsed if p.prefix == prefix]
            chain = chains.restore_chain(group, prefix, today)
            keep.update(p.name for p in parsed if p.prefix == prefix and p.archive in chain)
            master = parse_dar(chain[0] + ".1.dar") if chain else None
            if whole_chain and master is not None and master.master:
                keep.update(p.name for p in parsed if p.prefix == prefix and not p.master
                            and master.day <= p.day <= today)
        series = {}
        for n in names:
            if parse_dar(n):
                continue
            day = retention.date_in_name(n)
            if day is None or day > today:
                continue
            d = parse_dump_name(n)
            if d:
                key = ("dump",) + tuple(d[:3])
            else:
                text = day.strftime("%Y%m%d")
                i = n.rindex(text)
                key = ("name", n[:i], n[i + 8:])
            series.setdefault(key, []).append((day, n))
        for items in series.values():
            best = max(d for d, _ in items)
            keep.update(n for d, n in items if d == best)
    return sorted(old - keep)


def random_names(rnd):
    names = set()
    for _ in range(rnd.randrange(1, 40)):
        day = (NOW.date() + datetime.timedelta(days=rnd.randrange(-40, 3))).strftime("%Y%m%d")
        kind = rnd.random()
        if kind < 0.6:
            master = ".master" if rnd.random() < 0.25 else ""
            names.add("%s-%s-%s%s.%d.dar" % (HOST, rnd.choice("ab"), day, master, rnd.choice([1, 1, 2])))
        elif kind < 0.85:
            names.add("%s-%s-%s-%s.sql.%s" % (HOST, rnd.choice(["mysql", "postgresql"]), rnd.choice("xy"),
                                              day, rnd.choice(["bz2", "zst"])))
        elif kind < 0.95:
            names.add("%s-example-srv-%s.tar.gz" % (HOST, day))
        else:
            names.add("%s-notes.txt" % HOST)
    return sorted(names)


@pytest.mark.fast
@pytest.mark.parametrize("keep_chains", [True, False])
@pytest.mark.parametrize("keep_newest", [True, False])
@pytest.mark.parametrize("whole_chain", [True, False])
def test_the_planner_follows_the_rules(keep_chains, keep_newest, whole_chain):
    rnd = random.Random(11)
    for trial in range(300):
        names = random_names(rnd)
        rnd.shuffle(names)
        days = rnd.choice([0, 2, 5, 10])
        got = retention.plan(names, days, NOW, keep_chains, keep_newest, whole_chain=whole_chain)
        assert got == reference(names, days, NOW, keep_chains, keep_newest, whole_chain), (trial, names, days)


@pytest.mark.fast
def test_the_newest_chain_and_dumps_survive_any_age():
    names = ["h-a-20200105.master.1.dar", "h-a-20200105.master.2.dar", "h-a-20200106.1.dar",
             "h-a-20200107.1.dar", "h-a-20200108.master.2.dar",  # a master without slice 1: incomplete
             "h-mysql-x-20200101.sql.bz2", "h-mysql-x-20200107.sql.bz2", "h-mysql-y-20190101.sql.zst",
             "h-a-20991231.master.1.dar"]  # a date after the run's: not the newest
    deleted = retention.plan(names, 10, NOW)
    # the whole newest chain stays: the master and every incremental on it
    assert deleted == ["h-a-20200108.master.2.dar", "h-mysql-x-20200101.sql.bz2"]
    # full archives (FS_INCREMENTAL=no) are no chain: the master and the newest on it
    deleted = retention.plan(names, 10, NOW, whole_chain=False)
    assert deleted == ["h-a-20200106.1.dar", "h-a-20200108.master.2.dar", "h-mysql-x-20200101.sql.bz2"]


def hostile(n):
    """The previous planner's worst case: every name this host's, half old
    masters, half young incrementals (each matched against every master)."""
    out = []
    for i in range(n):
        target = "-t%d" % ((i // 2) % 4)
        if i % 2:
            day = NOW.date() - datetime.timedelta(days=i % 5)
            out.append("h%s-%s.%d.dar" % (target, day.strftime("%Y%m%d"), i))
        else:
            day = NOW.date() - datetime.timedelta(days=20 + i % 3000)
            out.append("h%s-%s.master.%d.dar" % (target, day.strftime("%Y%m%d"), i))
    return out


def test_a_hostile_listing_is_planned_in_seconds_and_linearly():
    owner = retention.Owner(HOST, ["h-t0", "h-t1", "h-t2", "h-t3"])
    times = {}
    for n in (10_000, 100_000):
        names = hostile(n)
        t = time.process_time()
        deleted = retention.plan(owner.filter(names), 10, NOW)
        times[n] = time.process_time() - t
        # every old master goes but the newest of each target (young incrementals need it)
        masters = [parse_dar(x) for x in names if ".master." in x]
        newest = {}
        for m in masters:
            newest[m.prefix] = max(newest.get(m.prefix, m.day), m.day)
        assert deleted == sorted(m.name for m in masters if m.day != newest[m.prefix])
    assert times[100_000] < 15, times  # the previous planner: about an hour
    assert times[100_000] / max(times[10_000], 0.05) < 40, times  # linear: about 10; quadratic: 100
