"""Backup module ``filesystem``: dar archives of the FS_TARGETS directories.

Names (the original's, kept: restores and retention depend on them)::

    HOST<TARGET>-TODAY.master.N.dar    a master (full archive)
    HOST<TARGET>-TODAY.N.dar           an incremental, or a full archive
                                       when FS_INCREMENTAL=no

where ``<TARGET>`` is the target path with every ``/`` turned into ``-``
(``/home/sites`` -> ``-home-sites``) and N is dar's slice number.

Each target decides on its own: a master on the master day (weekly: the
weekday name equals FS_MASTER_DAY, in the locale's or the C locale's
spelling; monthly: the day of the month does), or when the target has no
master yet; otherwise an incremental against the target's newest master by
the date in its name (a differential: all changes since that master).

dar writes the slices under a temporary name in BACKUP_DIR
(``.packrat-tmp-PID-NAME.N.dar``); they get their final names only once dar
has succeeded (exit 0, or 11: a file changed while it was read), and are
removed when it fails. ENCRYPTION_KEY never reaches dar's argv: dar reads
``-K`` (and ``-J`` for the reference) from a command file (``-B``) that is
a memory file passed as ``/dev/fd/N``, nothing on disk.
"""
import contextlib
import functools
import os
import re
import subprocess

from pypackrat import catalog, execute, log
from pypackrat.core import chains, darkey, names
from pypackrat.core.growing import Growing
from pypackrat.core import temp as tempnames
from pypackrat.errors import PackratError, PartialFailure
from pypackrat.settings import Group, Setting

SETTINGS = Group(
    "Filesystem module (dar)",
    Setting("FS_TARGETS", "string_list", required=True, sample=("/etc",),
            meaning="Directories to back up (absolute paths), one archive chain each. A target that "
                    "does not exist is skipped with a note under -v; two targets that would share names "
                    "(/a/b and /a-b) are refused."),
    Setting("FS_METHOD", "option", "dar", choices=("dar", "tar"),
            meaning="Only dar: tar is refused by packrat check and every run (the original never "
                    "finished it)."),
    Setting("FS_SLICE_SIZE", default="1000M",
            meaning="Largest size of one archive slice, dar's -s: a number with k, M, G or T; empty: one "
                    "slice whatever the size."),
    Setting("FS_INCREMENTAL", "boolean", True,
            meaning="yes: a full master archive on the master day, incrementals (the changes since that "
                    "master) on other days; no: a full archive every run, named without .master."),
    Setting("FS_MASTER_FREQ", "option", "weekly", choices=("weekly", "monthly"),
            meaning="weekly: FS_MASTER_DAY is a weekday; monthly: a day of the month."),
    Setting("FS_MASTER_DAY", default="Sun",
            meaning="The master day: weekly, a weekday as `date +%a` prints it (Sun..Sat, or the "
                    "locale's spelling); monthly, a day of the month (01..31, 1 reads as 01; a day "
                    "29-31 is missed in shorter months: prefer 01..28)."),
    Setting("FS_EXCLUDE_FILES", "string_list", meaning="File name masks left out, dar's -X ('*.tmp')."),
    Setting("FS_EXCLUDE_PATHS", "string_list",
            meaning="Paths left out, dar's -P, relative to each target ('cache', 'var/log'); an "
                    "excluded directory is kept, empty (-D)."),
    Setting("FS_CIPHER", "option", "aes256", choices=("aes256", "blowfish"),
            meaning="Cipher of new archives when ENCRYPTION_KEY is set: aes256 (recommended) or "
                    "blowfish (what the Bash version wrote). Old archives of either kind stay readable: "
                    "dar detects the cipher."),
    Setting("FS_COMPRESSION", default="gzip:9", sample="zstd",  # DEFAULT_COMPRESSION
            meaning="Compression of new archives: gzip, bzip2 or xz (a level 1-9 may follow: xz:6), zstd "
                    "(level 1-22: zstd:10), lz4, lzo or none; without a level, the algorithm's usual one "
                    "(gzip 6, bzip2 9, xz 6, zstd 3). The default gzip:9 is the original's -z9; zstd is "
                    "3 to 20 times faster for about the same size (README.md). packrat check refuses an "
                    "algorithm the installed dar lacks. Archives of any compression restore together: "
                    "dar reads it from each archive."))

