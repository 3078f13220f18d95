"""A SIGTERM that a thread other than the main one catches still stops the
run. The kernel gives a signal for the process to any thread that does not
block it: another thread while the main one blocks it (execute._start, over
a fork), or the thread whose id it was sent to. Python runs the handler in
the main thread only; before the relay (cli._relay_to_main), the main
thread, asleep in its wait for dar, never ran it, and the run went on as if
no SIGTERM had come. Real packrat, real dar behind a wrapper that stalls."""
import os
import signal
import subprocess
import time

from tests.conftest import PACKRAT
from tests.test_overlap import TODAY
from tests.test_streaming import SLOW_DAR, fake_dar, tree

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _threads_taking_sigterm(pid):
    """The ids of the threads of ``pid``, but the main one, that do not block SIGTERM."""
    found = []
    for tid in os.listdir("/proc/%d/task" % pid):
        if int(tid) == pid:
            continue
        with open("/proc/%d/task/%s/status" % (pid, tid)) as fh:
            blocked = next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
        if not blocked & SIGTERM_BIT:
            found.append(int(tid))
    return found


def _stalled_night(penv, tmp_path, ready, stop, **settings):
    """packrat with dar stalled after 1.5 MB; once ``ready()``, ``stop(proc)``
    signals it; it must then exit 143 within 30 s (else it is killed).
    Returns its stderr."""
    path = fake_dar(tmp_path, SLOW_DAR)
    penv.write(BACKUP_MODULES=["filesystem"], FS_COMPRESSION="none", **settings)
    proc = subprocess.Popen([PACKRAT, "-c", str(penv.config_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PACKRAT_DATE=TODAY, PATH=path))
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        stop(proc)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    return err


def test_a_sigterm_caught_by_another_thread_stops_the_run(penv, tmp_path):
    nas = tmp_path / "nas"
    nas.mkdir()

    def to_another_thread(proc):
        # dar has stalled; the main thread waits for it, the upload thread reads the slice
        others = _threads_taking_sigterm(proc.pid)
        assert others, "no thread but the main one takes SIGTERM"
        os.kill(others[0], signal.SIGTERM)  # to that thread, not the main one

    err = _stalled_night(penv, tmp_path,
                         lambda: any(n.endswith(".partial") and (nas / n).stat().st_size for n in os.listdir(nas)),
                         to_another_thread, FS_TARGETS=[tree(tmp_path, "src", 3 << 20)], FS_SLICE_SIZE="1M",
                         UPLOAD_MODULES=["local"], LOCAL_DIR=str(nas))
    assert "Traceback" not in err
    assert len(penv.mails()) == 1 and "stopped (SIGTERM)" in penv.smtp.bodies()[0]
    assert os.listdir(penv.backup_dir) == []
    assert os.listdir(nas) == []


def test_the_relay_thread_itself_never_takes_sigterm(penv, tmp_path):
    """The relay blocks SIGTERM for itself: it is never where the signal lands."""
    def check_then_stop(proc):
        # without upload modules, the relay is the only thread but sh's own (blocked over the fork)
        assert _threads_taking_sigterm(proc.pid) == []
        proc.send_signal(signal.SIGTERM)

    _stalled_night(penv, tmp_path, lambda: any(n.startswith(".packrat-tmp-") for n in os.listdir(penv.backup_dir)),
                   check_then_stop, FS_TARGETS=[tree(tmp_path, "src", 1 << 20)], UPLOAD_MODULES=[])


def test_a_storm_of_sigterms_ends_the_run_once(penv, tmp_path):
    """SIGTERM after SIGTERM, the first caught while the handler starts the
    stop's watchdog: every later one finds the stop under way (the handler
    marks it before anything else) and returns; the run ends once, 143,
    without a RecursionError's traceback (which a relay that sent the signal
    again at once, while the handler had not yet marked it, made under load)."""
    def storm(proc):  # until the stop has removed the archive's temporary (bounded)
        deadline = time.monotonic() + 20
        while temporary() and proc.poll() is None and time.monotonic() < deadline:
            for _ in range(50):
                os.kill(proc.pid, signal.SIGTERM)

    def temporary():
        return any(n.startswith(".packrat-tmp-") for n in os.listdir(penv.backup_dir))

    err = _stalled_night(penv, tmp_path, temporary, storm, FS_TARGETS=[tree(tmp_path, "src", 1 << 20)], UPLOAD_MODULES=[])
    assert "Traceback" not in err and "RecursionError" not in err, err
    assert err.count("stopped (SIGTERM)") == 1, err
    assert len(penv.mails()) == 1 and "stopped (SIGTERM)" in penv.smtp.bodies()[0]
    assert os.listdir(penv.backup_dir) == []
