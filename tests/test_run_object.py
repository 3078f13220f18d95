"""One run object, no module globals: getopt parsing, the masking filter on
every handler, two runs in one process sharing nothing, one dry-run flag."""
import contextlib
import io
import logging

import pytest

from pypackrat import cli, execute, log, mail
from pypackrat.context import Context, Options
from pypackrat.core import secrets
from tests.conftest import PackratEnv

pytestmark = pytest.mark.fast


# -- getopt: the original's flags ---------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["-vnP"], dict(verbose=True, dry_run=True, purge_only=True, action=None)),
    (["-p10", "-r", "3"], dict(purge_local=10, purge_remote=3)),
    (["-cFILE", "check"], dict(config="FILE", action="check")),
    (["-c", "-v"], dict(config="-v", verbose=False)),  # an option's argument, even with a dash
    (["-vc", "F", "list", "--local"], dict(verbose=True, config="F", action="list", args=["--local"])),
    (["-m", "a,b c", "-u", ""], dict(backup_modules=["a", "b", "c"], upload_modules=[])),
    (["-U", "20261101"], dict(upload_date="20261101")),
    (["--", "verify", "-n"], dict(action="verify", args=["-n"], dry_run=False)),
    (["-v", "--", "-n"], None),  # after --, -n is an action word: unknown
    (["restore", "-v"], dict(action="restore", args=["-v"], verbose=False)),
    (["-h", "-p", "abc"], dict(action="help")),  # help first: the rest is not read
    (["-v", "-h", "-x"], dict(action="help")),  # as getopts: one option at a time
    (["--help", "-c"], dict(action="help")),
    (["--help"], dict(action="help")),
    (["-v", "--version"], dict(action="version")),
    ([], dict(action=None, args=[])),
])
def test_flags(argv, expected):
    if expected is None:
        with pytest.raises(cli.UsageError, match="unknown action: -n"):
            cli.parse(argv)
        return
    opts = cli.parse(argv)
    for name, value in expected.items():
        assert getattr(opts, name) == value, name


@pytest.mark.parametrize("argv, message", [
    (["-x"], "illegal option -- x"),
    (["-vx"], "illegal option -- x"),
    (["--frobnicate"], "illegal option -- frobnicate"),
    (["-c"], "option requires an argument -- c"),
    (["-vU"], "option requires an argument -- U"),
    (["-x", "-h"], "illegal option -- x"),
    (["-p", "abc", "-h", "-x"], "-p needs a whole number of days"),
    (["-c", "F", "-v", "-y"], "illegal option -- y"),
    (["-p", "abc"], "-p needs a whole number of days"),
    (["-U", "2026-11-01"], "YYYYMMDD"),
    (["run"], "unknown action: run"),  # the nightly run has no action word
])
def test_bad_flags(argv, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse(argv)


def test_usage_error_exits_1_with_usage_on_stderr():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["-x"]) == 1
    assert err.getvalue().startswith("packrat: illegal option -- x\nUsage: packrat")
    assert out.getvalue() == ""


# -- the masking filter on every handler ------------------------------------------------

def _captured(function):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        function()
    return out.getvalue(), err.getvalue()


def test_a_secret_logged_at_any_level_reaches_no_stream():
    output = log.setup(verbose=True)
    log.add_secret("hunter2-s3cret")

    def speak():
        log.verbose("verbose hunter2-s3cret")
        log.info("info hunter2-s3cret")
        log.warn("warn hunter2-s3cret")
        log.error("error hunter2-s3cret")
        # straight through the logger, a child logger, and %-arguments
        logging.getLogger(log.LOGGER).critical("critical %s", "hunter2-s3cret")
        logging.getLogger(log.LOGGER + ".child").warning("child hunter2-s3cret")
    out, err = _captured(speak)
    everything = out + err + "\n".join(output.transcript.lines)
    assert "hunter2" not in everything
    assert out == "verbose ****\ninfo ****\n"
    assert err == "warn ****\nerror ****\ncritical ****\nchild ****\n"
    assert output.transcript.lines == ["verbose ****", "info ****", "warn ****", "error ****",
                                       "critical ****", "child ****"]
    for handler in output.handlers:
        assert output.filter in handler.filters
    assert output.filter in logging.getLogger(log.LOGGER).filters