TAG = "[FS]"
OK_CODES = (0, 11)  # 11: some file changed while dar read it (saved as it was), a success
SLICE_SIZE = re.compile(r"^[1-9][0-9]*[kKMGTPEZY]?$")
DAR_EXIT = {
    1: "syntax error in the options",
    2: "out of memory, or a wrong key or corrupted archive",
    4: "aborted (dar needed an answer)",
    5: "some files could not be saved",
    7: "libdar error: missing key, unreadable or corrupted archive",
    8: "integer overflow",
}


# -- names (pypackrat.core.names) -----------------------------------------------

def slices(directory, base):
    """The slice file names of archive ``base`` in ``directory``, by number."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = ((names.slice_of(name, base), name) for name in entries)
    return [name for number, name in sorted(f for f in found if f[0] is not None)]


def reference_master(listing, prefix, day):
    """The master (base name) an incremental of ``prefix`` made on ``day``
    refers to (core.chains), of the file names ``listing``; None if none."""
    master = chains.Masters(names.first_slices(listing)).of(prefix, day)
    return master.archive if master else None


def is_master_day(ctx):
    settings = ctx.settings
    day = settings["FS_MASTER_DAY"]
    if settings["FS_MASTER_FREQ"] == "monthly":
        return day == ctx.dom
    return day in (ctx.dow, ctx.dow_c)


# -- compression ---------------------------------------------------------------

DEFAULT_COMPRESSION = "gzip:9"  # the original's -z9
# FS_COMPRESSION's algorithms: their levels (None: no level is taken), the
# level used when none is given (each program's usual one), and dar's name
COMPRESSION_LEVELS = {"gzip": (1, 9), "bzip2": (1, 9), "xz": (1, 9), "zstd": (1, 22),
                      "lz4": None, "lzo": None, "none": None}
USUAL_LEVEL = {"gzip": 6, "bzip2": 9, "xz": 6, "zstd": 3}
# dar's lzo at its default level 9 is lzop -9 (slow); lzop-3 is lzop's usual speed
DAR_ALGORITHM = {"lzo": "lzop-3"}
# the library dar -V names for each algorithm ("zstd compression (libzstd) : YES")
_DAR_FEATURE = re.compile(r"^\s*(\w+) compression \([^)]*\)\s*:\s*(YES|NO)\b", re.M)
_COMPRESSION = re.compile(r"([a-z0-9]+)(?::([0-9]{1,2}))?")


def parse_compression(value):
    """(algorithm, level or None) of an FS_COMPRESSION value; ValueError with
    the reason when it is none."""
    m = _COMPRESSION.fullmatch(value)
    if not m or m.group(1) not in COMPRESSION_LEVELS:
        raise ValueError("not a compression: one of gzip, bzip2, xz, zstd, lz4, lzo, none, a level "
                         "after gzip, bzip2, xz (1-9) or zstd (1-22), as zstd:10")
    algorithm, level = m.group(1), m.group(2)
    bounds = COMPRESSION_LEVELS[algorithm]
    if level is None:
        return algorithm, None
    if bounds is None:
        raise ValueError("%s takes no level" % algorithm)
    if not bounds[0] <= int(level) <= bounds[1]:
        raise ValueError("%s's level is %d to %d" % (algorithm, bounds[0], bounds[1]))
    return algorithm, int(level)


def compression_args(value):
    """dar's -z option for FS_COMPRESSION ``value`` (a list: empty for none).
    gzip:9, the default, is the original's own ``-z9``, byte for byte."""
    algorithm, level = parse_compression(value)
    if algorithm == "none":
        return []
    if level is None:
        level = USUAL_LEVEL.get(algorithm)
    if algorithm == "gzip" and level == 9:
        return ["-z9"]
    name = DAR_ALGORITHM.get(algorithm, algorithm)
    return ["-z%s" % name if level is None else "-z%s:%d" % (name, level)]


