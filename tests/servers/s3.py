"""An S3 API server: moto's server mode (ThreadedMotoServer) on 127.0.0.1 on
a free port, reached over HTTP through S3_ENDPOINT_URL, behind a TCP proxy
that counts client connections and can cut them. Moto keeps objects in
memory: keep test objects small; the server is restarted per test module.

Fixtures: ``s3_server`` (one per test module) and ``s3d`` (per test: the
bucket emptied, counters reset). ``s3d.objects()`` reads the bucket from
moto's backend directly, ``s3d.inject(key, data)`` writes to it without a
request (fast set-up of many objects).
"""
import contextlib
import logging

import pytest

from tests.servers import free_port, serve, wait_for_port
from tests.servers.proxy import TcpProxy, ThrottleProxy

ACCESS_KEY, SECRET_KEY = "AKIAPACKRATTEST00001", "packrat-test-secret-key"
BUCKET, PREFIX = "packrat-test", "nightly"


class S3Server:
    host = "127.0.0.1"
    bucket, prefix = BUCKET, PREFIX

    def __init__(self):
        self.port = free_port()
        self.server = None
        self.proxy = None

    def start(self):
        from moto.server import ThreadedMotoServer
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        wait_for_port(self.port)
        # packrat's s3 module opens a client with one HeadBucket request
        self.proxy = TcpProxy(self.port, pattern=b"HEAD /%s HTTP/" % self.bucket.encode()).start()
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        if self.server:
            self.server.stop()
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.backends import get_backend
            get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"].reset()

    @property
    def url(self):
        """The endpoint packrat is given: through the proxy."""
        return "http://%s:%d" % (self.host, self.proxy.port)

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url="http://%s:%d" % (self.host, self.port),
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            region_name="us-east-1")

    def settings(self, **over):
        out = {"S3_ENDPOINT_URL": self.url, "S3_BUCKET": "%s/%s" % (self.bucket, self.prefix),
               "S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY, "S3_REGION": "us-east-1"}
        out.update(over)
        return out

    # -- moto's backend, in this process ------------------------------------------
    def _backend(self):
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID
        return get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]

    def objects(self):
        """key -> bytes of every object in the bucket."""
        keys = self._backend().buckets[self.bucket].keys
        return {k: keys[k].value for k in list(keys.keys())}

    def names(self):
        """Object names under the prefix, without it."""
        p = self.prefix + "/"
        return sorted(k[len(p):] for k in self.objects() if k.startswith(p))

    def inject(self, key, data=b"x"):
        self._backend().put_object(self.bucket, key, data)

    @contextlib.contextmanager
    def authenticated(self):
        """Make moto check every request's signature against its IAM users
        (it has none here: every key is refused)."""
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin
        before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        try:
            yield
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = before

    def uploads_in_progress(self):
        """The keys of the bucket's multipart uploads begun and neither
        completed nor aborted (moto's ListMultipartUploads)."""
        answer = self.client().list_multipart_uploads(Bucket=self.bucket)
        return [upload["Key"] for upload in answer.get("Uploads", [])]

    @contextlib.contextmanager
    def slow_link(self, rate, **options):
        """A ThrottleProxy of ``rate`` bytes a second in front of moto;
        yields (the proxy, the S3_ENDPOINT_URL through it)."""
        proxy = ThrottleProxy(self.port, rate, **options).start()
        try:
            yield proxy, "http://%s:%d" % (self.host, proxy.port)
        finally:
            proxy.stop()

    def connections(self):
        """Client sessions opened (HeadBucket requests): moto's server closes
        the TCP connection after each response, so TCP connections count
        requests, not sessions (``proxy.accepted``)."""
        return self.proxy.seen

    def cut(self):
        self.proxy.cut()

    def reset(self):
        self.proxy.reset()
        client = self.client()
        keys = list(self.objects())
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})


@pytest.fixture(scope="module")
def s3_server():
    yield from serve(S3Server())


@pytest.fixture
def s3d(s3_server):
    s3_server.reset()
    yield s3_server
