"""Issue 15, compression and politeness, with the real programs:
FS_COMPRESSION (every value `packrat check` accepts makes an archive that
`packrat restore` gives back byte for byte; a chain of mixed compressions
restores and verifies; an unsupported value is a configuration error naming
the setting), COMPRESSOR levels (dump argv, one real dump and restore), and
NICE/IONICE as the programs packrat starts see them."""
import os
import re
import subprocess

import pytest

from pypackrat import dumps
from pypackrat.backup import filesystem
from tests.archives import archive_prefix, snapshot, write
from tests.databases import db_settings
from tests.servers.mariadb import mariadb_fresh, mariadb_server  # noqa: F401

HOST = "testhost"
SUNDAY, MONDAY, TUESDAY = "20240107", "20240108", "20240109"  # Sunday: FS_MASTER_DAY's default


def tree(top, day=0):
    """A small tree, compressible (text) and not (random bytes), changed by ``day``."""
    write(os.path.join(top, "text.txt"), "".join("line %d of the text, day %d\n" % (i, day)
                                                 for i in range(3000)))
    write(os.path.join(top, "sub", "random.bin"), os.urandom(5000))
    write(os.path.join(top, "sub", "day%d.txt" % day), "made on day %d\n" % day, 0o640)
    if day == 0:
        os.symlink("text.txt", os.path.join(top, "link"))
    else:
        os.unlink(os.path.join(top, "sub", "day%d.txt" % (day - 1)))


def fs_env(penv, tmp_path, compression=None):
    src = tmp_path / "src"
    src.mkdir()
    penv.settings.update(BACKUP_MODULES=["filesystem"], FS_TARGETS=[str(src)])
    if compression is not None:
        penv.settings["FS_COMPRESSION"] = compression
    return str(src)


