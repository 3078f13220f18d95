"""A SIGTERM's clean-up is bounded: should it hang (here the mail server
accepts the connection and never says a word, so the failure mail would wait
for smtplib's 60 s timeout), packrat exits anyway with 143 once
PACKRAT_STOP_GRACE seconds have passed, and the programs it started die with
it. A second SIGTERM during the clean-up does not break it off."""
import os
import signal
import socket
import subprocess
import time

from tests.conftest import PACKRAT, processes
from tests.test_overlap import TODAY, bash_module


def start_slow_night(penv, smtp_port, grace, tmp_path):
    """packrat, its only backup module asleep (a child of its own: `sleep`),
    mail to a server that never answers; returns the process once the module runs."""
    marker = tmp_path / "module-started"
    bash_module(penv, "slow", '  touch "%s"\n  sleep %s &\n  wait' % (marker, SLEEP))
    penv.write(BACKUP_MODULES=["slow"], SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_port)
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PACKRAT_DATE=TODAY, PACKRAT_STOP_GRACE=str(grace)))
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


SLEEP = "297.25"  # the module's child: a duration no other test sleeps


def sleepers():
    """The module's `sleep` processes still alive."""
    return processes(lambda argv: argv[:2] == [b"sleep", SLEEP.encode()])


def test_a_hung_clean_up_after_sigterm_ends_after_the_grace(penv, tmp_path):
    mute = socket.socket()  # listens, never accepts: a connection succeeds, no banner ever comes
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    try:
        proc = start_slow_night(penv, mute.getsockname()[1], 2, tmp_path)
        deadline = time.monotonic() + 10
        while not sleepers():  # the module's child
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # a second one (systemd, an impatient admin): ignored
        try:
            out, err = proc.communicate(timeout=40)  # without the watchdog: the mail's 60 s
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        mute.close()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "the clean-up took more than 2 s, given up" in err
    deadline = time.monotonic() + 10
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleepers() == []
    assert os.listdir(penv.backup_dir) == []


def test_a_clean_up_that_ends_in_time_is_not_cut(penv, smtp, tmp_path):
    """The usual stop: the mail goes out, no "given up" line."""
    proc = start_slow_night(penv, smtp.port, 30, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "given up" not in err
    assert len(smtp.messages) == 1 and "stopped (SIGTERM)" in smtp.bodies()[0]
