"""Starting programs from many threads at once never leaves a child stuck
between fork and exec (a full run saw it twice: a forked child of packrat
waiting on a lock for good, and the packrat that waited for it).

sh forks and runs Python in the child until the exec. Two threads starting
commands at once could leave the garbage collector on at one's fork (sh
switches it off and on for the whole process): a collection in the child
then ran finalizers, and one taking a lock another thread held at the fork
never returned. A signal with a Python handler (packrat's SIGTERM) could
run that handler in the child. subprocess.Popen is given no preexec_fn:
setpriv asks for the parent-death signal, with no Python in the child."""
import ast
import errno
import gc
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pypackrat import execute
from tests.conftest import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
THREADS = 8


def stuck_children():
    """This process's children that are still Python (forked, never exec'd)."""
    me, python = os.getpid(), os.path.realpath(sys.executable)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid == me and os.path.realpath(os.readlink("/proc/%s/exe" % pid)) == python:
                found.append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return found


class LockingGarbage:
    """Garbage in a cycle whose finalizer takes a lock another thread holds
    most of the time (as a paramiko channel's close takes the channel's)."""
    lock = threading.Lock()

    def __init__(self):
        self.me = self

    def __del__(self):
        with self.lock:
            pass


def test_commands_from_eight_threads_at_once_all_finish(monkeypatch):
    """8 threads start commands and pipelines, round after round, while
    another holds a lock most of the time and another leaves garbage whose
    finalizers take it, the collector running often. Every child must
    exec: each thread ends within its bound, and none found the collector
    on in its child (probed where sh's child calls os.setpgid)."""
    probe_read, probe_write = os.pipe()
    real_setpgid = os.setpgid

    def setpgid(*args):  # in the child (sh's new process group), before our set-up
        os.write(probe_write, b"E" if gc.isenabled() else b"D")
        return real_setpgid(*args)
    monkeypatch.setattr(os, "setpgid", setpgid)
    stop = threading.Event()

    def holder():
        while not stop.is_set():
            with LockingGarbage.lock:
                time.sleep(0.002)
            time.sleep(0.0003)

    def litter():
        while not stop.is_set():
            for _ in range(5):
                LockingGarbage()
            time.sleep(0.005)

    rounds, done, errors = 36, [0] * THREADS, []

    def starter(k):
        try:
            for i in range(rounds):
                if i % 3 == 2:
                    execute.pipeline([["echo", "p%d" % k], ["cat"]], "/dev/null")
                else:
                    assert execute.run(["echo", "r%d-%d" % (k, i)], quiet=True).out == "r%d-%d\n" % (k, i)
                done[k] += 1
        except BaseException as exc:  # noqa: B036 -- reported by the test
            errors.append(repr(exc))

    threshold = gc.get_threshold()
    gc.set_threshold(50, 10, 10)
    helpers = [threading.Thread(target=f, daemon=True) for f in (holder, litter)]
    starters = [threading.Thread(target=starter, args=(k,), daemon=True) for k in range(THREADS)]
    stuck = []
    try:
        for t in helpers + starters:
            t.start()
        deadline = time.monotonic() + 60
        for t in starters:
            t.join(max(0.1, deadline - time.monotonic()))
        stuck = stuck_children()
    finally:
        stop.set()
        gc.set_threshold(*threshold)
        for pid in stuck:  # let the waiting threads go, then fail
            os.kill(pid, signal.SIGKILL)
        for t in starters + helpers:
            t.join(10)
        monkeypatch.undo()
        os.close(probe_write)
    probes = b""
    while True:
        chunk = os.read(probe_read, 65536)
        if not chunk:
            break
        probes += chunk
    os.close(probe_read)
    assert stuck == [], "children stuck between fork and exec: %s" % stuck
    assert errors == [] and done == [rounds] * THREADS, (errors, done)
    assert len(probes) == THREADS * (rounds + rounds // 3)
    assert probes.count(b"E") == 0, "%d of %d children forked with the collector on" % (
        probes.count(b"E"), len(probes))


@pytest.mark.fast
def test_a_signal_before_the_exec_never_runs_a_python_handler_in_the_child(monkeypatch):
    """A signal with a Python handler reaching the child before its exec
    (here it sends itself one where sh calls os.setpgid) acts as it would
    on the program: its default (SIGUSR1: death). The handler, packrat's
    code, never runs in the child (SIGTERM's raises there)."""
    ran_in = []
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: ran_in.append(os.getpid()))
    report_read, report_write = os.pipe()
    real_setpgid = os.setpgid

    def setpgid(*args):
        os.kill(os.getpid(), signal.SIGUSR1)
        if ran_in and ran_in[-1] == os.getpid():  # the handler ran here, in the child
            os.write(report_write, b"handler ran in the child")
        return real_setpgid(*args)
    monkeypatch.setattr(os, "setpgid", setpgid)
    try:
        with pytest.raises(execute.CommandFailed) as failed:
            execute.run(["true"], quiet=True)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGUSR1, previous)
        os.close(report_write)
    report = os.read(report_read, 4096)
    os.close(report_read)
    assert report == b""
    assert failed.value.code == -signal.SIGUSR1
    assert ran_in == []
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # as it was in this thread


