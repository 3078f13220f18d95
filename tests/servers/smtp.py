"""An SMTP server (aiosmtpd) that keeps the messages it receives."""
import email
import threading

from tests.servers import free_port


class SmtpServer:
    def __init__(self, tls_cert=None, tls_key=None, users=None):
        """tls_cert/tls_key: offer STARTTLS; users: {name: password}, then
        AUTH is required (over TLS)."""
        from aiosmtpd.controller import Controller

        self.messages = []
        self.envelopes = []  # each message's RCPT TO addresses
        self.lock = threading.Lock()
        server = self

        class Handler:
            async def handle_DATA(self, srv, session, envelope):
                msg = email.message_from_bytes(envelope.original_content or envelope.content)
                with server.lock:
                    server.messages.append(msg)
                    server.envelopes.append(list(envelope.rcpt_tos))
                return "250 OK"

        self.port = free_port()
        options = {}
        if tls_cert:
            import ssl
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls_cert, tls_key)
            options.update(tls_context=context, require_starttls=True)
        if users:
            from aiosmtpd.smtp import AuthResult

            def authenticator(srv, session, envelope, mechanism, auth_data):
                ok = users.get(auth_data.login.decode()) == auth_data.password.decode()
                return AuthResult(success=ok)
            options.update(authenticator=authenticator, auth_required=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", **options)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def clear(self):
        with self.lock:
            self.messages.clear()
            self.envelopes.clear()

    def bodies(self):
        with self.lock:
            return [m.get_payload(decode=True).decode("utf-8", "replace") for m in self.messages]
