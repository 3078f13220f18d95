"""Upload module ``s3``: each archive becomes the object ``NAME`` in
S3_BUCKET (``bucket`` or ``bucket/prefix``), on AWS or any S3-compatible
store (S3_ENDPOINT_URL: MinIO, Ceph, Backblaze B2, ...).

Credentials: S3_ACCESS_KEY and S3_SECRET_KEY, or, both empty, the standard
AWS chain (environment, ~/.aws, instance role). An object appears whole or
not at all, so there is no temporary name (``atomic_put``). Large files go
up in parts (boto3's TransferConfig), with a part size that keeps any file
under S3's 10,000 parts. Listings are paginated; a purge deletes 1,000 keys
a request. The size of every upload is checked, and its ETag where it is a
digest of the data (not with KMS): a single-part object's MD5, or a
multipart object's MD5 of its parts' MD5s, computed over the local file in
parts of the object's own part size.
"""
import functools
import math
import os
import re

from pypackrat import log
from pypackrat.errors import PackratError
from pypackrat.settings import Group, Setting
from pypackrat.transfer import PERMANENT, TRANSIENT, Digest, Transport

SETTINGS = Group(
    "S3 upload module",
    Setting("S3_ACCESS_KEY", secret=True,
            meaning="The access key; both keys empty: the standard AWS credential chain (environment, "
                    "~/.aws, instance role)."),
    Setting("S3_SECRET_KEY", secret=True, meaning="The secret key: set both keys, or neither."),
    Setting("S3_BUCKET", required=True, meaning="A bucket, or bucket/prefix (objects are prefix/NAME)."),
    Setting("S3_ENDPOINT_URL",
            meaning="The http(s) URL of any S3-compatible store (MinIO, Ceph, Backblaze B2...); "
                    "empty: AWS."),
    Setting("S3_REGION", meaning="The region, e.g. eu-central-1."),
    Setting("S3_STORAGE_CLASS",
            meaning="The objects' storage class, e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE (empty: "
                    "the bucket's default)."),
    Setting("S3_SSE", meaning="Server-side encryption: AES256, aws:kms, or aws:kms:KEY-ID."))

MiB = 1 << 20
MULTIPART_THRESHOLD = 8 * MiB  # boto3's own default
MIN_PART = 8 * MiB  # boto3's own default
MAX_PARTS = 10000
BATCH = 1000  # keys per DeleteObjects request
# parts in flight at once (boto3's default is 10): each costs the process
# about 3 MiB, and 4 fill a link as well on this machine (BENCHMARKS.md:
# the s3 upload against boto3's default, and bench/night's peak RSS)
CONCURRENCY = 4
# the parts of an upload made while the file is written (put_stream), whose
# size is not known before: up to 78 GiB an object (MAX_PARTS of them)
STREAM_PART = 8 * MiB
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE")


def split_bucket(value):
    bucket, _, prefix = value.strip("/").partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class _Counter:
    """The bytes moved so far, reported to ``progress`` (which raises when
    the run is being stopped): boto3's and put_stream's parts call it with
    each read's count, from their threads."""

    def __init__(self, progress):
        import threading
        self.progress, self.done, self.lock = progress, 0, threading.Lock()

    def __call__(self, n):
        with self.lock:
            self.done += n
            done = self.done
        if self.progress:
            self.progress(done)


