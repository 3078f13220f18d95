"""What one run knows: settings, options, the run's date and host name,
whether it is a dry run, and its output (log.Output: secrets, verbosity,
transcript). Nothing of a run lives in a module global: two runs in one
process share nothing."""
import datetime
import locale
import os
import time

from pypackrat import log
from pypackrat.errors import PackratError


class Options:
    """The command line, parsed (see cli.py)."""

    def __init__(self):
        self.config = None
        self.verbose = False
        self.purge_only = False
        self.dry_run = False
        self.purge_local = None
        self.purge_remote = None
        self.backup_modules = None
        self.upload_modules = None
        self.upload_date = None
        self.action = None
        self.args = []


def run_clock():
    """The run's moment. PACKRAT_DATE=YYYYMMDD (or YYYYMMDDHHMM) sets it for
    re-doing a missed night by hand, and for tests; otherwise now. A date
    after today is refused."""
    forced = os.environ.get("PACKRAT_DATE", "")
    if forced:
        fmt = "%Y%m%d%H%M" if len(forced) == 12 else "%Y%m%d"
        try:
            moment = datetime.datetime.strptime(forced, fmt)
        except ValueError:
            raise PackratError("PACKRAT_DATE=%r: must be YYYYMMDD or YYYYMMDDHHMM" % forced)
        today = datetime.date.today()
        if moment.date() > today:
            # a typo (20621129) would make every archive "old": refuse, purge nothing
            raise PackratError("PACKRAT_DATE=%s is after today (%s): a run date in the future is "
                               "refused (it would purge every archive); unset it or give a past date"
                               % (forced, today.strftime("%Y%m%d")))
        return moment if len(forced) == 12 else moment.replace(hour=12)
    return datetime.datetime.now()


class Context:
    """Settings, options and the run's fixed date: every module of a run
    (Python or Bash) names its files by this one day, even past midnight.

    ``dry_run`` is the run's one dry-run flag. ``output`` is the output
    config.load started for these settings (a fresh one for settings made
    otherwise), installed, with the verbosity of the options."""

    def __init__(self, settings, options, now=None):
        self.settings = settings
        self.options = options
        self.dry_run = bool(options.dry_run)
        self.output = getattr(settings, "output", None) or log.Output()
        self.output.verbose = bool(options.verbose)
        self.output.install()
        self.now = now or run_clock()
        self.today = self.now.strftime("%Y%m%d")
        try:
            locale.setlocale(locale.LC_TIME, "")
        except locale.Error:
            pass
        self.dow = self.now.strftime("%a")        # as `date +%a` (locale's)
        self.dow_c = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[self.now.weekday()]
        self.dom = self.now.strftime("%d")
        self.hostname = settings["HOSTNAME"]
        self.backup_dir = settings["BACKUP_DIR"]
        self.new_backups = []
        self.on_made = None  # set by run.nightly while the backups run: hands a file to the uploads
        # set by run.nightly where an upload module takes an archive while dar writes it
        # (core.growing): the filesystem module then makes it through dar_xform
        self.on_growing = None

    def made(self, path):
        """A backup module hands over a file as soon as it has its final
        name (each archive's slices, each dump): the uploads start on it
        while the module goes on. What a module returns without having
        handed it over is handed over when the module returns."""
        if self.on_made is not None:
            self.on_made(str(path))

    def epoch(self):
        return time.mktime(self.now.timetuple())