@functools.lru_cache(maxsize=None)
def dar_compressions(dar):
    """{algorithm: True/False} as ``dar -V`` (the program at path ``dar``)
    lists them; asked once per run. Empty when dar cannot tell."""
    try:
        proc = subprocess.run([dar, "-V", "-Q"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    text = proc.stdout.decode("utf-8", "replace")
    return {name: answer == "YES" for name, answer in _DAR_FEATURE.findall(text)}


def compression_problem(settings):
    """The configuration error of FS_COMPRESSION, or None: its syntax, then
    whether the installed dar has the algorithm."""
    value = settings["FS_COMPRESSION"]
    where = settings.where("FS_COMPRESSION")
    try:
        algorithm, _ = parse_compression(value)
    except ValueError as exc:
        return "%s: FS_COMPRESSION=%r: %s" % (where, value, exc)
    dar = execute.which("dar")
    if algorithm == "none" or not dar:
        return None  # without dar, requirements() says so
    known = dar_compressions(dar)
    if known and not known.get(algorithm, False):
        have = ", ".join(name for name, yes in known.items() if yes) or "none"
        return ("%s: FS_COMPRESSION=%r: the installed dar (%s) was built without %s compression "
                "(dar -V); it has: %s" % (where, value, dar, algorithm, have))
    return None


# -- the command ------------------------------------------------------------

def dar_argv(settings, archive, target, reference=None, key_args=()):
    """``dar -c ARCHIVE -n -z9 -D [-s SLICE] -X MASK... -P PATH... -R TARGET
    [-A REFERENCE] [-B DCF] -Q``, the original's options in meaning, the key
    moved from ``-K``/``-J`` into a command file (``key_args``: -B /dev/fd/N);
    ``-z9`` is FS_COMPRESSION's (compression_args: none, -z9, -zzstd:3...)."""
    compression = settings["FS_COMPRESSION"] if "FS_COMPRESSION" in settings else DEFAULT_COMPRESSION
    argv = ["dar", "-c", archive, "-n"] + compression_args(compression) + ["-D"]
    if settings["FS_SLICE_SIZE"] and archive != "-":  # "-": to stdout, sliced by dar_xform
        argv += ["-s", settings["FS_SLICE_SIZE"]]
    for mask in settings["FS_EXCLUDE_FILES"]:
        argv += ["-X", mask]
    for path in settings["FS_EXCLUDE_PATHS"]:
        argv += ["-P", path]
    argv += ["-R", target]
    if reference:
        argv += ["-A", reference]
    argv += key_args
    argv.append("-Q")  # no "No terminal found" warning; questions still get "no"
    return argv


def without_statistics(text):
    """dar's messages without its statistics block (the lines from its
    first row of dashes to its last)."""
    lines = text.splitlines()
    rows = [i for i, line in enumerate(lines) if line.strip().startswith("-----")]
    if rows:
        lines = lines[:rows[0]] + lines[rows[-1] + 1:]
    return "\n".join(lines)


def xform_argv(settings, archive):
    """``dar_xform -Q -n [-s SLICE] - ARCHIVE``: the slices of the archive
    dar writes to its stdout (a stream: dar never goes back in it), each
    written from its first byte to its last (core.growing)."""
    argv = ["dar_xform", "-Q", "-n"]
    if settings["FS_SLICE_SIZE"]:
        argv += ["-s", settings["FS_SLICE_SIZE"]]
    return argv + ["-", archive]


@contextlib.contextmanager
def key_file(settings, reference):
    """The key for dar (core.darkey), with a line for -v."""
    with darkey.handed(settings["ENCRYPTION_KEY"], settings["FS_CIPHER"], reference) as key:
        if key:
            log.verbose("%s key given to dar in a command file: -K %s:****%s"
                        % (TAG, settings["FS_CIPHER"], " -J :****" if reference else ""))
        yield key


def publish(directory, temp, base):
    """Give the slices of ``temp`` their final names (``base``), last slice
    first so that slice 1, which marks the archive as present, comes last;
    then drop slices of an earlier same-day ``base`` beyond the new count."""
    made = slices(directory, temp)
    if not made:
        raise PackratError("%s dar reported success but wrote no slice of %s" % (TAG, base))
    old = slices(directory, base)
    final = []
    for number in range(len(made), 0, -1):
        source = os.path.join(directory, names.slice_name(temp, number))
        dest = os.path.join(directory, names.slice_name(base, number))
        os.replace(source, dest)
        final.append(dest)
    for name in old[len(made):]:
        log.verbose("%s removing %s, a slice of the earlier archive of the same name" % (TAG, name))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    return final[::-1]


def discard(directory, temp):
    for name in slices(directory, temp):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))