class _OpenUpload:
    """A multipart upload whose parts are all sent, not yet completed;
    ``checksum_algorithm``: what checksum() will tell of the object once
    complete (its parts are STREAM_PART bytes), for transfer to digest the
    local file meanwhile."""

    def __init__(self, remote, key, upload_id, part_checksum):
        self.remote, self.key, self.upload_id = remote, key, upload_id
        self.part_checksum = part_checksum  # the algorithm S3 checks each part with, or None
        self.parts = {}  # number: what CompleteMultipartUpload names it by (ETag, and its checksum)
        self.checksum_algorithm = None if remote.sse.startswith("aws:kms") else MultipartETag(STREAM_PART)

    def send_part(self, client, number, body):
        """Upload part ``number`` (in a part thread, over put_stream's
        client): (number, S3's answer), for part_sent()."""
        extra = {"ChecksumAlgorithm": self.part_checksum} if self.part_checksum else {}
        return number, client.upload_part(Bucket=self.remote.bucket, Key=self.key, UploadId=self.upload_id,
                                          PartNumber=number, Body=body, ContentLength=len(body), **extra)

    def part_sent(self, number, answer):
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if self.part_checksum:
            member = "Checksum" + self.part_checksum.upper()
            if answer.get(member):  # a server without these checksums may give none
                part[member] = answer[member]
        self.parts[number] = part

    def complete(self):  # over the remote's connection of the moment (a retry may have opened another)
        self.remote._conn().complete_multipart_upload(
            Bucket=self.remote.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": [self.parts[n] for n in sorted(self.parts)]})

    def abort(self):
        self.remote._conn().abort_multipart_upload(Bucket=self.remote.bucket, Key=self.key,
                                                   UploadId=self.upload_id)


def _part_checksum(client):
    """The checksum S3 checks each part of a streamed upload with, as
    boto3's own upload_file chooses it: botocore's default (CRC32) where the
    client computes checksums whenever S3 supports them (its default; an
    S3-compatible server without them is reached with
    AWS_REQUEST_CHECKSUM_CALCULATION=when_required), else none."""
    from botocore.httpchecksum import DEFAULT_CHECKSUM_ALGORITHM
    if getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported":
        return DEFAULT_CHECKSUM_ALGORITHM
    return None


class _FileRange:
    """Bytes [start, start + length) of the open descriptor ``fd``, as a
    file botocore can read, seek back (for its checksum and its retries)
    and measure; read with pread (no shared offset), each read reported to
    ``sent``."""

    def __init__(self, fd, start, length, sent=None):
        self.fd, self.start, self.length, self.sent, self.pos = fd, start, length, sent, 0

    def __len__(self):
        return self.length

    def read(self, size=-1):
        left = self.length - self.pos
        size = left if size is None or size < 0 else min(size, left)
        data = os.pread(self.fd, size, self.start + self.pos) if size > 0 else b""
        if len(data) < size:
            raise EOFError("the file shrank while its part was sent")
        self.pos += len(data)
        if self.sent is not None and data:
            self.sent(len(data))
        return data

    def seek(self, offset, whence=os.SEEK_SET):
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.length}[whence]
        self.pos = max(0, min(self.length, base + offset))
        return self.pos

    def tell(self):
        return self.pos

    def seekable(self):
        return True

    def readable(self):
        return True


def part_size(size):
    """A part size (whole MiB, at least boto3's 8 MiB) that keeps ``size`` bytes
    under 10,000 parts, with room to spare."""
    need = math.ceil(size / (MAX_PARTS - 100) / MiB) * MiB
    return max(MIN_PART, need)


_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")  # a DNS label, as botocore wants
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\udc80-\udcff]")


def endpoint_problem(url):
    """Why ``url`` is not an http(s) URL of a host (and optional port), or None."""
    from urllib.parse import urlsplit
    if _UNSAFE.search(url):
        return "holds spaces, control characters or bytes that are not UTF-8"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return "not a URL (%s)" % exc
    if parts.scheme not in ("http", "https"):
        return "must start with https:// or http://"
    host = parts.hostname or ""
    if port == 0 or parts.username is not None or parts.query or parts.fragment:
        return "must be http(s)://HOST[:PORT][/PATH], with a port from 1 to 65535"
    if host.startswith("[") or ":" in host:
        import ipaddress
        try:
            ipaddress.IPv6Address(host.strip("[]").split("%")[0])
            return None
        except ValueError:
            return "%r is not a host name or an IP address" % host
    if not host or not all(_LABEL.fullmatch(label) for label in host.rstrip(".").split(".")):
        return "%r is not a host name or an IP address" % host
    return None


