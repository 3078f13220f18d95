"""Retention by count (PURGE_KEEP_DAILY, PURGE_KEEP_WEEKLY, PURGE_KEEP_MONTHLY):
the rules over generated names (fast), and 120 simulated nights with real
dar chains, purged locally and on a remote (the local upload module): what
is left is what the rules say, and every kept day restores byte for byte."""
import contextlib
import datetime
import io
import os
import signal

import pytest

from pypackrat import retention
from pypackrat.retention import Counts, kept_days, plan
from tests.archives import snapshot
from tests.test_filesystem import dar_names, prefix, write

P = "testhost-srv"
TODAY = datetime.date(2026, 9, 30)          # a Wednesday
NOW = datetime.datetime(2026, 9, 30, 3, 0)


def d(text):
    return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))


def t(day):
    return day.strftime("%Y%m%d")


def span(first, last):
    """The days from ``first`` to ``last``, both included."""
    out, day = [], first
    while day <= last:
        out.append(day)
        day += datetime.timedelta(days=1)
    return out


def dar_listing(days, prefix_=P, slices=1):
    """A night's archive per day: a master on Sundays (and on the first
    day), an incremental otherwise."""
    out = []
    for i, day in enumerate(sorted(days)):
        master = i == 0 or day.isoweekday() == 7
        for n in range(1, slices + 1):
            out.append("%s-%s%s.%d.dar" % (prefix_, t(day), ".master" if master else "", n))
    return out


# -- what the rules say, written out plainly --------------------------------

def newest_per_period(days, n, period):
    """The newest day of each of the last ``n`` periods among ``days``."""
    best = {}
    for day in days:
        key = period(day)
        best[key] = max(best.get(key, day), day)
    return {best[k] for k in sorted(best)[-n:]} if n else set()


def expected_days(days, counts, today):
    days = [x for x in days if x <= today]
    return (newest_per_period(days, counts.daily, lambda x: x)
            | newest_per_period(days, counts.weekly, lambda x: x.isocalendar()[:2])
            | newest_per_period(days, counts.monthly, lambda x: (x.year, x.month)))


def expected_kept(state, counts, age, today):
    """The archives ((day, master)) of one target a purge keeps, from
    ``state`` (the archives there): the young (at most ``age`` days), the
    chains that restore each day the count rules keep, the newest chain (its
    master and every incremental on it), and each kept incremental's master."""
    def master_of(day):
        return max(x for x, m in state if m and x <= day)

    have = {x for x, _ in state}
    kept = {(x, m) for x, m in state if (today - x).days <= age}
    for day in expected_days(have, counts, today):
        kept.add((master_of(day), True))
        kept |= {(x, m) for x, m in state if x == day}
    newest = master_of(max(x for x in have if x <= today))
    kept |= {(x, m) for x, m in state if newest <= x <= today}
    kept |= {(master_of(x), True) for x, m in kept if not m}
    return kept


# -- fast: the rules over generated names --------------------------------------

@pytest.mark.fast
def test_kept_days_each_rule():
    days = span(d("20260501"), TODAY)
    assert sorted(kept_days(days, Counts(3, 0, 0), TODAY)) == [d("20260928"), d("20260929"), TODAY]
    # weekly: today's week's newest is today; then the Sundays before it
    assert sorted(kept_days(days, Counts(0, 3, 0), TODAY)) == [d("20260920"), d("20260927"), TODAY]
    # monthly: the last day of each month before, and today for this one
    assert sorted(kept_days(days, Counts(0, 0, 3), TODAY)) == [d("20260731"), d("20260831"), TODAY]
    assert kept_days(days, Counts(0, 0, 0), TODAY) == {}
    why = kept_days(days, Counts(2, 2, 2), TODAY)
    assert why[TODAY] == ["daily 1 of 2", "weekly 2026-W40 (1 of 2)", "monthly 2026-09 (1 of 2)"]
    assert why[d("20260929")] == ["daily 2 of 2"]
    assert why[d("20260927")] == ["weekly 2026-W39 (2 of 2)"]
    assert why[d("20260831")] == ["monthly 2026-08 (2 of 2)"]


