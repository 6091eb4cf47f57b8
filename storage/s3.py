"""An S3-compatible bucket (AWS, MinIO, R2, B2, Hetzner...) as a storage, through boto3.

Every key lives under the storage's prefix; user paths are cleaned exactly as for local
storages, so nothing outside the prefix can be named. Objects are read as streams from
ranged GETs, a bounded block at a time.
"""

from __future__ import annotations

import base64
import functools
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from storage.base import (
    Entry,
    FileMissing,
    FolderScan,
    NotAFile,
    StorageError,
    UnsafePath,
    clean_relative_path,
    encodable,
    entries_from_scan,
)
from storage.heads import heads_one_by_one
from storage.s3_object import S3Object

MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
MAX_KEYS = 1000  # the most one ListObjectsV2 answer holds
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "AuthFailure"}


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    path_style: bool = False
    redirect: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = None


def explain(error: Exception, what: str) -> Exception:
    """A storage exception with a message that says what is wrong, in the person's terms."""
    if isinstance(error, EndpointConnectionError):
        return StorageError(f"Cannot reach the S3 endpoint ({error}).")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            return FileMissing(f"No such object: {what}")
        if code == "NoSuchBucket":
            return StorageError(
                f"The bucket {error.response.get('Error', {}).get('BucketName', '')!r} does not exist."
            )
        if code in CREDENTIAL_CODES:
            return StorageError("The S3 credentials were refused (check the access key and secret).")
        if code in {"403", "AccessDenied", "Forbidden"}:
            return StorageError(f"Access denied to {what} (check the key's permissions).")
        if code in {"412", "PreconditionFailed"}:
            return StorageError(f"{what} was replaced while it was read; its link works on the new one.")
        return StorageError(f"S3 answered {code or 'an error'} for {what}.")
    return StorageError(f"S3 failed for {what}: {error}")


def head_version(head: dict) -> str:
    """What changes whenever the object's bytes could: its ETag and, in a versioned bucket, its version."""
    return f"{head.get('ETag', '')}:{head.get('VersionId', '')}"


def pinned_to(version: str) -> dict:
    """get_object arguments that read exactly the version an Entry describes: that VersionId in a
    versioned bucket, else If-Match on its ETag (a GET of a replaced object then fails, 412)."""
    etag, _, version_id = version.rpartition(":")
    if version_id:
        return {"VersionId": version_id}
    return {"IfMatch": etag} if etag else {}


# One boto3 session for every client of the process: it loads S3's service model (some 35,000
# objects) once, rather than once per client, and each client then builds in a few milliseconds.
# A session is not safe to build clients from in two threads at once; the clients are safe to share.
session = boto3.session.Session()
session_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def s3_client(settings: S3Settings):
    """One boto3 client per storage settings and process."""
    with session_lock:
        return session.client(
            "s3",
            region_name=settings.region or "us-east-1",
            endpoint_url=settings.endpoint_url or None,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )


def load_service_model() -> None:
    """S3's service model loaded into the session now, by a client built and dropped (building one
    sends no request): a worker calls it as it starts, so the model is part of what the garbage
    collector is told to leave out of its passes (gunicorn.conf.py)."""
    # Credentials given, or building the client would look for some (the instance metadata service).
    placeholders = {"access_key_id": "-", "secret_access_key": "-"}
    s3_client.__wrapped__(S3Settings(bucket="oncelink", **placeholders))


