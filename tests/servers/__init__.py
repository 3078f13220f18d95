"""Real servers for the tests, each started on 127.0.0.1 on a free port in a
temporary directory, and stopped after. One file per server."""
import os
import shutil
import socket
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30.0, proc=None):
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %ss" % (port, timeout))


def serve(server):
    """The body of a server fixture: start ``server``, yield it, stop it
    (also when the tests using it fail)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


_SHARED = {}


def shared(key, start, renew):
    """The body of a session-scoped server fixture that test modules import.
    pytest makes an instance of such a fixture for each module that imports
    it: each would start a server of its own and keep it until the session
    ends. Here the first instance starts the server (``start()`` returns it
    started) and stops it at the end (the first set up, the last torn down);
    each later module gets the same server after ``renew(server)``, which
    makes it what a server of the module's own would be (what earlier
    modules made in it removed)."""
    server = _SHARED.get(key)
    if server is not None:
        renew(server)
        yield server
        return
    server = start()
    _SHARED[key] = server
    try:
        yield server
    finally:
        del _SHARED[key]
        server.stop()


def empty_dir(directory):
    """Remove everything in ``directory`` (a server's files between tests),
    following no symbolic link."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
