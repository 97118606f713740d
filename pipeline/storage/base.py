"""The object storage interface every backend implements, and the rules keys follow.

A key is a relative POSIX path the pipeline chooses (``videos/<uuid>/thumbnails/poster.jpg``).
Keys are checked here, once, for every backend: a key that passes can never name a file
outside the local folder, and it means the same object on S3 as on disk.
"""

from __future__ import annotations

import builtins
import itertools
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Protocol

from pipeline.errors import InvalidInput, NotFound, ObjectMissing

DEFAULT_CHUNK_SIZE = 1 << 20
"""Bytes per piece when streaming an object to disk or to a caller."""

DEFAULT_MAX_GET_SIZE = 16 * 2**20
"""The largest object :meth:`Storage.get_bytes` reads into memory unless told otherwise."""

MAX_KEY_BYTES = 1024
"""S3's own limit on the UTF-8 length of a key; the local store keeps the same one."""

MIN_PART_SIZE = 5 * 2**20
"""S3's smallest part of a multipart upload, for every part but the last; the local store
keeps the same rule, so an upload that completes on one backend completes on the other."""

MAX_PART_NUMBER = 10_000
"""Part numbers run from 1 to this, as on S3."""

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    # WebVTT is UTF-8 by definition, so the charset is a fact about every such file.
    ".vtt": "text/vtt; charset=utf-8",
    # Uploaded SRT files arrive in whatever encoding their author used (often CP949),
    # so no charset is claimed for them.
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".txt": "text/plain",
}
_FALLBACK_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class StoredObject:
    """What a backend knows about one stored object."""

    key: str
    """The key as the pipeline names it, without any backend prefix."""
    size: int
    etag: str | None
    """Changes whenever the content changes; not comparable between backends."""
    content_type: str | None
    """``None`` where the backend cannot say cheaply (listings never carry it)."""
    modified: datetime | None
    """When the object was last written, in UTC."""


class PartTag(NamedTuple):
    """A part a client uploaded, as it names it when completing: its number and the ETag it got."""

    part_number: int
    etag: str


@dataclass(frozen=True)
class UploadedPart:
    """A part of a multipart upload in progress, as the store lists it."""

    part_number: int
    etag: str
    """The part's MD5 in hex, without quotes: what the store answered to the part's PUT."""
    size: int


class SizeLimitExceeded(InvalidInput):
    """A streamed write went past the size its caller allowed; nothing was stored."""

    code = "storage.size_limit"