@pytest.mark.fast
def test_no_preexec_fn_and_no_fork_in_packrat():
    """Popen with a preexec_fn runs Python in the child of a threaded
    program: packrat passes none (execute.popen asks setpriv instead)."""
    offenders = []
    for path in sorted((ROOT / "pypackrat").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "preexec_fn":
                offenders.append("%s:%d preexec_fn" % (path.relative_to(ROOT), node.value.lineno))
            if (isinstance(node, ast.Attribute) and node.attr in ("fork", "forkpty")
                    and isinstance(node.value, ast.Name) and node.value.id in ("os", "pty")):
                offenders.append("%s:%d %s.%s" % (path.relative_to(ROOT), node.lineno, node.value.id, node.attr))
    assert offenders == []


@pytest.mark.fast
def test_popen_raises_what_popen_raises_for_a_program_that_cannot_run(tmp_path):
    """setpriv and the shell in front change nothing for the caller: a
    missing program, one not executable, one that is no program (no #!)
    raise the OSError subprocess.Popen raises (hooks: "cannot run")."""
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")
    plain.chmod(0o755)
    unexecutable = tmp_path / "unexecutable"
    unexecutable.write_text("#!/bin/sh\n")
    unexecutable.chmod(0o644)
    cases = [[str(tmp_path / "absent")], ["packrat-no-such-program"], [str(unexecutable)], [str(plain)],
             [str(tmp_path)]]
    for argv in cases:
        with pytest.raises(OSError) as expected:
            subprocess.Popen(argv, stdout=subprocess.DEVNULL).wait()
        with pytest.raises(OSError) as got:
            execute.popen(argv, stdout=subprocess.DEVNULL).wait()
        assert (type(got.value), got.value.errno) == (type(expected.value), expected.value.errno), argv
        assert got.value.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC), argv
    proc = execute.popen(["sh", "-c", 'echo "$0 $1"', "zero", "one"], stdout=subprocess.PIPE)
    assert proc.communicate()[0] == b"zero one\n" and proc.returncode == 0


@pytest.mark.fast
def test_a_child_whose_packrat_died_before_its_request_ends_at_once():
    """The shell after setpriv execs the program only while packrat (the
    PID it is given) is still its parent: had packrat died before setpriv
    asked for the signal, the child would have outlived it."""
    setpriv = execute._setpriv()
    assert setpriv, "setpriv (util-linux) with --pdeathsig is needed"
    argv = [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", execute._ORPHAN_CHECK, "packrat-child"]
    assert subprocess.run(argv + ["1", "true"]).returncode == -signal.SIGKILL
    assert subprocess.run(argv + [str(os.getpid()), "true"]).returncode == 0


PARENT = textwrap.dedent("""
    import sys, threading, time
    sys.path.insert(0, %r)
    from pypackrat import execute
    how = sys.argv[1]
    def start():
        if how == "popen":
            execute.popen(["sleep", sys.argv[2]])
            time.sleep(600)  # the signal comes when the thread that started it ends
        else:
            execute.run(["sleep", sys.argv[2]], quiet=True)
    t = threading.Thread(target=start, daemon=True)  # a thread starts it, as the uploads do
    t.start()
    time.sleep(600)
""") % str(ROOT)


@pytest.mark.parametrize("how", ["popen", "run"])
def test_the_child_dies_with_a_killed_packrat(how):
    """SIGKILL to the process that started it (through execute.popen:
    setpriv's --pdeathsig; through run: the child's prctl) kills the child."""
    mark = "%d.%d" % (4000 + (os.getpid() % 1000), 1 if how == "popen" else 2)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, how, mark])
    try:
        deadline = time.monotonic() + 30
        while not sleeping(mark):
            assert time.monotonic() < deadline and parent.poll() is None, "sleep %s did not start" % mark
            time.sleep(0.02)
        kids = sleeping(mark)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while sleeping(mark) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = sleeping(mark)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert kids and left == []


def sleeping(mark):
    """The pids of `sleep MARK` processes (not zombies)."""
    return processes(lambda argv: len(argv) > 1 and os.path.basename(argv[0]) == b"sleep"
                     and argv[1] == mark.encode(), alive=True)