class S3Storage:
    cheap_reads = False  # every read is a request
    pages_by_name = True

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.client = s3_client(settings)
        self.cache_key = (
            f"s3:{settings.endpoint_url or ''}:{settings.region or ''}:{settings.bucket}:{self.prefix}"
            f":{settings.access_key_id or ''}"
        )

    @property
    def redirects(self) -> bool:
        """Whether stored bytes go out as a redirect to a presigned URL, the server carrying none."""
        return self.settings.redirect

    def _key(self, path: str, allow_root: bool = False) -> tuple[str, str]:
        relative = clean_relative_path(path, allow_root=allow_root)
        return relative, self.prefix + relative

    def _listed(self, folder: str) -> tuple[str, str]:
        """The folder's clean path, and the key prefix its entries share."""
        relative, key = self._key(folder, allow_root=True)
        return relative, key + "/" if relative else self.prefix

    def _answers(self, prefix: str, **params) -> Iterator[dict]:
        """ListObjectsV2 answers for the entries just below `prefix`, one request each."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=prefix, Delimiter="/", **params
            )
            yield from pages
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, self._relative(prefix) or "/") from exc

    def scan(self, folder: str = "", stats: bool = True) -> FolderScan:
        """The whole folder, one request per 1000 entries; sizes and dates come with the names."""
        relative, prefix = self._listed(folder)
        names, folders, versions = [], bytearray(), []
        sizes, mtimes = array("q"), array("d")
        for answer in self._answers(prefix):
            for entry in self._entries(answer, prefix):
                names.append(entry.name)
                folders.append(entry.is_dir)
                sizes.append(entry.size)
                mtimes.append(entry.mtime)
                versions.append(entry.version)
        if relative and not names:
            raise FileMissing(f"No such folder: {relative}")
        return FolderScan(relative, names, folders, sizes, mtimes, versions)

    def scan_entries(self, scan: FolderScan, rows: Sequence[int]) -> list[Entry]:
        """From the scan itself: looking again would cost a request per row."""
        return entries_from_scan(scan, rows)

    def folder_version(self, folder: str) -> None:
        """A prefix has no version: nothing short of listing it tells that it changed."""
        return None

    def watch(self, folder: str) -> None:
        return None

    @staticmethod
    def name_key(name: str, is_dir: bool) -> bytes:
        """S3's own order: the keys' UTF-8 bytes, a folder's with its trailing "/"."""
        return (name + "/" if is_dir else name).encode("utf-8", "surrogatepass")

    def list_page(self, folder: str, after: tuple[str, bool] | None, limit: int) -> tuple[list[Entry], bool]:
        """One request per page of up to 999 entries (S3 answers at most 1000 keys, one of them to
        tell whether more follow); StartAfter carries the position, so a page costs the same
        wherever it lies in the folder."""
        relative, prefix = self._listed(folder)
        params: dict = {"PaginationConfig": {"PageSize": min(MAX_KEYS, limit + 1)}}
        if after:
            if not encodable(after[0]):
                raise UnsafePath("The cursor names no possible key.")
            params["StartAfter"] = prefix + after[0] + ("/" if after[1] else "")
        entries, more = self._entries_after(prefix, after, limit, params)
        if relative and not entries and not after:
            raise FileMissing(f"No such folder: {relative}")
        return entries, more

    def _entries_after(
        self, prefix: str, after: tuple[str, bool] | None, limit: int, params: dict
    ) -> tuple[list[Entry], bool]:
        """The folder named by StartAfter comes back as a common prefix again (its keys sort after
        it), so anything not after `after` is dropped. Whether more follow is S3's IsTruncated once
        the page is full: no request is made only to find out."""
        skipped = self.name_key(*after) if after else b""
        found: list[Entry] = []
        for answer in self._answers(prefix, **params):
            found += [e for e in self._entries(answer, prefix) if self.name_key(e.name, e.is_dir) > skipped]
            if len(found) >= limit:
                return found[:limit], len(found) > limit or answer.get("IsTruncated", False)
        return found, False

    def _entries(self, answer: dict, prefix: str) -> list[Entry]:
        """One answer's folders and files in key order (S3 sorts each list, not the two together).
        Keys under `prefix` + "/" (an empty name, as in `db//x`) are left out: no path names them."""
        prefixes = [found["Prefix"] for found in answer.get("CommonPrefixes", [])]
        folders = [self._folder(key) for key in prefixes if key != prefix + "/"]
        files = [self._file(o) for o in answer.get("Contents", []) if o["Key"] != prefix]
        return sorted(folders + files, key=lambda entry: self.name_key(entry.name, entry.is_dir))

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) :].strip("/")

    def _folder(self, key: str) -> Entry:
        path = self._relative(key)
        return Entry(path.rsplit("/", 1)[-1], path, 0, 0.0, True)

    def _file(self, item: dict) -> Entry:
        path = self._relative(item["Key"])
        name, modified = path.rsplit("/", 1)[-1], item["LastModified"].timestamp()
        return Entry(name, path, item["Size"], modified, False, item.get("ETag", ""))

    def stat(self, path: str) -> Entry:
        relative, key = self._key(path)
        try:
            head = self.client.head_object(Bucket=self.settings.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = explain(exc, relative)
            if isinstance(error, FileMissing) and self._is_folder(key):
                raise NotAFile(f"Not a file: {relative}") from exc
            raise error from exc
        return Entry(
            relative.rsplit("/", 1)[-1],
            relative,
            head["ContentLength"],
            head["LastModified"].timestamp(),
            False,
            head_version(head),
        )

    def stored_sha256(self, entry: Entry) -> str | None:
        """The object's own full-object SHA-256 (hex), when S3 keeps one for exactly this version.

        A multipart upload's composite checksum ("...-3", or ChecksumType COMPOSITE) is a checksum
        of the parts' checksums, not of the bytes: None then, as for an object stored without one.
        """
        relative, key = self._key(entry.path)
        try:
            head = self.client.head_object(Bucket=self.settings.bucket, Key=key, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, relative) from exc
        checksum = head.get("ChecksumSHA256") or ""
        whole = head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" and "-" not in checksum
        if not checksum or not whole or head_version(head) != entry.version:
            return None
        return base64.b64decode(checksum).hex()

    def _is_folder(self, key: str) -> bool:
        """After a 404 on HEAD: a folder, a missing key, or a missing bucket (which the GET tells)."""
        try:
            listing = self.client.list_objects_v2(Bucket=self.settings.bucket, Prefix=key + "/", MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, self._relative(key)) from exc
        return listing.get("KeyCount", 0) > 0

    def open_file(self, path: str) -> tuple[Entry, S3Object]:
        """The object as HEAD describes it, and a reader of exactly that version: every GET it makes
        is pinned to it, so an object replaced mid-transfer is never read half old, half new."""
        entry = self.stat(path)
        return entry, S3Object(self, self._key(entry.path)[1], entry.size, pinned_to(entry.version))

    def open(self, path: str, size: int | None = None) -> S3Object:
        """The object for reading; pass the size from a stat just made to save a HEAD."""
        if size is None:
            return self.open_file(path)[1]
        return S3Object(self, self._key(path)[1], size)

    def read_heads(self, entries: Sequence[Entry], size: int) -> list[bytes | None]:
        return heads_one_by_one(self.open, entries, size)

    def get_range(self, key: str, start: int, stop: int, pin: dict | None = None) -> bytes:
        """Bytes [start, stop) of an object, in one bounded GET."""
        try:
            answer = self.client.get_object(
                Bucket=self.settings.bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **(pin or {})
            )
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, self._relative(key)) from exc
        return answer["Body"].read()

    def get_stream(self, key: str, start: int, pin: dict | None = None):
        """The object's bytes from `start` to the end, as a stream."""
        try:
            answer = self.client.get_object(
                Bucket=self.settings.bucket, Key=key, Range=f"bytes={start}-", **(pin or {})
            )
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, self._relative(key)) from exc
        return answer["Body"]

    def presigned_url(self, path: str, seconds: int, disposition: str) -> str:
        """A short-lived GET URL that S3 serves itself, with our Content-Disposition."""
        _, key = self._key(path)
        params = {"Bucket": self.settings.bucket, "Key": key, "ResponseContentDisposition": disposition}
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)

    def check(self) -> str:
        """Try the bucket and prefix: a sentence saying what works, or a StorageError saying what does not."""
        try:  # a GET, not a HEAD: its error body names the problem
            self.client.list_objects_v2(Bucket=self.settings.bucket, Prefix=self.prefix, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, f"bucket {self.settings.bucket}") from exc
        return f"Bucket {self.settings.bucket!r} is readable" + (
            f" under {self.prefix!r}." if self.prefix else "."
        )
