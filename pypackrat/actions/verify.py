"""``packrat verify``: test the archives of the newest run (or of a date).

- every filesystem archive of that day is tested with ``dar -t`` (with the
  key, through a DCF file), and so is the master it depends on: a missing
  master or slice is a failure;
- every dump of that day is decrypted and decompressed in full (to
  /dev/null), every process's exit status checked;
- the copy of each of those files on every upload module's remote is
  compared with the local file by size, and by checksum where the remote
  gives one;
- with ``--sample N``, N random files of each target are restored to a
  temporary directory and compared with the live files: a difference in a
  file that has not changed since the backup is a failure; files changed or
  deleted since are reported.

Without -d, the newest run is the newest dated up to the run's date: files
dated later (planted names, a clock gone wrong) are noted, verified only
when -d names their date. With ENCRYPTION_KEY set, a plain archive or dump
is a failure (packrat encrypts all it makes); a wrong key or cipher is
named as such. An S3 object uploaded in parts is compared by its ETag,
computed over the local file in the same parts.

A file of the run that is no longer in BACKUP_DIR is fetched from a remote
that has it and tested there. Any failure: the names of the bad files on
stderr, the failure mail to ADMIN_EMAIL (as a nightly run sends it), exit 1.
"""
import argparse
import textwrap
import filecmp
import os
import random
import re
import tempfile

from pypackrat import catalog, execute, log, mail, transfer
from pypackrat.core import darkey
from pypackrat.core.chains import Masters
from pypackrat.core.names import ALL, day_text, file_part, parse_date, target_prefix
from pypackrat.errors import PackratError
from pypackrat.actions.restore import decode_stages, work_dir

TAG = "[VERIFY]"

EXAMPLES = """\
examples:
  packrat verify                    the newest run, local and remote copies
  packrat verify -d 20240214        the archives of 14 February 2024
  packrat verify --sample 20        also restore 20 random files per target
                                    and compare them with the live files
  packrat verify --local            skip the remote copies
cron (after the nightly run; a failure mails ADMIN_EMAIL):
  30 5 * * *  root  /usr/bin/packrat verify --sample 10 >/dev/null
"""


def parser():
    p = argparse.ArgumentParser(
        prog="packrat verify",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Test every archive and dump of the newest run (or of --date): dar -t "
                    "over each archive and its master, a full decrypt and decompress of each "
                    "dump, and the remote copies against the local ones (size, checksum). "
                    "Exit 0 when all is good; otherwise the bad files on stderr, the failure "
                    "mail, exit 1.", 78),
        epilog=EXAMPLES)
    p.add_argument("-d", "--date", metavar="YYYYMMDD", help="the run to verify (default: the newest)")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="restore N random files of each target and compare with the live files")
    p.add_argument("--local", action="store_true", help="do not look at the remotes")
    p.add_argument("--host", metavar="NAME", help="archives named after this host (default: HOSTNAME)")
    p.add_argument("--cipher", choices=("aes-256-cbc", "blowfish"),
                   help="cipher of encrypted dumps (default: DB_CIPHER)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where fetched files and samples go (default: BACKUP_DIR)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout (fields: README, \"Machine-readable "
                        "output\"); the failure mail and exit status stay as they are")
    return p