class Storage(Protocol):
    """Where every byte the pipeline keeps lives: a local folder or an S3 bucket.

    All methods that touch the store are coroutines; blocking work runs in worker threads,
    so callers on the event loop never wait on disk or network.
    """

    description: str
    """Names the store for people (``local folder /x/objects``); never carries credentials."""

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Store the file at ``path`` under ``key``, streamed, replacing any earlier object.

        Readers see either the old object or the whole new one, never a partial write.
        ``content_type`` defaults to a guess from the key's suffix.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Store ``data`` under ``key``, as :meth:`put_file` does."""
        ...

    async def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes:
        """Read a small object (subtitles, JSON) whole.

        Raises:
            ObjectMissing: no object has this key.
            InvalidInput: the object is larger than ``max_size``.
        """
        ...

    async def download(self, key: str, dest: Path) -> None:
        """Write the object to ``dest``, streamed; ``dest`` appears only when complete.

        Raises:
            ObjectMissing: no object has this key.
        """
        ...

    def local_path(self, key: str) -> AbstractAsyncContextManager[Path]:
        """A path to the object's bytes on local disk, valid inside the ``async with`` block.

        The local store yields the stored file itself, which must not be modified; S3
        downloads to a temporary file that is removed on exit. The file name keeps the
        key's suffix, so tools that guess formats from names still work.

        Raises:
            ObjectMissing: no object has this key.
        """
        ...

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Stream the object in pieces of at most ``chunk_size`` bytes.

        This is an async generator: close it (``contextlib.aclosing``) when stopping early,
        so the open file or HTTP response is released at once.

        Raises:
            ObjectMissing: no object has this key (on the first iteration).
        """
        ...

    async def copy(self, source: str, target: str) -> StoredObject:
        """Store a copy of ``source`` under ``target``, with its content type, inside the store.

        An S3 store copies on the server (no bytes pass through this process, large objects in
        parts); a local folder copies the file. ``target`` is replaced as :meth:`put_file` does.

        Raises:
            ObjectMissing: no object has the key ``source``.
        """
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """Describe the object, or return ``None`` when there is none with this key."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object has this key."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a key with no object is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix`` and return how many.

        Raises:
            InvalidInput: ``prefix`` is empty, which would empty the whole store.
        """
        ...

    async def list(self, prefix: str) -> builtins.list[StoredObject]:
        """Every object whose key starts with ``prefix`` (a plain string prefix), sorted by key."""
        ...

    async def check(self) -> None:
        """Confirm the store answers and its bucket or folder exists.

        Raises:
            StorageUnavailable: the store did not answer; it may later.
            ConfigurationError: the settings point at something that is not there or
                refuses the credentials.
        """
        ...

    def uri(self, key: str) -> str:
        """A ``file://`` or ``s3://`` address of the object, for people to read."""
        ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None = None,
        *,
        max_size: int | None = None,
    ) -> StoredObject:
        """Store what ``chunks`` yields under ``key`` without holding it all in memory.

        Readers see the old object or the whole new one. When more than ``max_size`` bytes
        arrive, the write stops, nothing is stored and :class:`SizeLimitExceeded` is raised.
        """
        ...

    def presign_get(self, key: str, *, expires_in: float) -> str | None:
        """A URL anyone may GET the object from until ``expires_in`` seconds have passed.

        ``None`` when the store has no address of its own on the web (the local folder):
        the caller then serves the object itself. Nothing is contacted; the object may not
        exist yet.
        """
        ...

    def presign_put(self, key: str, *, content_type: str, expires_in: float) -> str | None:
        """A URL a client may PUT the whole object to, with ``Content-Type: content_type``.

        ``None`` when the store has no address of its own, as for :meth:`presign_get`.
        """
        ...

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: float) -> str | None:
        """A URL a client may PUT one part of a multipart upload to; the answer carries its ETag.

        ``None`` when the store has no address of its own, as for :meth:`presign_get`.
        """
        ...

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        """Start a multipart upload to ``key`` and return its upload id."""
        ...

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes], *, max_size: int
    ) -> UploadedPart:
        """Store one part from ``chunks``, replacing an earlier part with the same number.

        Raises:
            NotFound: the upload does not exist (completed, aborted or never started).
            SizeLimitExceeded: more than ``max_size`` bytes arrived.
        """
        ...

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        """The parts uploaded so far, by part number, so an interrupted client can resume.

        Raises:
            NotFound: the upload does not exist.
        """
        ...

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[PartTag]) -> StoredObject:
        """Join ``parts`` (in ascending part number) into the object at ``key``; the upload ends.

        Raises:
            NotFound: the upload does not exist.
            InvalidInput: a part is missing or its ETag differs (``storage.invalid_part``), the
                numbers are not ascending, or a part but the last is under :data:`MIN_PART_SIZE`
                (``storage.part_too_small``).
        """
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; an upload that is already gone is not an error."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged when it is a usable object key.

    Raises:
        InvalidInput: the key is empty, absolute, too long, contains a backslash or a
            control character, or has an empty, ``.`` or ``..`` segment.
    """
    _check_text(key, what="key")
    if not key:
        raise InvalidInput("An object key must not be empty.", code="storage.invalid_key")
    _check_segments(key, key.split("/"), what="key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged when keys could start with it.

    An empty prefix (everything) and a trailing ``/`` are allowed; otherwise the same rules
    as :func:`validate_key` apply to each complete segment.
    """
    _check_text(prefix, what="prefix")
    segments = prefix.split("/")
    if segments[-1] == "":
        # A trailing slash ("videos/abc/") or the empty prefix leaves one empty last piece.
        segments = segments[:-1]
    _check_segments(prefix, segments, what="prefix")
    return prefix


def guess_content_type(key: str) -> str:
    """The media type to record for ``key`` when the caller gave none, from its suffix."""
    suffix = PurePosixPath(key).suffix.lower()
    known = _CONTENT_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(PurePosixPath(key).name, strict=False)
    return guessed or _FALLBACK_CONTENT_TYPE