def check(settings):
    """What the declarations do not check (``settings``: a settings.View)."""
    where = settings.where
    problems = []
    if settings.valid("S3_BUCKET") and settings["S3_BUCKET"]:  # empty: SETTINGS says it is required
        bucket, prefix = split_bucket(settings["S3_BUCKET"])
        if not bucket:
            problems.append("%s: S3_BUCKET is empty, but the s3 upload module is enabled" % where("S3_BUCKET"))
        elif not re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,254}", bucket):
            problems.append("%s: S3_BUCKET=%s: %r is not a bucket name (3 or more of a-z 0-9 . -)"
                            % (where("S3_BUCKET"), settings["S3_BUCKET"], bucket))
        elif re.search(r"[\x00-\x1f\x7f\udc80-\udcff]", prefix):
            problems.append("%s: S3_BUCKET=%s: the prefix holds a control character or bytes that are "
                            "not UTF-8" % (where("S3_BUCKET"), settings["S3_BUCKET"]))
    if settings.valid("S3_ACCESS_KEY", "S3_SECRET_KEY"):
        if bool(settings["S3_ACCESS_KEY"]) != bool(settings["S3_SECRET_KEY"]):
            problems.append("%s: S3_ACCESS_KEY and S3_SECRET_KEY go together: set both, or neither "
                            "(then the AWS credential chain is used)" % where("S3_ACCESS_KEY"))
        for key in ("S3_ACCESS_KEY", "S3_SECRET_KEY"):
            if re.search(r"[\x00-\x1f\x7f\udc80-\udcff]", settings[key]):
                problems.append("%s: %s holds control characters or bytes that are not UTF-8"
                                % (where(key), key))
    if settings.valid("S3_STORAGE_CLASS"):
        storage = settings["S3_STORAGE_CLASS"]
        if storage and storage not in STORAGE_CLASSES:
            problems.append("%s: S3_STORAGE_CLASS=%s: not one of %s"
                            % (where("S3_STORAGE_CLASS"), storage, ", ".join(STORAGE_CLASSES)))
    if settings.valid("S3_SSE"):
        sse = settings["S3_SSE"]
        if sse and not (sse == "AES256" or sse == "aws:kms"
                        or (sse.startswith("aws:kms:") and not _UNSAFE.search(sse))):
            problems.append("%s: S3_SSE=%s: use AES256, aws:kms, or aws:kms:KEY-ID"
                            % (where("S3_SSE"), sse))
    if settings.valid("S3_REGION"):
        region = settings["S3_REGION"]
        if region and not _REGION.fullmatch(region):
            problems.append("%s: S3_REGION=%s: not a region name (letters, digits and '-', as us-east-1)"
                            % (where("S3_REGION"), region))
    if settings.valid("S3_ENDPOINT_URL"):
        endpoint = settings["S3_ENDPOINT_URL"]
        why = endpoint and endpoint_problem(endpoint)
        if why:
            problems.append("%s: S3_ENDPOINT_URL=%s: %s" % (where("S3_ENDPOINT_URL"), endpoint, why))
    return problems


@functools.lru_cache(maxsize=1)
def _models():
    """botocore's loader of service models, one per process: a client made
    from a new session loads them again (about 13 MiB each), and a run opens
    the remote twice (the purge, then the upload). The sessions themselves
    stay one per connection, so the credential chain is read each time."""
    import botocore.loaders
    return botocore.loaders.create_loader()


def multipart_etag(path, part):
    """The ETag S3 gives an object uploaded in parts of ``part`` bytes: the
    MD5 of the concatenated binary MD5s of the parts, then ``-N``."""
    import hashlib
    digests = []
    with open(path, "rb") as fh:
        while True:
            h = hashlib.md5()
            left = part
            while left:
                block = fh.read(min(left, MiB))
                if not block:
                    break
                h.update(block)
                left -= len(block)
            if left == part:
                break
            digests.append(h.digest())
            if left:
                break
    return "%s-%d" % (hashlib.md5(b"".join(digests)).hexdigest(), len(digests))


class MultipartETag(Digest):
    """The "algorithm" of a multipart object's checksum: a name for
    messages, and ``file_digest(path)``, the ETag of the local file cut in
    the same parts (transfer.file_digest calls it)."""

    def __new__(cls, part):
        name = "S3 multipart ETag, %s-byte parts" % part
        obj = str.__new__(cls, name)
        obj.part = part
        return obj

    def file_digest(self, path):
        return multipart_etag(path, self.part)