class Verifier:
    def __init__(self, ctx, cat, a, tmp):
        self.ctx, self.cat, self.a, self.tmp = ctx, cat, a, tmp
        self.failures = []
        self.notes = []
        self.checked = {"archives": 0, "dumps": 0, "copies": 0}
        self.fetched = {}  # name -> path of a copy fetched from a remote
        self.fetched_from = {}  # name -> the location it was fetched from
        self.day = None
        self.results = []  # --json: one entry per test (report_schema.VERIFY's results)

    def fail(self, message, kind="run", name=None, location=None):
        message = log.mask(message)
        self.failures.append(message)
        self.results.append({"kind": kind, "name": name, "location": location,
                             "status": "failed", "message": message})
        log.verbose("%s FAILED %s" % (TAG, message))

    def ok(self, message, kind="run", name=None, location=None):
        self.results.append({"kind": kind, "name": name, "location": location,
                             "status": "ok", "message": ""})
        log.verbose("%s ok %s" % (TAG, message))

    def read_at(self, names):
        """Where the files ``names`` were read: BACKUP_DIR, or the remote
        the first of them not in BACKUP_DIR was fetched from."""
        for name in names:
            if name in self.fetched_from:
                return self.fetched_from[name]
        return catalog.LOCAL

    # -- files ---------------------------------------------------------------
    def path_of(self, name):
        """A readable path of ``name``: BACKUP_DIR, or fetched from a remote."""
        local = self.cat.local_path(name)
        if local:
            return local
        if name in self.fetched:
            return self.fetched[name]
        for location in self.cat.where(name):
            remote = self.cat.remotes.get(location)
            if remote is None or "transfer" not in remote.capabilities:
                continue
            dest = os.path.join(self.tmp, name)
            log.verbose("%s %s is not in BACKUP_DIR: fetching it from %s" % (TAG, name, location))
            try:
                transfer.download(remote, name, dest)
            except PackratError as exc:
                self.fail("%s: cannot fetch it from %s: %s" % (name, location, exc),
                          _kind(name), name, location)
                return None
            self.fetched[name] = dest
            self.fetched_from[name] = location
            return dest
        return None

    def archive_dir(self, archive):
        paths = [self.path_of(n) for n in archive.names()]
        if None in paths:
            return None
        dirs = {os.path.dirname(p) for p in paths}
        if len(dirs) == 1:
            return dirs.pop()
        for name, path in zip(archive.names(), paths):  # some local, some fetched
            link = os.path.join(self.tmp, name)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(path), link)
        return self.tmp

    # -- filesystem ------------------------------------------------------------
    def chains(self, day):
        """(archive, master or None) for every archive dated ``day``; a
        missing master is a failure."""
        archives = self.cat.archives()
        incremental = self.ctx.settings["FS_INCREMENTAL"]
        masters = Masters(archives.values())
        out = []
        for archive in sorted(archives.values(), key=lambda a: a.base):
            if archive.day != day:
                continue
            master = None
            if not archive.master and incremental:
                master = masters.of(archive.prefix, archive.day)
                if master is None:
                    self.fail("%s: its master is missing: no %s-DATE.master.N.dar dated on or "
                              "before %s, here or on any remote; this incremental cannot be "
                              "restored" % (archive.names()[0], archive.prefix,
                                            day_text(archive.day)), "archive", archive.base)
            out.append((archive, master))
        return out

    def test_archive(self, archive, key, tested):
        if archive.base in tested:
            return tested[archive.base]
        tested[archive.base] = False
        missing = archive.missing_slices()
        if missing:
            self.fail("%s: slice %s is missing" % (archive.base, ", ".join(map(str, missing))),
                      "archive", archive.base)
            return False
        place = self.archive_dir(archive)
        if place is None:
            self.fail("%s: not readable in BACKUP_DIR nor on a remote" % archive.base,
                      "archive", archive.base)
            return False
        log.verbose("%s testing %s (%d slice%s)" % (TAG, archive.base, len(archive.slices),
                                                    "s" if len(archive.slices) > 1 else ""))
        try:
            catalog.require_encrypted(os.path.join(place, archive.base), key, archive.base)
            catalog.dar(["-t", os.path.join(place, archive.base), "-q"], key)
        except PackratError as exc:
            self.fail("%s (%s): %s" % (archive.base, ", ".join(archive.names()), exc),
                      "archive", archive.base, self.read_at(archive.names()))
            return False
        self.checked["archives"] += 1
        tested[archive.base] = True
        self.ok(archive.base, "archive", archive.base, self.read_at(archive.names()))
        return True

    # -- dumps -----------------------------------------------------------------
    def test_dump(self, dump):
        path = self.path_of(dump.name)
        if path is None:
            self.fail("%s: not readable in BACKUP_DIR nor on a remote" % dump.name, "dump", dump.name)
            return
        log.verbose("%s decoding %s" % (TAG, dump.name))
        try:
            with decode_stages(self.ctx.settings, path, self.a.cipher) as (stages, fds):
                execute.pipeline(stages, os.devnull, pass_fds=fds)
        except PackratError as exc:
            self.fail("%s: %s" % (dump.name, exc), "dump", dump.name, self.read_at([dump.name]))
            return
        self.checked["dumps"] += 1
        self.ok(dump.name, "dump", dump.name, self.read_at([dump.name]))

    # -- remote copies ------------------------------------------------------------
    def compare_copies(self, names):
        for location, remote in self.cat.remotes.items():
            for name in names:
                local = self.cat.local_path(name)
                if local is None:
                    continue
                local_size = self.cat.size(name, catalog.LOCAL)
                if location not in self.cat.files.get(name, {}):
                    self.fail("%s: not on %s (%s)" % (name, location, remote.describe()),
                              "copy", name, location)
                    continue
                remote_size = self.cat.size(name, location)
                if remote_size is None and "transfer" not in remote.capabilities:
                    self.checked["copies"] += 1  # a Bash module: present is all it can tell
                    self.ok("%s on %s (present; the module gives no size)" % (name, location),
                            "copy", name, location)
                    continue
                if remote_size != local_size:
                    self.fail("%s: the copy on %s has %s bytes, the local file %d"
                              % (name, location, remote_size, local_size), "copy", name, location)
                    continue
                try:
                    digest = remote.checksum(name)
                except Exception as exc:
                    self.fail("%s: cannot get its checksum on %s: %s" % (name, location, exc),
                              "copy", name, location)
                    continue
                if digest:
                    algorithm, value = digest
                    if transfer.file_digest(local, algorithm) != value:
                        self.fail("%s: the copy on %s differs from the local file (%s)"
                                  % (name, location, algorithm), "copy", name, location)
                        continue
                self.checked["copies"] += 1
                self.ok("%s on %s" % (name, location), "copy", name, location)

    # -- samples ---------------------------------------------------------------
    def sample(self, prefix, chain, target, key, count):
        """Restore ``count`` random files of the newest archive of ``chain``
        and compare them with the live ones under ``target``."""
        newest = chain[-1]
        places = [self.archive_dir(a) for a in chain]
        if None in places:
            return
        files = [f for f in self.files_in(newest, places[-1], key) if _passable(f)]
        if not files:
            return
        picked = random.sample(files, min(count, len(files)))
        out = tempfile.mkdtemp(prefix="sample-", dir=self.tmp)
        log.verbose("%s restoring %d sample file(s) of %s" % (TAG, len(picked), target))
        try:
            for i, (archive, place) in enumerate(zip(chain, places)):
                args = ["-x", os.path.join(place, archive.base), "-R", out, "-q"]
                if i:
                    args.append("-w")
                for rel in picked:
                    args += ["-g", rel]
                catalog.dar(args, key)
        except PackratError as exc:
            self.fail("%s: restoring sample files failed: %s" % (newest.base, exc), "sample", newest.base)
            return
        for rel in sorted(picked):
            restored, live = os.path.join(out, rel), os.path.join(target, rel)
            if not os.path.lexists(restored):
                self.fail("%s: %s is in the archive but did not restore" % (newest.base, rel),
                          "sample", newest.base)
                continue
            if not os.path.lexists(live):
                self.notes.append("%s: deleted since the backup" % live)
                continue
            if os.path.isfile(live) and filecmp.cmp(restored, live, shallow=False):
                self.ok("sample %s" % live, "sample", newest.base)
                continue
            if int(os.lstat(live).st_mtime) != int(os.lstat(restored).st_mtime):
                self.notes.append("%s: changed since the backup" % live)
            else:
                self.fail("%s: the copy restored from %s differs from the live file, which has "
                          "not changed since the backup" % (live, newest.base), "sample", newest.base)

    def files_in(self, archive, place, key):
        """Relative paths of the plain files an archive's catalogue holds
        (saved or referenced to its master, not deleted)."""
        import xml.etree.ElementTree as ET
        listing = os.path.join(self.tmp, archive.base + ".xml")
        try:
            catalog.dar(["-l", os.path.join(place, archive.base), "-Txml"], key, stdout=listing,
                        changes=False)
        except PackratError as exc:
            self.fail("%s: cannot list it: %s" % (archive.base, exc), "sample", archive.base)
            return []
        with open(listing, "rb") as fh:
            # dar prints a warning about an encrypted archive on stdout
            # before the XML: the listing starts at "<?xml"
            skip = _xml_start(fh)
            if skip is None:
                self.fail("%s: dar -l -Txml gave no XML" % archive.base, "sample", archive.base)
                return []
            fh.seek(skip)
            try:
                files = _xml_files(ET, fh)
            except ET.ParseError as exc:
                self.fail("%s: cannot read dar's listing of it: %s" % (archive.base, exc),
                          "sample", archive.base)
                return []
        os.unlink(listing)
        return files