def test_control_characters_are_shown_not_sent():
    log.setup()
    out, _ = _captured(lambda: log.info("name\x1b[2Jcleared"))
    assert out == "name\\x1b[2Jcleared\n"


def test_the_filter_is_in_place_before_the_first_line():
    """An output set up and given a secret before anything prints: the
    secret of a configuration is known before its first warning."""
    output = log.Output(secrets=secrets.Secrets(["early-pw"]))
    assert output.installed() is False
    output.install()
    _, err = _captured(lambda: log.warn("Warning: early-pw"))
    assert err == "Warning: ****\n"


# -- two runs in one process share nothing -------------------------------------------------

class _Settings(dict):
    path = "/etc/packrat.conf"


def _settings():
    return _Settings(HOSTNAME="h", BACKUP_DIR="/nonexistent")


def _options(**flags):
    opts = Options()
    for name, value in flags.items():
        setattr(opts, name, value)
    return opts


def test_two_runs_share_no_secret_verbosity_or_transcript():
    first = Context(_settings(), _options(verbose=True, dry_run=True))
    log.add_secret("first-run-pw")
    out1, _ = _captured(lambda: log.verbose("step first-run-pw"))
    assert out1 == "step ****\n" and log.is_verbose()

    second = Context(_settings(), _options())
    assert second.output is not first.output
    out2, _ = _captured(lambda: (log.verbose("hidden"), log.info("said first-run-pw")))
    assert out2 == "said first-run-pw\n"  # not verbose, and the first run's secret is not this run's
    assert log.is_verbose() is False
    assert "first-run-pw" in first.output.secrets and "first-run-pw" not in second.output.secrets
    assert first.output.transcript.lines == ["step ****"]
    assert second.output.transcript.lines == ["said first-run-pw"] == log.transcript()
    assert first.dry_run is True and second.dry_run is False


def test_a_config_load_starts_a_fresh_output(penv_fast):
    from pypackrat import config
    log.setup(verbose=True)
    log.add_secret("left-over")
    log.info("old line")
    settings = config.load(str(penv_fast))
    assert settings.output is log.current()
    assert "old line" not in log.transcript() and log.is_verbose() is False
    assert "left-over" not in settings.output.secrets
    assert "db-pw-42" in settings.output.secrets  # MYSQL_PASS of the file
    ctx = Context(settings, _options(verbose=True))
    assert ctx.output is settings.output and log.is_verbose()


@pytest.fixture
def penv_fast(tmp_path):
    """A config file holding a secret (no server: no SMTP either)."""
    env = PackratEnv(tmp_path)
    env.write(MYSQL_PASS="db-pw-42")
    env.config_path.chmod(0o600)  # no warning about its mode
    return env.config_path


# -- one dry-run flag --------------------------------------------------------------------

def test_execute_has_no_global_dry_run():
    assert not hasattr(execute, "set_dry_run") and not hasattr(execute, "dry_run")


def test_dry_run_is_per_call(tmp_path):
    mark = tmp_path / "made"
    log.setup()
    out, _ = _captured(lambda: execute.run(["touch", str(mark)], dry_run=True))
    assert out == "[dry run] would run: touch %s\n" % mark and not mark.exists()
    assert execute.run(["touch", str(mark)]).code == 0 and mark.exists()
    out, _ = _captured(lambda: execute.pipeline([["echo", "x"], ["cat"]], str(tmp_path / "p"),
                                                dry_run=True))
    assert out.startswith("[dry run] would run: echo x | cat > ") and not (tmp_path / "p").exists()


def test_mail_in_a_dry_run_is_shown_not_sent(monkeypatch):
    log.setup()
    sent = []
    monkeypatch.setattr(mail, "_local", lambda *a: sent.append(a))
    settings = {"ADMIN_EMAIL": "ops@example.org", "MAIL_FROM": "", "HOSTNAME": "h", "SMTP_HOST": ""}
    out, _ = _captured(lambda: mail.failure(settings, ["it broke"], dry_run=True))
    assert out == "[dry run] would mail ops@example.org: Packrat: Error\n" and sent == []
    mail.failure(settings, ["it broke"])
    assert len(sent) == 1
