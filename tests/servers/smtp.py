"""An SMTP server (aiosmtpd) that keeps the messages it receives."""
import email
import threading

from tests.servers import free_port


class SmtpServer:
    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.lock = threading.Lock()
        server = self

        class Handler:
            async def handle_DATA(self, srv, session, envelope):
                msg = email.message_from_bytes(envelope.original_content or envelope.content)
                with server.lock:
                    server.messages.append(msg)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def clear(self):
        with self.lock:
            self.messages.clear()

    def bodies(self):
        with self.lock:
            return [m.get_payload(decode=True).decode("utf-8", "replace") for m in self.messages]
