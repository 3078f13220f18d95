"""A TCP proxy on 127.0.0.1 on a free port, in front of a real server: it
counts the connections clients open and can cut every open one at once
(a dropped link in the middle of a transfer)."""
import socket
import threading

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
        tail = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if watch and self.pattern:
                    chunk = tail + data
                    with self.lock:
                        self.seen += chunk.count(self.pattern)
                    tail = data[-(len(self.pattern) - 1):] if len(self.pattern) > 1 else b""
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