def plan(ctx, target, listing):
    """(base name, reference base name or None, kind) of ``target``'s archive
    for this run; kind is "master", "incremental" or "full"."""
    settings = ctx.settings
    prefix = names.archive_prefix(ctx.hostname, target)
    if not settings["FS_INCREMENTAL"]:
        return names.archive_base(prefix, ctx.today), None, "full"
    if is_master_day(ctx):
        return names.archive_base(prefix, ctx.today, master=True), None, "master"
    reference = reference_master(listing, prefix, ctx.now.date())
    if reference is None:
        log.verbose("%s no master of %s yet: making one" % (TAG, target))
        return names.archive_base(prefix, ctx.today, master=True), None, "master"
    return names.archive_base(prefix, ctx.today), reference, "incremental"


def backup_target(ctx, target):
    """Archive one target; returns the final paths of its slices."""
    directory = ctx.backup_dir
    listing = list(catalog.own_files(directory))  # a master planted by another user is none
    base, reference, kind = plan(ctx, target, listing)
    what = "%s to %s (%s%s)" % (target, os.path.join(directory, base), kind,
                                ", against %s" % reference if reference else "")
    if ctx.dry_run:
        log.info("[dry run] %s would back up %s" % (TAG, what))
    else:
        log.verbose("%s backing up %s" % (TAG, what))
    temp = tempnames.temporary_name(base)
    ref_path = os.path.join(directory, reference) if reference else None
    # while dar writes, the uploads that can already send it (ctx.on_growing)
    growing = None
    if ctx.on_growing is not None and not ctx.dry_run and execute.which("dar_xform"):
        growing = Growing(directory, temp, base)
    ok = False
    try:
        with key_file(ctx.settings, reference) as key:
            try:
                if growing is None:
                    argv = dar_argv(ctx.settings, os.path.join(directory, temp), target, ref_path, key.args)
                    result = execute.run(argv, ok_codes=OK_CODES, pass_fds=key.pass_fds,
                                         dry_run=ctx.dry_run)
                else:
                    log.verbose("%s the uploads send the archive while dar writes it" % TAG)
                    ctx.on_growing(growing)
                    argv = dar_argv(ctx.settings, "-", target, ref_path, key.args)
                    results = execute.pipeline(
                        [argv, xform_argv(ctx.settings, os.path.join(directory, temp))], os.devnull,
                        stage_fds=[key.pass_fds, ()], ok_codes=[OK_CODES, (0,)])  # the key: dar's only
                    result = execute.Result(results[0].code, results[0].err, "")
            except execute.CommandFailed as exc:
                discard(directory, temp)
                if growing is not None:  # to stdout, dar prints its statistics on stderr: not the cause
                    exc = execute.CommandFailed(exc.argv, exc.code, without_statistics(exc.stderr))
                hint = DAR_EXIT.get(exc.code) if exc.argv[0] == "dar" else None
                raise PackratError("%s backup of %s failed: %s%s"
                                   % (TAG, target, exc, " (%s)" % hint if hint else "")) from None
            except BaseException:
                discard(directory, temp)
                raise
        if result is None:  # dry run: the plan names what the uploads would send
            ctx.made(os.path.join(directory, "%s.*.dar" % base))
            return []
        if result.code == 11:
            log.verbose("%s some files of %s changed while dar read them (dar exit 11); "
                        "they are saved as dar found them" % (TAG, target))
            for line in result.err.splitlines():
                if line.strip():
                    log.verbose("%s   %s" % (TAG, line.strip()))
        for line in result.out.splitlines():
            if line.strip() and not line.strip().startswith("---"):
                log.verbose("%s   %s" % (TAG, line.strip()))
        try:
            final = publish(directory, temp, base)
        except BaseException:
            discard(directory, temp)
            raise
        ok = True
    finally:
        if growing is not None:
            growing.end(ok)
    for path in final:  # the uploads start on them while the next target is archived
        ctx.made(path)
    return final