@pytest.mark.fast
def test_kept_days_count_days_that_have_backups():
    """Days, weeks and months without a backup take no place; a day after
    today (a planted name, a clock gone wrong) takes none either."""
    days = [d("20260610"), d("20260705"), d("20260706"), d("20260901"), d("20260915"),
            d("20261003"), d("20270101")]
    assert sorted(kept_days(days, Counts(3, 0, 0), TODAY)) == [d("20260706"), d("20260901"),
                                                                d("20260915")]
    assert sorted(kept_days(days, Counts(0, 3, 0), TODAY)) == [d("20260706"), d("20260901"),
                                                                d("20260915")]
    assert sorted(kept_days(days, Counts(0, 0, 3), TODAY)) == [d("20260610"), d("20260706"),
                                                                d("20260915")]
    assert sorted(kept_days(days, Counts(0, 0, 30), TODAY)) == [d("20260610"), d("20260706"),
                                                                 d("20260915")]


@pytest.mark.fast
@pytest.mark.parametrize("counts", [Counts(7, 0, 0), Counts(0, 4, 0), Counts(0, 0, 6), Counts(7, 4, 6),
                                    Counts(1, 1, 1), Counts(30, 10, 12)])
@pytest.mark.parametrize("keep_chains", [True, False])
def test_plan_keeps_whole_chains_of_the_kept_days(counts, keep_chains):
    """120 days of a target's nights (two slices each) and 120 days of two
    databases' dumps with gaps: what a purge with a 3-day age keeps is the
    union of the rules, each kept day with its master."""
    days = span(TODAY - datetime.timedelta(days=119), TODAY)
    listing = dar_listing(days, slices=2)
    shop = [x for x in days if x.day % 3]             # gaps
    mail = [x for x in days if x.month != 8]          # a month without
    for db, which in (("shop", shop), ("mail", mail)):
        listing += ["host-mysql-%s-%s.sql.zst" % (db, t(x)) for x in which]
    deleted = set(plan(listing, 3, NOW, keep_chains, counts=counts))
    left = [n for n in listing if n not in deleted]

    state = {(x, i == 0 or x.isoweekday() == 7) for i, x in enumerate(days)}
    want = expected_kept(state, counts, 3, TODAY)
    got = {(d(n[len(P) + 1:len(P) + 9]), ".master." in n) for n in left if n.startswith(P)}
    assert got == want
    assert all(("%s-%s%s.2.dar" % (P, t(x), ".master" if m else "")) in left for x, m in want)
    for db, which in (("shop", shop), ("mail", mail)):
        want = {x for x in which if (TODAY - x).days <= 3} | expected_days(which, counts, TODAY)
        got = {d(n[-16:-8]) for n in left if "-%s-" % db in n}
        assert got == want, db


@pytest.mark.fast
def test_every_kept_day_restores_from_what_is_left():
    """Whatever the rules, each kept day finds its whole chain in what is left."""
    from pypackrat.core import chains
    days = span(TODAY - datetime.timedelta(days=200), TODAY)
    listing = dar_listing(days)
    why = {}
    left = sorted(set(listing) - set(plan(listing, 0, NOW, counts=Counts(5, 5, 5), why=why)))
    kept = {n[len(P) + 1:len(P) + 9] for n in left if not n.endswith(".master.1.dar")
            or why[n][0] != retention.MASTER_OF_KEPT_DAY}
    # daily: the 26th to the 30th; weekly: the 30th and the Sundays 27th, 20th,
    # 13th, 6th; monthly: the 30th and the last days of August to May
    assert len(kept) == 5 + 3 + 4
    for day in kept:
        chain = chains.restore_chain(left, P, d(day))
        assert chain[-1].startswith("%s-%s" % (P, day))
        assert chain[0].endswith(".master")
        assert chain == chains.restore_chain(listing, P, d(day))


@pytest.mark.fast
def test_counts_off_is_the_age_rule_alone():
    """0 everywhere: exactly what the age rule, the newest and the chains
    delete (the old behaviour)."""
    days = span(TODAY - datetime.timedelta(days=60), TODAY)
    listing = dar_listing(days) + ["host-postgresql-x-%s.sql.bz2" % t(x) for x in days] + \
        ["host-example-srv-%s.tar.gz" % t(x) for x in days] + ["notes.txt"]
    for keep_chains in (True, False):
        for age in (0, 3, 10, 100):
            why = {}
            assert plan(listing, age, NOW, keep_chains, counts=Counts(0, 0, 0), why=why) == \
                plan(listing, age, NOW, keep_chains)
            assert not any(retention.is_count_reason(r) for rs in why.values() for r in rs)
    assert Counts.of({}) == retention.NO_COUNTS and not Counts.of({"PURGE_KEEP_DAILY": 0})
    assert Counts.of({"PURGE_KEEP_WEEKLY": 4}) == Counts(0, 4, 0)


