"""A TCP proxy on 127.0.0.1 on a free port, in front of a real server: it
counts the connections clients open and can cut every open one at once
(a dropped link in the middle of a transfer). ThrottleProxy adds a slow
link: a rate per direction (bench/night, tests/test_overlap_stop.py)."""
import socket
import threading
import time

from tests.servers import free_port


class TcpProxy:
    def __init__(self, target_port, target_host="127.0.0.1", pattern=None):
        self.target = (target_host, target_port)
        self.pattern = pattern  # bytes: count how often clients send it
        self.seen = 0
        self.port = free_port()
        self.accepted = 0
        self.pairs = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.running = True
        self.thread = threading.Thread(target=self._accept, name="proxy", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.pairs.append((client, upstream))
            for a, b, watch in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, watch), daemon=True).start()

    def _pump(self, src, dst, watch):
        """One direction of one connection (``watch``: client to server)."""
        self._prepare(src, dst)
        state = {"tail": b""}
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                self._forward(dst, data, watch, state)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _prepare(self, src, dst):
        """Set up a connection's sockets before its bytes flow (nothing here)."""

    def _forward(self, dst, data, watch, state):
        """Pass ``data`` on, counting the pattern in what clients send."""
        if watch and self.pattern:
            chunk = state["tail"] + data
            with self.lock:
                self.seen += chunk.count(self.pattern)
            state["tail"] = data[-(len(self.pattern) - 1):] if len(self.pattern) > 1 else b""
        dst.sendall(data)

    def cut(self):
        """Drop every open connection (both sides see the link die)."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def reset(self):
        with self.lock:
            self.accepted = 0
            self.seen = 0

    def stop(self):
        self.running = False
        self.listener.close()
        self.cut()


# How far in the past a chunk's slot may start (seconds). A real link with
# bytes queued sends them back to back; the proxy, between one chunk's slot
# and the next (sendall, recv, the interpreter, a late wake from sleep),
# spends time no chunk is on the wire for, and with slots starting at "now"
# that time is lost: one stream got 85-90 % of the rate. Crediting up to
# SLACK keeps a busy link busy; an idle one saves up at most SLACK * rate
# bytes (100 KiB at 20 MiB/s), not a burst.
SLACK = 0.005


class Pace:
    """A shared rate for one direction of one link: each chunk takes its
    slot on a virtual clock, whatever the connection. A slot starts where
    the previous one ended, but never more than SLACK before now: the
    proxy's own work between chunks does not slow a busy link, and an idle
    link saves no more credit than SLACK * rate bytes."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.lock = threading.Lock()
        self.next = 0.0

    def take(self, n):
        with self.lock:
            now = time.monotonic()
            start = max(self.next, now - SLACK)
            self.next = start + n / self.rate
            wait = self.next - now
        if wait > 0:
            time.sleep(wait)


class ThrottleProxy(TcpProxy):
    """TcpProxy with a rate per direction (bytes a second) shared by all
    its connections (one WAN link to one remote); ``carried``: the bytes
    it has passed from clients to the server.

    ``buffer``: the socket buffers of its side of each connection. On
    loopback a client's kernel takes megabytes ahead of a slow reader (its
    send buffer grows with the 64 KiB segments of lo); ``mss`` (1460: an
    Ethernet link's) and a small ``buffer`` keep that to what a real slow
    link lets a sender queue, some tens of KiB."""

    def __init__(self, target_port, rate, mss=None, buffer=256 << 10):
        super().__init__(target_port)
        self.up, self.down = Pace(rate), Pace(rate)
        self.buffer = buffer
        self.carried = 0
        if mss:  # before any client connects: the accepted sockets inherit both
            self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)

    def _prepare(self, src, dst):
        try:
            # small buffers: the link, not the kernel's loopback buffers, sets the pace
            src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer)
            dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer)
        except OSError:
            pass

    def _forward(self, dst, data, watch, state):
        (self.up if watch else self.down).take(len(data))
        super()._forward(dst, data, watch, state)
        if watch:
            with self.lock:
                self.carried += len(data)
