"""The production object store: S3 or an S3-compatible service, through boto3.

Chosen by ``VIDPIPE_STORAGE_URL=s3://bucket/prefix``; ``VIDPIPE_S3_ENDPOINT_URL``,
``VIDPIPE_S3_REGION`` and ``VIDPIPE_S3_PATH_STYLE`` point it at MinIO, moto or another
compatible store. Credentials come from the usual AWS chain (environment variables, shared
files, instance roles) and are never logged.

boto3 is synchronous, so every call runs in a worker thread. botocore retries only briefly
and times out within seconds: the pipeline has its own backoff, and a stage should learn
quickly that the store is down rather than hang inside one call.

Presigned URLs (SigV4) let clients move bytes straight to and from the bucket; they are
computed locally, without a request. A streamed write buffers one part at a time and sends
the body as a multipart upload, so its memory stays flat whatever the object's size.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline.errors import (
    ConfigurationError,
    InvalidInput,
    NotFound,
    ObjectMissing,
    PermanentError,
    StorageUnavailable,
)
from pipeline.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_GET_SIZE,
    MAX_PART_NUMBER,
    PartTag,
    StoredObject,
    UploadedPart,
    check_completion,
    coalesce,
    guess_content_type,
    limited,
    object_missing,
    object_too_large,
    refuse_empty_prefix,
    upload_missing,
    validate_key,
    validate_part_number,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
JOIN_TIMEOUT_SECONDS = 600.0
"""How long CompleteMultipartUpload may take to answer: joining gigabytes of parts takes the
store a while, and a retry after a timeout would find the upload already gone."""
MAX_ATTEMPTS = 3
"""botocore's own attempts per call (first try included); the pipeline retries beyond that."""
MULTIPART_THRESHOLD = 8 * 2**20
"""Files at least this large are uploaded in parts of the same size, several at once."""
STREAM_PART_SIZE = 8 * 2**20
"""Part size of a streamed write: the memory it holds at once, and 10,000 of them (78 GiB) the
largest object it can write unless its limit asks for bigger parts."""
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4's longest validity for a presigned URL."""
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request accepts

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_PART_CODES = {
    "InvalidPart": "storage.invalid_part",
    "InvalidPartOrder": "storage.invalid_part_order",
    "EntityTooSmall": "storage.part_too_small",
}
_REJECTED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "403",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        "BadDigest",
        "IncompleteBody",
        "InternalError",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "XAmzContentSHA256Mismatch",
    }
)