def _passable(name):
    """Whether ``name`` can go on a command line as its bytes (the command
    layer's execute.ARGV_ENCODING: UTF-8, bytes that are not UTF-8 carried
    as surrogate escapes; any other lone surrogate cannot be)."""
    try:
        name.encode(execute.ARGV_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def _xml_start(fh, marker=b"<?xml", block=1 << 16):
    """The offset of the XML declaration in a file, or None."""
    offset, tail = 0, b""
    while True:
        data = fh.read(block)
        if not data:
            return None
        at = (tail + data).find(marker)
        if at >= 0:
            return offset - len(tail) + at
        offset += len(data)
        tail = (tail + data)[-(len(marker) - 1):]


_DECLARATION = re.compile(rb"<\?xml[^?]*\?>")


def _latin1(match):
    """The XML declaration, its encoding made ISO-8859-1."""
    text = re.sub(rb"\s+encoding=(\"[^\"]*\"|'[^']*')", b"", match.group(0))
    return re.sub(rb"\s*\?>$", b' encoding="ISO-8859-1"?>', text)


def _byte_name(name):
    """A name read as ISO-8859-1 (one character per byte) back to the str
    Python uses for that file name (bytes that are not UTF-8 as surrogates)."""
    try:
        return name.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a character reference above U+00FF: taken as it is
        return name


def _xml_files(ET, fh):
    """Relative paths of the saved or referenced plain files in dar's XML
    listing, read from ``fh``. dar writes file names as their bytes, which
    need not be UTF-8 (a file name on Linux is any bytes): the listing is
    read as ISO-8859-1, which takes every byte, and each name is turned
    back into its bytes."""
    files, stack = [], []
    parser = ET.XMLPullParser(events=("start", "end"))
    first = True
    while True:
        data = fh.read(1 << 16)
        if first:
            first = False
            data = _DECLARATION.sub(_latin1, data, count=1)
        if data:
            parser.feed(data)
        else:
            parser.close()
        for event, element in parser.read_events():
            if element.tag not in ("Directory", "File"):
                continue
            if event == "start":
                stack.append(_byte_name(element.get("name") or ""))
                continue
            if element.tag == "File":
                attributes = element.find("Attributes")
                if attributes is not None and attributes.get("data") in ("saved", "referenced"):
                    files.append("/".join(stack))
            stack.pop()
            element.clear()
        if not data:
            return files


def main(ctx, args):
    a = parser().parse_args(args)
    if not a.json:
        return verify(ctx, a)[1]
    from pypackrat import report_schema
    with report_schema.stdout_for_json() as emit:
        try:
            v, code = verify(ctx, a)
        except PackratError as exc:  # before any test (a bad --date): one failure, no mail
            log.error("packrat verify: %s" % exc)
            v, code = Verifier(ctx, None, a, None), 1
            v.fail(str(exc))
        emit(document(ctx, v, code, a))
    return code


def document(ctx, v, code, a):
    """``packrat verify --json``: the fields of report_schema.VERIFY."""
    return {"version": 1, "action": "verify", "exit_status": code,
            "host": v.cat.host if v.cat is not None else (a.host or ctx.hostname),
            "day": day_text(v.day) if v.day else None, "status": "failed" if code else "ok",
            "checked": dict(v.checked), "results": v.results, "failures": v.failures,
            "notes": [log.mask(note) for note in v.notes]}


def _kind(name):
    """"dump" for a dump's file name, else "archive"."""
    return "dump" if catalog.parse_dump(name) else "archive"


def verify(ctx, a):
    """Verify as ``a`` (the parsed arguments) asks: (the Verifier, the exit status)."""
    if a.sample < 0:
        raise PackratError("--sample needs a number of files, 0 or more")
    day = parse_date(a.date) if a.date else None
    remotes = [] if a.local else list(ctx.settings["UPLOAD_MODULES"])
    # verify only reads (its temporary files aside): with -n it runs all the
    # same (its commands get no dry_run), and only the failure mail stays a
    # "would mail"
    with catalog.gather(ctx, a.host, remotes, sizes=True) as cat, \
            work_dir(ctx, a.work_dir) as tmp:
        v = Verifier(ctx, cat, a, tmp)
        for message in cat.errors:  # "MODULE: cannot connect: ..."
            v.fail(message, "location", message.split(":", 1)[0])
        try:
            run(ctx, cat, v, day, a)
        except PackratError as exc:
            v.fail(str(exc))
    return v, report(ctx, v.failures, v.notes, v.checked, v.day)


def run(ctx, cat, v, day, a):
    if day is None:
        # the newest run, never one dated after the run's date (a planted
        # name, or a clock gone wrong): -d names such a date if wanted
        today = catalog.until(ctx)
        day = cat.newest_day(catalog.LOCAL, today) or cat.newest_day(until=today)
        later = cat.future(today)
        if later:
            v.notes.append("dated after today (%s), not verified without -d: %s"
                           % (day_text(today), ", ".join(later)))
        if day is None:
            raise PackratError("nothing to verify: no archive or dump of %s dated up to %s in %s%s"
                               % (cat.host, day_text(today), ctx.backup_dir,
                                  " nor on " + ", ".join(cat.remotes) if cat.remotes else ""))
    v.day = day
    log.verbose("%s the run of %s" % (TAG, day_text(day)))
    chains = v.chains(day)
    dumps = [d for d in cat.dumps() if d.day == day]
    expected(ctx, cat, v, day, chains, dumps)
    if not chains and not dumps and not v.failures:
        raise PackratError("nothing to verify: no archive or dump dated %s" % day_text(day))
    names = []
    targets = {target_prefix(cat.host, t): t for t in ctx.settings["FS_TARGETS"]}
    no_dar = None
    if chains:
        try:
            execute.require("dar")
        except PackratError as exc:  # one line for the run, not one per archive
            no_dar = exc
            v.fail("%s: %d archive(s) not tested" % (exc, len({x.base for chain in chains
                                                                 for x in chain if x is not None})))
    with darkey.handed(ctx.settings["ENCRYPTION_KEY"]) as key:
        tested = {}
        for archive, master in chains:
            if no_dar:
                names += (master.names() if master else []) + archive.names()
                continue
            good = all([v.test_archive(x, key, tested) for x in (master, archive) if x is not None])
            names += (master.names() if master else []) + archive.names()
            target = targets.get(archive.prefix)
            if good and a.sample and target and os.path.isdir(target):
                v.sample(archive.prefix, [x for x in (master, archive) if x is not None], target,
                         key, a.sample)
        for dump in dumps:
            v.test_dump(dump)
            names.append(dump.name)
    v.compare_copies(sorted(set(names)))


def expected(ctx, cat, v, day, chains, dumps):
    """What the run of ``day`` should have made and did not: an archive of
    each existing FS_TARGETS directory, a dump of each database named in
    MYSQL_TARGETS / POSTGRESQL_TARGETS (__ALL__ aside: what it covers varies),
    for the backup modules that are enabled."""
    enabled = ctx.settings["BACKUP_MODULES"]
    when = day_text(day)
    if "filesystem" in enabled:
        made = {archive.prefix for archive, _ in chains}
        for target in ctx.settings["FS_TARGETS"]:
            if os.path.isdir(target) and target_prefix(cat.host, target) not in made:
                v.fail("%s: no archive of it dated %s (%s-%s.*.dar)"
                       % (target, when, target_prefix(cat.host, target), when), "expected", target)
    for engine, key in (("mysql", "MYSQL_TARGETS"), ("postgresql", "POSTGRESQL_TARGETS")):
        if engine not in enabled:
            continue
        made = {d.db for d in dumps if d.engine == engine}
        for database in ctx.settings[key]:
            if database != ALL and file_part(database) not in made:
                v.fail("%s database %s: no dump of it dated %s" % (engine, database, when),
                       "expected", database)


def report(ctx, failures, notes, checked=None, day=None):
    for note in notes:
        log.info("%s %s" % (TAG, note))
    if failures:
        lines = ["packrat verify%s: %d problem(s):" % (
            " of the run of %s" % day_text(day) if day else "", len(failures))]
        lines += failures
        log.error(lines[0])
        for line in failures:
            log.error("  " + line)
        mail.failure(ctx.settings, lines, ctx.dry_run)
        return 1
    checked = checked or {}
    log.info("verify %s: all good: %d archive(s) tested, %d dump(s) decoded, %d remote "
             "cop%s compared" % (day_text(day), checked.get("archives", 0),
                                 checked.get("dumps", 0), checked.get("copies", 0),
                                 "y" if checked.get("copies", 0) == 1 else "ies"))
    return 0