def backup(ctx):
    """Every target in order; a failing target does not stop the others.
    Returns the final paths made; raises PartialFailure (with them) if any
    target failed."""
    if ctx.settings["FS_METHOD"] == "dar" and not execute.which("dar"):
        raise PackratError("%s dar is not installed (not found in PATH): no filesystem archive "
                           "was made" % TAG)
    made, failures = [], []
    for target in ctx.settings["FS_TARGETS"]:
        if not os.path.isdir(target):
            log.verbose("%s %s does not exist (or is not a directory), skipping" % (TAG, target))
            continue
        try:
            made += backup_target(ctx, target)
        except PackratError as exc:
            failures.append(str(exc))
    if failures:
        raise PartialFailure("\n".join(failures), made)
    return made


# -- configuration -------------------------------------------------------------

def check(settings):
    """What the declarations do not check (``settings``: a settings.View)."""
    where = settings.where
    problems = []
    if settings.valid("FS_METHOD") and settings["FS_METHOD"] == "tar":
        problems.append("%s: FS_METHOD=tar: tar is not supported (the original never finished it); "
                        "use FS_METHOD=dar" % where("FS_METHOD"))
    if settings.valid("FS_TARGETS"):
        targets = settings["FS_TARGETS"]
        seen = {}
        for target in targets:
            if not target.startswith("/"):
                problems.append("%s: FS_TARGETS: %r is not an absolute path" % (where("FS_TARGETS"), target))
                continue
            prefix = names.archive_prefix("", target)
            if prefix in seen:
                problems.append("%s: FS_TARGETS: %r and %r would share archive names (%s)"
                                % (where("FS_TARGETS"), seen[prefix], target, "HOST%s-DATE" % prefix))
            seen[prefix] = target
    if settings.valid("FS_EXCLUDE_PATHS"):
        for path in settings["FS_EXCLUDE_PATHS"]:
            if path.startswith("/"):
                problems.append("%s: FS_EXCLUDE_PATHS: %r is an absolute path, which dar refuses; give "
                                "it relative to each target (for /home/sites/cache with the target "
                                "/home/sites: 'cache')" % (where("FS_EXCLUDE_PATHS"), path))
    if settings.valid("FS_COMPRESSION"):
        problems += filter(None, [compression_problem(settings)])
    if settings.valid("FS_SLICE_SIZE"):
        size = settings["FS_SLICE_SIZE"]
        if size and (not SLICE_SIZE.match(size) or size.endswith("\n")):
            problems.append("%s: FS_SLICE_SIZE=%r: must be a number of bytes, optionally followed by "
                            "k, M, G or T (as 1000M), or empty for one slice" % (where("FS_SLICE_SIZE"), size))
    return problems


def requirements(settings):
    """dar, or the reason this module fails at run time (the others run);
    and the FS_TARGETS that are not directories here (skipped at run time,
    as the original skipped them)."""
    lines = []
    if settings["FS_METHOD"] == "dar" and not execute.which("dar"):
        lines.append("%s: the filesystem module needs dar, which is not installed (not found in PATH): "
                     "the filesystem backup will fail" % settings.where("FS_METHOD"))
    for target in settings["FS_TARGETS"]:
        if target.startswith("/") and not os.path.isdir(target):
            lines.append("%s: FS_TARGETS: %s is not a directory here: it is skipped"
                         % (settings.where("FS_TARGETS"), target))
    return lines