class S3Storage:
    """Objects in one bucket, below an optional key prefix.

    Args:
        bucket: The bucket, which must already exist.
        prefix: Put before every key, without slashes at either end; empty for none.
        endpoint_url: An S3-compatible service; ``None`` for AWS itself.
        region: The signing region.
        path_style: Address buckets as ``http://host/bucket`` rather than as a host name.
        scratch_dir: Where :meth:`local_path` downloads to; the system's temp folder if ``None``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = False,
        scratch_dir: Path | None = None,
    ) -> None:
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.region = region or DEFAULT_REGION
        self._scratch_dir = scratch_dir
        self._where = _display_endpoint(endpoint_url) if endpoint_url else f"AWS region {self.region}"
        self.description = f"{self._base_uri()} at {self._where}"
        self._client = _make_client(endpoint_url, self.region, path_style)
        self._joining_client = _make_client(endpoint_url, self.region, path_style, read_timeout=JOIN_TIMEOUT_SECONDS)
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_THRESHOLD,
            max_concurrency=4,
            num_download_attempts=2,
        )

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Upload ``path``, in parts when it is large, with an explicit content type."""
        full_key = self._full_key(key)
        extra = {"ContentType": content_type or guess_content_type(key)}
        started = time.monotonic()
        await self._run(
            key,
            self._client.upload_file,
            str(path),
            self.bucket,
            full_key,
            ExtraArgs=extra,
            Config=self._transfer,
        )
        stored = await self._stat_required(key)
        logger.debug("Uploaded %s (%d bytes) in %.2f s.", self.uri(key), stored.size, time.monotonic() - started)
        return stored

    async def copy(self, source: str, target: str) -> StoredObject:
        """Copy on the server: CopyObject, or a multipart copy in parts for a large object."""
        original = await self.stat(source)
        if original is None:
            raise object_missing(source)
        started = time.monotonic()
        await self._run(
            source,
            self._client.copy,
            {"Bucket": self.bucket, "Key": self._full_key(source)},
            self.bucket,
            self._full_key(target),
            # A multipart copy starts a new object, so the content type is given, not inherited.
            ExtraArgs={
                "ContentType": original.content_type or guess_content_type(target),
                "MetadataDirective": "REPLACE",
            },
            Config=self._transfer,
        )
        stored = await self._stat_required(target)
        logger.debug(
            "Copied %s to %s (%d bytes) in %.2f s.",
            self.uri(source),
            self.uri(target),
            stored.size,
            time.monotonic() - started,
        )
        return stored

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Upload ``data`` in one request, with an explicit content type."""
        full_key = self._full_key(key)
        await self._run(
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=full_key,
            Body=data,
            ContentType=content_type or guess_content_type(key),
        )
        return await self._stat_required(key)

    async def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes:
        """Read a small object whole, refusing one larger than ``max_size`` before reading it."""
        full_key = self._full_key(key)
        return await self._run(key, self._read_small, key, full_key, max_size)

    async def download(self, key: str, dest: Path) -> None:
        """Stream the object to ``dest``; boto3 writes a temporary name and renames it when done."""
        full_key = self._full_key(key)
        started = time.monotonic()
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        await self._run(key, self._client.download_file, self.bucket, full_key, str(dest), Config=self._transfer)
        logger.debug("Downloaded %s to %s in %.2f s.", self.uri(key), dest, time.monotonic() - started)

    @contextlib.asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        """Download the object into a private temporary folder and remove it on exit."""
        validate_key(key)
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="vidpipe-", dir=self._scratch_dir))
        try:
            path = folder / PurePosixPath(key).name
            await self.download(key, path)
            yield path
        finally:
            # Removed without awaiting, so the file goes even when the task is being cancelled.
            shutil.rmtree(folder, ignore_errors=True)

    async def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Stream the object from one GET response, reading each piece in a worker thread."""
        full_key = self._full_key(key)
        response = await self._run(key, self._client.get_object, Bucket=self.bucket, Key=full_key)
        body = response["Body"]
        try:
            while chunk := await self._run(key, body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> StoredObject | None:
        """Describe the object from a HEAD request, or ``None`` when there is none.

        A missing bucket also answers HEAD with a bare 404, so it reads as a missing object
        here; :meth:`check` tells the two apart.
        """
        full_key = self._full_key(key)
        try:
            response = await self._run(key, self._client.head_object, Bucket=self.bucket, Key=full_key)
        except ObjectMissing:
            return None
        return StoredObject(
            key=key,
            size=response["ContentLength"],
            etag=_unquote_etag(response.get("ETag")),
            content_type=response.get("ContentType"),
            modified=_utc(response.get("LastModified")),
        )

    async def exists(self, key: str) -> bool:
        """Whether an object has this key."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> None:
        """Remove the object; S3 itself accepts deleting a key that is not there."""
        full_key = self._full_key(key)
        await self._run(key, self._client.delete_object, Bucket=self.bucket, Key=full_key)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix`` in batches; the empty prefix is refused."""
        refuse_empty_prefix(prefix)
        doomed = [self._full_key_unchecked(stored.key) for stored in await self.list(prefix)]
        for start in range(0, len(doomed), _DELETE_BATCH):
            await self._run(None, self._delete_batch, doomed[start : start + _DELETE_BATCH])
        logger.debug("Deleted %d objects under %s.", len(doomed), self.uri(prefix))
        return len(doomed)

    async def list(self, prefix: str) -> builtins.list[StoredObject]:
        """Every object under ``prefix``, sorted by key; listings carry no content type."""
        validate_prefix(prefix)
        return await self._run(None, self._list, self._full_key_unchecked(prefix))

    async def check(self) -> None:
        """Ask for the bucket with a HEAD request, which needs both the service and the bucket."""
        await self._run(None, self._client.head_bucket, Bucket=self.bucket)
        logger.debug("Object storage %s answered.", self.description)

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``, for people to read."""
        return f"s3://{self.bucket}/{self._full_key_unchecked(key)}"

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None = None,
        *,
        max_size: int | None = None,
    ) -> StoredObject:
        """One PUT for a body shorter than a part; otherwise a multipart upload, one part in memory at a time."""
        full_key = self._full_key(key)
        content_type = content_type or guess_content_type(key)
        part_size = max(STREAM_PART_SIZE, math.ceil((max_size or 0) / MAX_PART_NUMBER))
        started = time.monotonic()
        upload_id: str | None = None
        sent: list[PartTag] = []
        try:
            async with contextlib.aclosing(coalesce(limited(chunks, key, max_size), part_size)) as pieces:
                async for piece in pieces:
                    if upload_id is None and len(piece) < part_size:
                        # Only the last piece is shorter than a part, so this is the whole body.
                        return await self._put_piece(key, full_key, piece, content_type)
                    if upload_id is None:
                        upload_id = await self.create_multipart(key, content_type)
                    response = await self._run(
                        key,
                        self._client.upload_part,
                        Bucket=self.bucket,
                        Key=full_key,
                        UploadId=upload_id,
                        PartNumber=len(sent) + 1,
                        Body=piece,
                    )
                    sent.append(PartTag(len(sent) + 1, _unquote_etag(response["ETag"]) or ""))
            if upload_id is None:
                return await self._put_piece(key, full_key, b"", content_type)
            stored = await self._complete(key, full_key, upload_id, sent)
        except BaseException:
            if upload_id is not None:
                await self._abort_quietly(key, full_key, upload_id)
            raise
        logger.debug(
            "Uploaded %s (%d bytes) from a stream in %d parts in %.2f s.",
            self.uri(key),
            stored.size,
            len(sent),
            time.monotonic() - started,
        )
        return stored

    def presign_get(self, key: str, *, expires_in: float) -> str | None:
        """A SigV4 presigned GET of the object."""
        # TODO(s3-endpoint): presigned URLs name VIDPIPE_S3_ENDPOINT_URL, which clients must reach
        # too; a store the services reach under an internal name needs a public endpoint setting.
        params = {"Bucket": self.bucket, "Key": self._full_key(key)}
        return self._presign(key, "get_object", params, expires_in)

    def presign_put(self, key: str, *, content_type: str, expires_in: float) -> str | None:
        """A SigV4 presigned PUT; the Content-Type is signed, so the client must send the same one."""
        params = {"Bucket": self.bucket, "Key": self._full_key(key), "ContentType": content_type}
        return self._presign(key, "put_object", params, expires_in)

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: float) -> str | None:
        """A SigV4 presigned UploadPart; S3 answers it with the part's ETag header."""
        params = {
            "Bucket": self.bucket,
            "Key": self._full_key(key),
            "UploadId": upload_id,
            "PartNumber": validate_part_number(part_number),
        }
        return self._presign(key, "upload_part", params, expires_in)

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        """CreateMultipartUpload, with the content type the finished object will have."""
        full_key = self._full_key(key)
        response = await self._run(
            key,
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=full_key,
            ContentType=content_type or guess_content_type(key),
        )
        logger.debug("Started multipart upload to %s.", self.uri(key))
        return response["UploadId"]

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes], *, max_size: int
    ) -> UploadedPart:
        """Spool the part to a temporary file (memory for small parts), then send it in one request."""
        full_key = self._full_key(key)
        validate_part_number(part_number)
        with tempfile.SpooledTemporaryFile(max_size=STREAM_PART_SIZE, dir=_folder_name(self._scratch_dir)) as spool:
            size = 0
            async for piece in coalesce(limited(chunks, key, max_size), DEFAULT_CHUNK_SIZE):
                size += len(piece)
                await asyncio.to_thread(spool.write, piece)
            spool.seek(0)
            response = await self._run(
                key,
                self._client.upload_part,
                Bucket=self.bucket,
                Key=full_key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=spool,
            )
        return UploadedPart(part_number=part_number, etag=_unquote_etag(response["ETag"]) or "", size=size)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        """ListParts, every page of it."""
        full_key = self._full_key(key)
        return await self._run(key, self._list_parts, full_key, upload_id)

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[PartTag]) -> StoredObject:
        """Check ``parts`` against ListParts (so both backends refuse alike), then CompleteMultipartUpload."""
        full_key = self._full_key(key)
        check_completion(parts, await self.list_parts(key, upload_id))
        return await self._complete(key, full_key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an upload that is already gone is fine."""
        full_key = self._full_key(key)
        with contextlib.suppress(NotFound):
            await self._run(
                key, self._client.abort_multipart_upload, Bucket=self.bucket, Key=full_key, UploadId=upload_id
            )

    def _presign(self, key: str, method: str, params: dict[str, Any], expires_in: float) -> str:
        seconds = max(1, min(MAX_PRESIGN_SECONDS, math.ceil(expires_in)))
        try:
            return self._client.generate_presigned_url(method, Params=params, ExpiresIn=seconds)
        except Exception as error:
            translated = self._translate(error, key)
            if translated is error:
                raise
            raise translated from error

    async def _put_piece(self, key: str, full_key: str, data: bytes, content_type: str) -> StoredObject:
        await self._run(
            key, self._client.put_object, Bucket=self.bucket, Key=full_key, Body=data, ContentType=content_type
        )
        return await self._stat_required(key)

    async def _complete(self, key: str, full_key: str, upload_id: str, parts: Sequence[PartTag]) -> StoredObject:
        listing = [{"PartNumber": number, "ETag": f'"{etag.strip(chr(34))}"'} for number, etag in parts]
        try:
            await self._run(
                key,
                self._joining_client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=full_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listing},  # type: ignore[typeddict-item]
            )
        except NotFound:
            # A retried request whose first attempt joined the parts finds the upload gone;
            # the object it made is the answer (callers check its size).
            stored = await self.stat(key)
            if stored is None:
                raise
            return stored
        return await self._stat_required(key)

    async def _abort_quietly(self, key: str, full_key: str, upload_id: str) -> None:
        """Abort a streamed write's upload on the way out of a failure; the failure itself is what matters."""
        try:
            await asyncio.shield(
                asyncio.to_thread(
                    self._client.abort_multipart_upload, Bucket=self.bucket, Key=full_key, UploadId=upload_id
                )
            )
        except Exception:
            # TODO(uploads): an upload whose abort fails keeps its parts (and their cost) until a
            # bucket lifecycle rule for incomplete multipart uploads removes them.
            logger.warning("Multipart upload to %s could not be aborted after a failed write.", self.uri(key))

    def _list_parts(self, full_key: str, upload_id: str) -> builtins.list[UploadedPart]:
        paginator = self._client.get_paginator("list_parts")
        found: builtins.list[UploadedPart] = []
        for page in paginator.paginate(Bucket=self.bucket, Key=full_key, UploadId=upload_id):
            for item in page.get("Parts", []):
                found.append(
                    UploadedPart(
                        part_number=item["PartNumber"],
                        etag=_unquote_etag(item.get("ETag")) or "",
                        size=item.get("Size", 0),
                    )
                )
        return sorted(found, key=lambda part: part.part_number)

    def _base_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _full_key(self, key: str) -> str:
        return self._full_key_unchecked(validate_key(key))

    def _full_key_unchecked(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative_key(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    async def _stat_required(self, key: str) -> StoredObject:
        stored = await self.stat(key)
        if stored is None:
            # S3 is read-after-write consistent, so this means something else deleted it at once.
            raise object_missing(key)
        return stored

    def _read_small(self, key: str, full_key: str, max_size: int) -> bytes:
        response = self._client.get_object(Bucket=self.bucket, Key=full_key)
        with contextlib.closing(response["Body"]) as body:
            if response["ContentLength"] > max_size:
                raise object_too_large(key, max_size)
            return body.read()

    def _list(self, full_prefix: str) -> builtins.list[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        found: builtins.list[StoredObject] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for item in page.get("Contents", []):
                found.append(
                    StoredObject(
                        key=self._relative_key(item["Key"]),
                        size=item.get("Size", 0),
                        etag=_unquote_etag(item.get("ETag")),
                        content_type=None,
                        modified=_utc(item.get("LastModified")),
                    )
                )
        return sorted(found, key=lambda stored: stored.key)

    def _delete_batch(self, full_keys: builtins.list[str]) -> None:
        response = self._client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in full_keys], "Quiet": True}
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise self._classify(first.get("Code", ""), 0, first.get("Key"), first.get("Message", ""))

    async def _run(self, key: str | None, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking boto3 call in a thread and translate its failure into vidpipe's terms."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except Exception as error:
            translated = self._translate(error, key)
            if translated is error:
                raise
            raise translated from error

    def _translate(self, error: Exception, key: str | None) -> Exception:
        if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, ClientError):
            # boto3 flattens the upload's ClientError into a message; the original is the context.
            error = error.__context__
        if isinstance(error, ClientError):
            response = error.response
            code = response.get("Error", {}).get("Code", "")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return self._classify(code, status, key, response.get("Error", {}).get("Message", ""))
        if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
            return ConfigurationError(
                f"No usable AWS credentials were found for the bucket {self.bucket!r}: {error}; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or configure a profile.",
                code="config.storage_credentials",
            )
        if isinstance(error, BotoConnectionError | HTTPClientError | IncompleteReadError | RetriesExceededError):
            return StorageUnavailable(f"The object store at {self._where} did not answer: {error}.")
        return error

    def _classify(self, code: str, status: int, key: str | None, message: str) -> Exception:
        """Map an S3 error code and HTTP status to the pipeline's error categories."""
        detail = f"{code or status}: {message}" if message else str(code or status)
        if code == "NoSuchUpload":
            return upload_missing(key or "")
        if code in _PART_CODES:
            return InvalidInput(
                f"The store refused to complete the upload of {key!r} ({detail}).", code=_PART_CODES[code]
            )
        if code == "NoSuchBucket" or (key is None and (code in _MISSING_CODES or status == 404)):
            return ConfigurationError(
                f"The bucket {self.bucket!r} does not exist at {self._where}; create it or correct "
                "VIDPIPE_STORAGE_URL.",
                code="config.storage_bucket",
            )
        if key is not None and (code in _MISSING_CODES or status == 404):
            return object_missing(key)
        if code in _REJECTED_CODES or status == 403:
            return ConfigurationError(
                f"The object store at {self._where} refused access to the bucket {self.bucket!r} ({code}); "
                "check the AWS credentials and the bucket's policy.",
                code="config.storage_credentials",
            )
        if code in _UNAVAILABLE_CODES or status == 429 or status >= 500:
            return StorageUnavailable(f"The object store at {self._where} is unavailable for now ({detail}).")
        return PermanentError(
            f"The object store refused a request for {key or self.bucket!r} ({detail}).",
            code="storage.rejected",
        )


def _make_client(
    endpoint_url: str | None, region: str, path_style: bool, *, read_timeout: float = READ_TIMEOUT_SECONDS
) -> S3Client:
    config = Config(
        region_name=region,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        s3={"addressing_style": "path" if path_style else "auto"},
        # Presigned URLs in SigV4, which every region and S3-compatible store accepts.
        signature_version="s3v4",
        # Room for a multipart transfer's parallel parts next to other stages' calls.
        max_pool_connections=16,
    )
    # A session of its own: boto3's shared default session is not safe to create clients
    # from in several threads at once, while the client made here is.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _display_endpoint(endpoint_url: str) -> str:
    parts = urlsplit(endpoint_url)
    # An endpoint may carry user:password@; descriptions end up in logs, so drop it.
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _folder_name(folder: Path | None) -> str | None:
    return str(folder) if folder is not None else None


def _unquote_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