class Remote(Transport):
    name = "s3"
    capabilities = frozenset({"transfer", "checksum", "atomic_put", "credentials", "reconnect", "bulk_delete",
                              "stream", "threadsafe"})  # a boto3 client may be shared by threads

    def __init__(self, ctx):
        super().__init__(ctx)
        s = self.settings
        self.bucket, self.prefix = split_bucket(s["S3_BUCKET"])
        self.endpoint = s["S3_ENDPOINT_URL"] or None
        self.region = s["S3_REGION"] or None
        self.storage_class = s["S3_STORAGE_CLASS"]
        self.sse = s["S3_SSE"]
        self.client = None

    def describe(self):
        where = " at %s" % self.endpoint if self.endpoint else ""
        return "s3://%s/%s%s" % (self.bucket, self.prefix, where)

    @property
    def transient(self):
        import boto3.exceptions
        import botocore.exceptions as be
        return (OSError, EOFError, be.ConnectionError, be.HTTPClientError, be.IncompleteReadError,
                be.ResponseStreamingError, boto3.exceptions.S3UploadFailedError)

    def classify(self, exc):
        """A dropped or torn connection is transient (botocore has retried
        it already), and so is the store's own trouble (a 5xx answer, a
        SlowDown); any other refusal is final."""
        import botocore.exceptions as be
        if isinstance(exc, be.ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = str(error.get("Code", ""))
            busy = code.startswith("5") or int(status) >= 500 or code in ("SlowDown", "RequestTimeout")
            return TRANSIENT if busy else PERMANENT
        return super().classify(exc)

    def _key(self, name):
        return self.prefix + name

    # -- connection -----------------------------------------------------------
    def open(self):
        import boto3
        import botocore.config
        import botocore.session
        import botocore.exceptions as be

        s = self.settings
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=30, read_timeout=120, max_pool_connections=10)
        core = botocore.session.Session()
        core.register_component("data_loader", _models())
        session = boto3.session.Session(
            aws_access_key_id=s["S3_ACCESS_KEY"] or None,
            aws_secret_access_key=s["S3_SECRET_KEY"] or None,
            region_name=self.region, botocore_session=core)
        self.client = session.client("s3", endpoint_url=self.endpoint, config=config)
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except be.NoCredentialsError:
            raise PackratError("%s: no AWS credentials: set S3_ACCESS_KEY and S3_SECRET_KEY, or give "
                               "this host credentials of the standard chain (~/.aws, environment, role)"
                               % self.describe())
        except be.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise PackratError("%s: access denied to the bucket (%s): check S3_ACCESS_KEY and "
                                   "S3_SECRET_KEY and the bucket's policy" % (self.describe(), code))
            if code in ("404", "NoSuchBucket"):
                raise PackratError("%s: no bucket named %s" % (self.describe(), self.bucket))
            if self.classify(exc) == TRANSIENT:
                raise  # the server's own trouble: retried
            raise PackratError("%s: %s" % (self.describe(), exc))

    def close(self):
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
        self.client = None

    def _conn(self):
        if self.client is None:
            self.open()
        return self.client

    # -- data ---------------------------------------------------------------------
    def _extra(self):
        extra = {}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        if self.sse.startswith("aws:kms:"):
            extra["ServerSideEncryption"] = "aws:kms"
            extra["SSEKMSKeyId"] = self.sse[len("aws:kms:"):]
        elif self.sse:
            extra["ServerSideEncryption"] = self.sse
        return extra

    def transfer_config(self, size):
        from boto3.s3.transfer import TransferConfig
        return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                              multipart_chunksize=part_size(size), max_concurrency=CONCURRENCY)

    def put(self, local_path, remote_name, progress=None):
        """boto3's managed upload (parts of part_size(), CONCURRENCY in
        flight). boto3's own threads call ``progress`` as they read each
        part's body into its connection (16 KiB a read): when the run is
        being stopped it raises there (transfer.Stopping, an Exception that
        botocore neither wraps nor retries), each part in flight fails at
        its next read, the parts not begun are skipped, and s3transfer
        aborts the multipart upload before upload_file raises. A part whose
        writes wait for room in a full socket buffer reads again once the
        kernel has sent a third of that buffer on."""
        client = self._conn()
        size = os.path.getsize(local_path)
        client.upload_file(local_path, self.bucket, self._key(remote_name), ExtraArgs=self._extra(),
                           Config=self.transfer_config(size), Callback=_Counter(progress))

    def put_stream(self, reader, remote_name, progress=None):
        """A multipart upload of a file still being written: ``reader``
        reads ahead (waiting for the bytes: core.growing.Reader), and each
        part of STREAM_PART bytes goes as soon as the reader has passed it,
        read from the file itself (_FileRange), CONCURRENCY parts in flight,
        no copy of them in memory. Left open at the reader's end: returns
        the _OpenUpload, whose complete() makes the object appear whole
        (once the archive is made) and abort() drops it; aborted here on
        any failure."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
        client = self._conn()
        key = self._key(remote_name)
        extra = self._extra()
        part_checksum = _part_checksum(client)
        if part_checksum:
            extra["ChecksumAlgorithm"] = part_checksum
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"]
        opened = _OpenUpload(self, key, upload_id, part_checksum)
        fd, offset, number, running = reader.fileno(), 0, 0, set()
        sent = _Counter(progress)

        def settle(until):
            while len(running) > until:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.discard(future)
                    opened.part_sent(*future.result())

        pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="packrat-s3-part")
        try:
            end = False
            while not end:
                length = 0
                while length < STREAM_PART:
                    data = reader.read(min(MiB, STREAM_PART - length))
                    if not data:
                        end = True
                        break
                    length += len(data)
                if length or not number:
                    number += 1
                    settle(CONCURRENCY - 1)
                    running.add(pool.submit(opened.send_part, client, number,
                                            _FileRange(fd, offset, length, sent)))
                    offset += length
            settle(0)
        except BaseException:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True)
            try:
                opened.abort()
            except Exception as exc:  # the bucket's lifecycle rule, if any, ends it
                log.verbose("%s: could not abort the multipart upload of %s: %s" % (self.describe(), key, exc))
            raise
        pool.shutdown(wait=True)
        return opened

    def get(self, remote_name, local_path, progress=None):
        self._conn().download_file(self.bucket, self._key(remote_name), local_path,
                                   Callback=_Counter(progress))

    def rename(self, old, new):
        client = self._conn()
        client.copy({"Bucket": self.bucket, "Key": self._key(old)}, self.bucket, self._key(new),
                    ExtraArgs=self._extra())
        client.delete_object(Bucket=self.bucket, Key=self._key(old))

    def _head(self, remote_name):
        import botocore.exceptions as be
        try:
            return self._conn().head_object(Bucket=self.bucket, Key=self._key(remote_name))
        except be.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def size(self, remote_name):
        head = self._head(remote_name)
        return None if head is None else int(head["ContentLength"])

    def checksum(self, remote_name):
        """What the ETag tells, where it is a digest of the data (not with
        KMS or customer keys): a single-part upload's MD5, or a multipart
        upload's MD5 of its parts' MD5s with ``-N`` (a MultipartETag, which
        computes the same over the local file, in parts of the size of the
        object's first part)."""
        head = self._head(remote_name)
        if head is None:
            return None
        etag = head.get("ETag", "").strip('"')
        if head.get("ServerSideEncryption", "").startswith("aws:kms") or head.get("SSECustomerAlgorithm"):
            return None
        if re.fullmatch(r"[0-9a-f]{32}", etag):
            return "md5", etag
        multipart = re.fullmatch(r"[0-9a-f]{32}-([0-9]{1,5})", etag)
        if multipart:
            part = self._part_size(remote_name, int(head["ContentLength"]), int(multipart.group(1)))
            if part:
                return MultipartETag(part), etag
        return None

    def upload_checksum(self, local_path):
        """What checksum() will tell of the object put(local_path) makes:
        the MD5 of a single part, or the multipart ETag in put's part size;
        nothing under KMS (its ETag is no digest of the data)."""
        if self.sse.startswith("aws:kms"):
            return None
        size = os.path.getsize(local_path)
        return "md5" if size < MULTIPART_THRESHOLD else MultipartETag(part_size(size))

    def _part_size(self, remote_name, size, parts):
        """The part size of a multipart object: the size of its first part
        (HeadObject with PartNumber=1), else the first of the usual sizes
        that gives ``parts`` parts; None when none does."""
        import botocore.exceptions as be
        try:
            first = self._conn().head_object(Bucket=self.bucket, Key=self._key(remote_name),
                                             PartNumber=1)
            part = int(first["ContentLength"])
            if parts == 1 or (part and math.ceil(size / part) == parts):
                return part
        except (be.ClientError, KeyError, ValueError):
            pass
        for part in (part_size(size), MIN_PART, 5 * MiB, 15 * MiB, 16 * MiB, 64 * MiB):
            if math.ceil(size / part) == parts:
                return part
        return None

    def list(self):
        pages = self._conn().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
        names = []
        for page in pages:
            for item in page.get("Contents", []):
                names.append(item["Key"][len(self.prefix):])
        return sorted(names)

    def delete(self, remote_name):
        self._conn().delete_object(Bucket=self.bucket, Key=self._key(remote_name))

    def delete_many(self, names):
        client = self._conn()
        names = list(names)
        for start in range(0, len(names), BATCH):
            batch = names[start:start + BATCH]
            answer = client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self._key(n)} for n in batch], "Quiet": True})
            errors = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise PackratError("%s: %d of %d deletes refused, e.g. %s: %s %s"
                                   % (self.describe(), len(errors), len(batch),
                                      first.get("Key"), first.get("Code"), first.get("Message", "")))
            log.verbose("%s: deleted %d objects" % (self.describe(), len(batch)))


# The conformance suite's entry (tests/test_upload_conformance.py): how
# this module meets its test server (tests/servers/s3.py, moto). What it
# can do is Remote.capabilities.
CONFORMANCE = {
    "s3": {
        "server": "s3d",                        # the pytest fixture
        "store": "objects",                     # objects under S3_BUCKET's prefix
        "refused": {"S3_SECRET_KEY": "wrong-secret-key-x"},
        "secret": "S3_SECRET_KEY",
        "digest": "md5",                        # the ETag of a single-part upload
        "library_retries": True,                # botocore retries a dropped link itself
    },
}