@pytest.mark.fast
def test_counts_only_keep_more():
    """The union: a name the age rule keeps is never deleted for a count."""
    days = span(TODAY - datetime.timedelta(days=90), TODAY)
    listing = dar_listing(days) + ["host-mysql-db-%s.sql.bz2" % t(x) for x in days[::2]]
    for age in (0, 5, 40):
        base = set(plan(listing, age, NOW))
        for counts in (Counts(3, 0, 0), Counts(0, 2, 2), Counts(10, 8, 3)):
            fewer = set(plan(listing, age, NOW, counts=counts))
            assert fewer <= base
            assert fewer < base or counts.daily < 10 or age == 40


@pytest.mark.fast
def test_why_names_each_rule():
    days = span(d("20260801"), TODAY)
    listing = dar_listing(days) + ["host-mysql-db-%s.sql.bz2" % t(x) for x in days]
    why = {}
    deleted = plan(listing, 1, NOW, counts=Counts(3, 2, 2), why=why)
    assert why["%s-20260928.1.dar" % P] == ["newest chain", "daily 3 of 3"]
    assert why["%s-20260927.master.1.dar" % P] == ["master of a kept incremental", "newest chain",
                                                   "weekly 2026-W39 (2 of 2)", "master of a kept day"]
    assert why["%s-20260831.1.dar" % P] == ["monthly 2026-08 (2 of 2)"]
    assert why["%s-20260830.master.1.dar" % P] == [retention.MASTER_OF_KEPT_DAY]
    assert why["%s-20260930.1.dar" % P] == [
        "within 1 day", "newest chain", "daily 1 of 3", "weekly 2026-W40 (1 of 2)",
        "monthly 2026-09 (1 of 2)"]
    assert why["host-mysql-db-20260831.sql.bz2"] == ["monthly 2026-08 (2 of 2)"]
    assert why["host-mysql-db-20260930.sql.bz2"][:2] == ["within 1 day", "newest dump"]
    assert why["%s-20260915.1.dar" % P] == [] and "%s-20260915.1.dar" % P in deleted
    assert sorted(n for n, r in why.items() if not r) == deleted


# -- 120 nights with real dar ------------------------------------------------------

FIRST = datetime.date(2026, 6, 7)   # a Sunday
NIGHTS = span(FIRST, FIRST + datetime.timedelta(days=119))
COUNTS = Counts(5, 4, 3)
LOCAL_AGE, REMOTE_AGE = 2, 10


def night(src, i):
    """What changes in the tree on night ``i``: a file rewritten, one added,
    one deleted (so that a restore from the wrong chain shows)."""
    write(os.path.join(src, "day%d.txt" % (i % 7)), "night %d\n" % i, i)
    write(os.path.join(src, "sub", "n%d.txt" % i), "added on night %d\n" % i, i)
    old = os.path.join(src, "sub", "n%d.txt" % (i - 4))
    if i % 3 and os.path.exists(old):
        os.unlink(old)


def archives_of(directory, p):
    return {(d(n[len(p) + 1:len(p) + 9]), ".master." in n) for n in dar_names(directory)}


def in_process(penv, monkeypatch, date, *args):
    """``packrat -c CONFIG ARGS`` on ``date`` through cli.main, in this
    process (a third of a packrat command's time, most of it Python's start
    and imports): its status and output."""
    from pypackrat import cli
    penv.write()
    monkeypatch.setenv("PACKRAT_DATE", date)
    out = io.StringIO()
    sigterm, umask = signal.getsignal(signal.SIGTERM), os.umask(0o022)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = cli.main(["-c", str(penv.config_path)] + list(args))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        os.umask(umask)
    assert status == 0, (date, args, out.getvalue())
    return out.getvalue()