def refuse_empty_prefix(prefix: str) -> None:
    """Guard bulk deletes: an empty prefix would name every object in the store."""
    validate_prefix(prefix)
    if not prefix:
        raise InvalidInput(
            "Refusing to delete with an empty prefix, which would empty the whole store.",
            code="storage.invalid_key",
        )


def object_missing(key: str) -> ObjectMissing:
    """The error every backend raises for a key with no object."""
    return ObjectMissing(f"No object is stored under the key {key!r}.")


def object_too_large(key: str, max_size: int) -> InvalidInput:
    """The error :meth:`Storage.get_bytes` raises for an object over its size limit."""
    return InvalidInput(
        f"The object {key!r} is larger than {max_size} bytes; stream it instead of reading it whole.",
        code="storage.too_large",
    )


def size_limit_exceeded(key: str, max_size: int) -> SizeLimitExceeded:
    """The error a streamed write raises past its caller's limit."""
    return SizeLimitExceeded(
        f"More than {max_size} bytes arrived for {key!r}, so nothing was stored.", details={"max_size": max_size}
    )


def upload_missing(key: str) -> NotFound:
    """The error for a multipart upload that was completed, aborted or never started."""
    return NotFound(
        f"No multipart upload is in progress for {key!r} under that id; it was completed or aborted.",
        code="storage.upload_not_found",
    )


def validate_part_number(part_number: int) -> int:
    """Return ``part_number`` when it is between 1 and :data:`MAX_PART_NUMBER`."""
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise InvalidInput(
            f"Part numbers run from 1 to {MAX_PART_NUMBER}; {part_number} is outside.", code="storage.invalid_part"
        )
    return part_number


def check_completion(parts: Sequence[PartTag], uploaded: Sequence[UploadedPart]) -> None:
    """Check a completion request against the parts the store holds, as S3 does.

    Raises:
        InvalidInput: no parts, numbers not strictly ascending, a part missing or with another
            ETag, or a part but the last smaller than :data:`MIN_PART_SIZE`.
    """
    if not parts:
        raise InvalidInput("A multipart upload needs at least one part to complete.", code="storage.invalid_part")
    numbers = [number for number, _etag in parts]
    if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
        raise InvalidInput(
            "Parts must be listed in ascending part number, each once.", code="storage.invalid_part_order"
        )
    held = {part.part_number: part for part in uploaded}
    for index, (number, etag) in enumerate(parts):
        found = held.get(number)
        if found is None or found.etag != etag.strip('"'):
            raise InvalidInput(
                f"Part {number} was not uploaded, or its ETag differs from the one given.",
                code="storage.invalid_part",
                details={"part_number": number},
            )
        if index < len(parts) - 1 and found.size < MIN_PART_SIZE:
            raise InvalidInput(
                f"Part {number} has {found.size} bytes; every part but the last needs at least {MIN_PART_SIZE}.",
                code="storage.part_too_small",
                details={"part_number": number},
            )


async def limited(chunks: AsyncIterable[bytes], key: str, max_size: int | None) -> AsyncGenerator[bytes, None]:
    """Pass ``chunks`` through, raising :class:`SizeLimitExceeded` as soon as they pass ``max_size``."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if max_size is not None and received > max_size:
            raise size_limit_exceeded(key, max_size)
        yield chunk


async def coalesce(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Regroup ``chunks`` into pieces of at least ``size`` bytes (the last may be shorter).

    A network body arrives in pieces of a few kilobytes; writing or sending each one alone
    costs a thread hop or a request apiece, while this holds at most ``size`` plus one piece.
    """
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _check_text(value: str, *, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(
            f"An object {what} must be a string, not {type(value).__name__}.", code="storage.invalid_key"
        )
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"The object {what} {value!r} is not valid Unicode text.", code="storage.invalid_key"
        ) from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidInput(
            f"The object {what} {value[:40]!r}… is longer than {MAX_KEY_BYTES} bytes.",
            code="storage.invalid_key",
        )
    if "\\" in value or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidInput(
            f"The object {what} {value!r} contains a backslash or a control character.",
            code="storage.invalid_key",
        )


def _check_segments(value: str, segments: list[str], *, what: str) -> None:
    if value.startswith("/"):
        raise InvalidInput(
            f"The object {what} {value!r} must be relative, not start with '/'.", code="storage.invalid_key"
        )
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInput(
                f"The object {what} {value!r} has an empty, '.' or '..' segment.",
                code="storage.invalid_key",
            )