def recorded_compression(path):
    """The algorithm dar recorded in an archive (``dar -l -q``: its summary)."""
    base = re.sub(r"\.1\.dar$", "", str(path))
    proc = subprocess.run(["dar", "-Q", "-l", base, "-q"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return re.search(r"^Compression algorithm used\s*:\s*(\S+)", proc.stdout, re.M).group(1)


def dar_lines(proc):
    return [line for line in proc.stdout.splitlines() if re.match(r"(/usr/bin/)?dar -c ", line)]


# -- FS_COMPRESSION ----------------------------------------------------------------

# value -> (dar's option, the algorithm dar records)
ACCEPTED = {
    None: ("-z9", "gzip"),  # absent: the original's -z9
    "gzip:9": ("-z9", "gzip"),
    "gzip": ("-zgzip:6", "gzip"),
    "bzip2": ("-zbzip2:9", "bzip2"),
    "xz:2": ("-zxz:2", "xz"),
    "zstd": ("-zzstd:3", "zstd"),
    "zstd:19": ("-zzstd:19", "zstd"),
    "zstd:22": ("-zzstd:22", "zstd"),
    "lz4": ("-zlz4", "lz4"),
    "lzo": ("-zlzop-3", "lzo"),
    "none": (None, "none"),
}


@pytest.mark.parametrize("value", list(ACCEPTED), ids=lambda v: str(v))
def test_every_accepted_value_restores_byte_for_byte(penv, tmp_path, value):
    src = fs_env(penv, tmp_path, value)
    tree(src)
    option, recorded = ACCEPTED[value]
    penv.run("check", check=0)
    proc = penv.run("-v", date=SUNDAY, check=0)
    (line,) = dar_lines(proc)
    argv = line.split()
    assert [a for a in argv if a.startswith("-z")] == ([option] if option else [])
    if value is None:  # the original's argv, byte for byte, up to the target
        assert argv[0].endswith("dar") and argv[1] == "-c" and argv[3:6] == ["-n", "-z9", "-D"]
    archive = penv.backup_dir / ("%s-%s.master.1.dar" % (archive_prefix(HOST, src), SUNDAY))
    assert recorded_compression(archive) == recorded
    dest = tmp_path / "out"
    penv.run("restore", src, dest, check=0)
    assert snapshot(str(dest)) == snapshot(src)


def test_compression_shrinks_text_and_none_does_not(penv, tmp_path):
    """The option reaches dar: the same tree with zstd is much smaller than with none."""
    src = fs_env(penv, tmp_path)
    tree(src)
    sizes = {}
    for value in ("none", "zstd"):
        penv.settings["FS_COMPRESSION"] = value
        penv.run(date=SUNDAY, check=0)
        sizes[value] = (penv.backup_dir / ("%s-%s.master.1.dar" % (archive_prefix(HOST, src), SUNDAY))
                        ).stat().st_size
    assert sizes["zstd"] < sizes["none"] - 40000, sizes


def test_mixed_chain_restores_and_verifies(penv, tmp_path):
    """A master of the original's compression (FS_COMPRESSION absent: -z9),
    then a zstd incremental and an lz4 one, each against that master:
    restore takes each day's pair, verify tests each, dar reading the
    compression from each archive."""
    src = fs_env(penv, tmp_path)
    prefix = archive_prefix(HOST, src)
    snaps = {}
    for i, (day, value) in enumerate(((SUNDAY, None), (MONDAY, "zstd"), (TUESDAY, "lz4"))):
        tree(src, i)
        if value is not None:
            penv.settings["FS_COMPRESSION"] = value
        penv.run(date=day, check=0)
        snaps[day] = snapshot(src)
    assert recorded_compression(penv.backup_dir / ("%s-%s.master.1.dar" % (prefix, SUNDAY))) == "gzip"
    assert recorded_compression(penv.backup_dir / ("%s-%s.1.dar" % (prefix, MONDAY))) == "zstd"
    assert recorded_compression(penv.backup_dir / ("%s-%s.1.dar" % (prefix, TUESDAY))) == "lz4"
    for day in (SUNDAY, MONDAY, TUESDAY):
        dest = tmp_path / ("out-" + day)
        proc = penv.run("-v", "restore", "-d", day, src, dest, check=0)
        assert snapshot(str(dest)) == snaps[day], day
        assert len([l for l in proc.stdout.splitlines() if l.startswith("[RESTORE] restoring")]) == \
            (1 if day == SUNDAY else 2)
        penv.run("verify", "-d", day, check=0)


@pytest.mark.parametrize("value,reason", [
    ("brotli", "not a compression"),
    ("zstd:99", "zstd's level is 1 to 22"),
    ("gzip:0", "gzip's level is 1 to 9"),
    ("lz4:3", "lz4 takes no level"),
    ("-zzstd", "not a compression"),
    ("zstd:3 -R /", "not a compression"),
])
def test_unsupported_value_is_a_configuration_error(penv, tmp_path, value, reason):
    src = fs_env(penv, tmp_path, value)
    tree(src)
    proc = penv.run("check", check=1)
    assert "%s: FS_COMPRESSION=%r: %s" % (penv.config_path, value, reason) in proc.stderr
    assert "Traceback" not in proc.stderr
    if value == "brotli":
        proc = penv.run(date=SUNDAY)  # the night refuses it too: nothing made
        assert proc.returncode != 0 and "FS_COMPRESSION" in proc.stderr
        assert os.listdir(penv.backup_dir) == []


def test_an_algorithm_the_installed_dar_lacks(penv, tmp_path):
    """dar -V says what it was built with: a dar without libzstd makes
    zstd a configuration error, gzip still fine."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = subprocess.run(["which", "dar"], capture_output=True, text=True).stdout.strip()
    (bindir / "dar").write_text(
        "#!/bin/bash\n"
        'for a in "$@"; do [ "$a" = -V ] && { %s "$@" | sed "s/^\\( *zstd compression.*: \\)YES/\\1NO/"; '
        "exit 0; }; done\n"
        'exec %s "$@"\n' % (real, real))
    (bindir / "dar").chmod(0o755)
    env = {"PATH": "%s:%s" % (bindir, os.environ["PATH"])}
    src = fs_env(penv, tmp_path, "zstd:5")
    tree(src)
    proc = penv.run("check", env=env, check=1)
    line = [l for l in proc.stderr.splitlines() if "FS_COMPRESSION" in l]
    assert line == ["%s: FS_COMPRESSION='zstd:5': the installed dar (%s) was built without zstd "
                    "compression (dar -V); it has: gzip, bzip2, lzo, xz, lz4" % (penv.config_path, bindir / "dar")]
    penv.settings["FS_COMPRESSION"] = "xz"
    penv.run("check", env=env, check=0)


def test_dar_probe_parses_the_feature_list():
    known = filesystem.dar_compressions(subprocess.run(["which", "dar"], capture_output=True,
                                                       text=True).stdout.strip())
    assert {k for k, v in known.items() if v} >= {"gzip"}


@pytest.mark.fast
def test_absent_is_the_originals_argv():
    settings = {"FS_COMPRESSION": "gzip:9", "FS_SLICE_SIZE": "1000M", "FS_EXCLUDE_FILES": ["*.tmp"],
                "FS_EXCLUDE_PATHS": ["cache"]}
    assert filesystem.dar_argv(settings, "/b/T", "/t") == [
        "dar", "-c", "/b/T", "-n", "-z9", "-D", "-s", "1000M", "-X", "*.tmp", "-P", "cache", "-R", "/t", "-Q"]
    settings["FS_COMPRESSION"] = "none"
    assert filesystem.dar_argv(settings, "/b/T", "/t")[:5] == ["dar", "-c", "/b/T", "-n", "-D"]


# -- COMPRESSOR ---------------------------------------------------------------------

@pytest.mark.fast
@pytest.mark.parametrize("value,argv,suffix", [
    ("bzip2", ["bzip2", "-c", "-9"], ".sql.bz2"),  # the default, as before
    ("bzip2:1", ["bzip2", "-c", "-1"], ".sql.bz2"),
    ("lbzip2:5", ["lbzip2", "-c", "-5"], ".sql.bz2"),
    ("pbzip2", ["pbzip2", "-c", "-9"], ".sql.bz2"),
    ("zstd", ["zstd", "-q", "-c", "-T0"], ".sql.zst"),
    ("zstd:19", ["zstd", "-q", "-c", "-T0", "-19"], ".sql.zst"),
    ("zstd:22", ["zstd", "-q", "-c", "-T0", "--ultra", "-22"], ".sql.zst"),
])
def test_compressor_argv_and_name(value, argv, suffix):
    assert dumps.compressor_argv(value) == argv
    assert dumps.suffix(value) == suffix


@pytest.mark.parametrize("value,reason", [
    ("gzip", "must be one of bzip2, lbzip2, pbzip2, zstd, a level may follow (bzip2:9, zstd:19)"),
    ("zstd:99", "zstd's level is 1 to 22"),
    ("bzip2:0", "bzip2's level is 1 to 9"),
    ("zstd -T0", "must be one of bzip2, lbzip2, pbzip2, zstd, a level may follow (bzip2:9, zstd:19)"),
    ("zstd:-1", "must be one of bzip2, lbzip2, pbzip2, zstd, a level may follow (bzip2:9, zstd:19)"),
])
def test_compressor_refused(penv, value, reason):
    penv.write(COMPRESSOR=value)
    proc = penv.run("check", check=1)
    assert "%s: COMPRESSOR=%r: %s" % (penv.config_path, value, reason) in proc.stderr.splitlines()


def test_zstd_level_dump_restores(penv, mariadb_server, tmp_path):
    """COMPRESSOR=zstd:19: the dump's pipeline runs zstd -T0 -19, the file
    keeps its .sql.zst name, and packrat restore reads it (no level needed)."""
    db = mariadb_server.new_database("cz")
    mariadb_server.fill(db, rows=30)
    db_settings(penv, "mysql", mariadb_server, [db], COMPRESSOR="zstd:19")
    penv.run("check", check=0)
    proc = penv.run("-v", date=SUNDAY, check=0)
    assert "zstd -q -c -T0 -19" in proc.stdout
    assert os.listdir(penv.backup_dir) == ["%s-mysql-%s-%s.sql.zst" % (HOST, db, SUNDAY)]
    penv.run("restore", "-d", SUNDAY, "mysql", db, "--into", db + "_back", check=0)
    assert mariadb_server.contents(db + "_back") == mariadb_server.contents(db)


# -- NICE and IONICE -------------------------------------------------------------------

RECORDER = r'''
mod_recorder() {
    # field 19 of /proc/PID/stat is the niceness (the 2nd, the name, has no space here)
    cut -d' ' -f19 /proc/$BASHPID/stat > "$RECORD"
    ionice -p $BASHPID >> "$RECORD"
    sh -c 'cut -d" " -f19 /proc/$$/stat; ionice -p $$' >> "$RECORD"   # a grandchild too
}
'''


def record(penv, tmp_path, **settings):
    (penv.module_path / "recorder.sh").write_text(RECORDER)
    out = tmp_path / "record"
    penv.settings.update(BACKUP_MODULES=["recorder"], **settings)
    penv.run(date=SUNDAY, env={"RECORD": str(out)}, check=0)
    return out.read_text().splitlines()


def own_io_class():
    return subprocess.run(["ionice", "-p", str(os.getpid())], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_nice_and_ionice_reach_the_programs_packrat_starts(penv, tmp_path):
    assert os.getpriority(os.PRIO_PROCESS, 0) != 13 and own_io_class() != "idle"
    assert record(penv, tmp_path, NICE=13, IONICE="idle") == ["13", "idle", "13", "idle"]


def test_best_effort_level(penv, tmp_path):
    assert record(penv, tmp_path, NICE=1, IONICE="best-effort:6") == \
        ["1", "best-effort: prio 6", "1", "best-effort: prio 6"]


def test_defaults_leave_scheduling_unchanged(penv, tmp_path):
    mine = [str(os.getpriority(os.PRIO_PROCESS, 0)), own_io_class()]
    assert record(penv, tmp_path) == mine + mine


@pytest.mark.parametrize("setting,value,reason", [
    ("IONICE", "realtime", "realtime is refused"),
    ("IONICE", "realtime:0", "realtime is refused"),
    ("IONICE", "idle:3", "idle takes no level"),
    ("IONICE", "best-effort:8", "a best-effort level is 0 to 7"),
    ("IONICE", "-c1", "must be idle, best-effort or best-effort:LEVEL"),
    ("NICE", 20, "NICE"),
    ("NICE", -21, "NICE"),
])
def test_politeness_refused(penv, setting, value, reason):
    penv.write(**{setting: value})
    proc = penv.run("check", check=1)
    lines = [l for l in proc.stderr.splitlines() if setting in l]
    assert len(lines) == 1 and lines[0].startswith(str(penv.config_path)) and reason in lines[0], proc.stderr


@pytest.mark.fast
@pytest.mark.parametrize("value,args", [
    ("gzip:9", ["-z9"]), ("gzip", ["-zgzip:6"]), ("gzip:1", ["-zgzip:1"]), ("bzip2", ["-zbzip2:9"]),
    ("bzip2:2", ["-zbzip2:2"]), ("xz", ["-zxz:6"]), ("xz:9", ["-zxz:9"]), ("zstd", ["-zzstd:3"]),
    ("zstd:1", ["-zzstd:1"]), ("lz4", ["-zlz4"]), ("lzo", ["-zlzop-3"]), ("none", []),
])
def test_compression_args(value, args):
    assert filesystem.compression_args(value) == args


def test_dry_run_shows_the_politeness(penv, tmp_path):
    penv.write(NICE=7, IONICE="idle")
    proc = penv.run("-n", check=0)
    assert "[dry run] the run would go at NICE=7 IONICE=idle" in proc.stdout


@pytest.mark.fast
def test_a_nice_that_cannot_be_applied_is_a_warning(monkeypatch, capsys):
    """NICE=-5 without the right to it (CAP_SYS_NICE): the run goes on at
    its niceness, with a warning naming the setting and the file."""
    import types

    from pypackrat import execute
    from tests.databases import Settings

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    ctx = types.SimpleNamespace(settings=Settings(NICE=-5, IONICE=""), dry_run=False)
    execute.polite(ctx)
    err = capsys.readouterr().err
    assert "Warning: /etc/packrat/packrat.conf: NICE=-5: cannot be applied: Operation not permitted; " \
           "the run goes at niceness %d" % os.getpriority(os.PRIO_PROCESS, 0) in err