def test_gfs_120_nights_real_dar(penv, monkeypatch):
    src = penv.tmp / "src"
    src.mkdir()
    remote = penv.tmp / "remote"
    remote.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)], FS_COMPRESSION="none",
                         UPLOAD_MODULES=["local"], LOCAL_DIR=str(remote),
                         PURGE_LOCAL_ARCHIVES=LOCAL_AGE, PURGE_REMOTE_ARCHIVES=REMOTE_AGE,
                         PURGE_KEEP_DAILY=COUNTS.daily, PURGE_KEEP_WEEKLY=COUNTS.weekly,
                         PURGE_KEEP_MONTHLY=COUNTS.monthly, ADMIN_EMAIL="")
    bk, p = str(penv.backup_dir), prefix(src)
    states = {"local": set(), "remote": set()}
    snaps = {}
    for i, day in enumerate(NIGHTS):
        night(str(src), i)
        in_process(penv, monkeypatch, t(day))
        snaps[day] = snapshot(str(src))
        # the purge runs before the night's backup: it sees yesterday's state
        for where, age in (("local", LOCAL_AGE), ("remote", REMOTE_AGE)):
            before = states[where]
            kept = expected_kept(before, COUNTS, age, day) if before else set()
            states[where] = kept | {(day, i == 0 or day.isoweekday() == 7)}
        assert archives_of(bk, p) == states["local"], t(day)
        assert archives_of(str(remote), p) == states["remote"], t(day)
    # the count rules keep days a month back; the age rule alone would keep a week
    assert min(x for x, _ in states["local"]) < NIGHTS[-1] - datetime.timedelta(days=30)
    for where in states.values():  # August's last day, monthly, with its master
        assert {(datetime.date(2026, 8, 31), False), (datetime.date(2026, 8, 30), True)} <= where

    # every kept day restores, byte for byte: locally, and from the remote
    # the days it alone keeps
    last = NIGHTS[-1]
    local_days = sorted({x for x, m in states["local"] if not m or (x, False) not in states["local"]})
    remote_days = sorted({x for x, _ in states["remote"]} - set(local_days))
    assert remote_days
    for day, source in [(x, None) for x in local_days] + [(x, "local") for x in remote_days]:
        dest = penv.tmp / ("r-%s" % t(day))
        args = ["restore", "-d", t(day), str(src), str(dest)] + (["--from", source] if source else [])
        in_process(penv, monkeypatch, t(last), *args)
        assert snapshot(str(dest)) == snaps[day], t(day)
    # nothing fetched for the remote restores is left beside the local archives
    assert archives_of(bk, p) == states["local"]

    # -n says which rule keeps what; packrat list too (the real command line)
    monkeypatch.delenv("PACKRAT_DATE")
    proc = penv.run("-n", "-P", date=t(last + datetime.timedelta(days=1)), check=0)
    out = proc.stdout + proc.stderr
    fifth = t(last - datetime.timedelta(days=4))
    assert "[dry run] purge keeps %s-%s.1.dar in %s: daily 5 of 5" % (p, fifth, bk) in out
    assert "monthly 2026-08 (3 of 3)" in out and "master of a kept day" in out, out
    proc = penv.run("list", date=t(last), check=0)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip().startswith("20")}
    assert rows["20260831"].endswith("monthly 2026-08 (3 of 3)"), proc.stdout
    assert rows["20260830"].endswith("master of a kept day")
    # after the night's backup, the 28th is left to the remote's age rule
    assert rows["20260928"].endswith("BACKUP_DIR: a purge deletes it; local: within %d days" % REMOTE_AGE)


@pytest.mark.fast
@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_a_bad_count_is_one_line_naming_the_setting(tmp_path, value):
    import subprocess
    from tests.conftest import PACKRAT
    config = tmp_path / "packrat.conf"
    config.write_text("ADMIN_EMAIL=\nBACKUP_DIR=%s\nBACKUP_MODULES=()\nPURGE_LOCAL_ARCHIVES=3\n"
                      "PURGE_REMOTE_ARCHIVES=3\nHOSTNAME=h\nLOCK_FILE=%s\nPURGE_KEEP_MONTHLY=%s\n"
                      % (tmp_path, tmp_path / "lock", value))
    proc = subprocess.run([PACKRAT, "-c", str(config), "-n"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "%s: PURGE_KEEP_MONTHLY='%s': must be a whole number >= 0 (digits 0-9)\n" \
        % (config, value), proc.stderr


@pytest.mark.fast
def test_full_archives_stand_alone():
    """FS_INCREMENTAL=no: every archive is a full one (no master), a kept day
    keeps its archive alone."""
    days = span(TODAY - datetime.timedelta(days=60), TODAY)
    listing = ["%s-%s.1.dar" % (P, t(x)) for x in days]
    for keep_chains in (True, False):
        left = set(listing) - set(plan(listing, 0, NOW, keep_chains, whole_chain=False,
                                       counts=Counts(3, 2, 2)))
        assert {d(n[len(P) + 1:len(P) + 9]) for n in left} == \
            expected_days(days, Counts(3, 2, 2), TODAY) == {
                TODAY, d("20260929"), d("20260928"), d("20260927"), d("20260831")}
