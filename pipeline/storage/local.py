"""The embedded object store: a local folder, chosen by ``VIDPIPE_STORAGE_URL=file:///abs/dir``.

A key is a path below the folder. Writes go to a temporary file inside the folder's own
``.vidpipe-tmp`` directory and are renamed into place, so a reader never sees half an
object and a crashed write leaves nothing under a real key. The content type is kept in
the ``user.mime_type`` extended attribute where the file system allows it, and guessed
from the key's suffix otherwise.

Multipart uploads keep their parts below ``.vidpipe-tmp/multipart/<upload id>/`` as files
named by part number and MD5 (the part's ETag, as on S3), beside a small manifest naming the
key; completing one joins the parts into a temporary file that is renamed into place. The
local store has no web address of its own, so its ``presign_*`` methods answer ``None`` and
the API serves and receives its bytes through signed URLs of its own.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import ConfigurationError, InvalidInput
from pipeline.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_GET_SIZE,
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

logger = logging.getLogger(__name__)

TMP_DIR_NAME = ".vidpipe-tmp"
"""Holds writes in progress; a key may not start with this segment."""

_CONTENT_TYPE_XATTR = "user.mime_type"
_PLACE_ATTEMPTS = 3
_MULTIPART_DIR = "multipart"
_MANIFEST = "upload.json"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART_FILE = re.compile(r"(\d{5})-([0-9a-f]{32})\.part")


class LocalStorage:
    """Objects as files below one folder.

    Args:
        root: The folder; created on the first write or by :meth:`check`.
    """

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ConfigurationError(f"The local object folder {root} must be an absolute path.")
        self.root = root
        self.description = f"local folder {root}"

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        """Copy ``path`` into the store in chunks, then rename it into place."""
        target = self._path(key)
        started = time.monotonic()
        stored = await asyncio.to_thread(self._write_from_path, key, target, path, content_type)
        logger.debug("Stored %s (%d bytes) in %.2f s.", self.uri(key), stored.size, time.monotonic() - started)
        return stored

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Write ``data`` into the store, renamed into place when complete."""
        target = self._path(key)
        return await asyncio.to_thread(self._write, key, target, io.BytesIO(data), content_type)

    async def get_bytes(self, key: str, *, max_size: int = DEFAULT_MAX_GET_SIZE) -> bytes:
        """Read a small object whole, refusing one larger than ``max_size``."""
        target = self._path(key)
        return await asyncio.to_thread(self._read_small, key, target, max_size)

    async def download(self, key: str, dest: Path) -> None:
        """Copy the object to ``dest`` in chunks; ``dest`` appears only when complete."""
        target = self._path(key)
        await asyncio.to_thread(self._copy_out, key, target, dest)

    async def copy(self, source: str, target: str) -> StoredObject:
        """Copy the stored file to ``target``, keeping its content type."""
        original = await self.stat(source)
        if original is None:
            raise object_missing(source)
        try:
            return await self.put_file(target, self._path(source), original.content_type)
        except FileNotFoundError:
            # Deleted between the look and the read.
            raise object_missing(source) from None

    @contextlib.asynccontextmanager
    async def local_path(self, key: str) -> AsyncIterator[Path]:
        """Yield the stored file itself; callers read it and must not change it."""
        target = self._path(key)
        if not await asyncio.to_thread(target.is_file):
            raise object_missing(key)
        yield target

    async def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Read the file in pieces of at most ``chunk_size`` bytes, each in a worker thread."""
        target = self._path(key)
        handle = await asyncio.to_thread(_open_object, key, target)
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> StoredObject | None:
        """Describe the file, or ``None`` when there is none."""
        target = self._path(key)
        return await asyncio.to_thread(_describe, key, target, with_content_type=True)

    async def exists(self, key: str) -> bool:
        """Whether a file has this key."""
        return await self.stat(key) is not None

    async def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty; a missing file is fine."""
        target = self._path(key)
        await asyncio.to_thread(self._remove, target)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every file whose key starts with ``prefix``; the empty prefix is refused."""
        refuse_empty_prefix(prefix)
        doomed = await self.list(prefix)
        await asyncio.to_thread(self._remove_all, [self._path(stored.key) for stored in doomed])
        logger.debug("Deleted %d objects under %s.", len(doomed), self.uri(prefix))
        return len(doomed)

    async def list(self, prefix: str) -> builtins.list[StoredObject]:
        """Every file whose key starts with ``prefix``, sorted by key."""
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    async def check(self) -> None:
        """Create the folder if needed and confirm it is a writable directory."""
        await asyncio.to_thread(self._check)

    def uri(self, key: str) -> str:
        """The ``file://`` address of the object (or of a prefix)."""
        return (self.root / key).as_uri() if key else self.root.as_uri()

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None = None,
        *,
        max_size: int | None = None,
    ) -> StoredObject:
        """Append ``chunks`` to a temporary file, a megabyte at a time, then rename it into place."""
        target = self._path(key)
        started = time.monotonic()
        out, tmp = await asyncio.to_thread(self._open_tmp)
        try:
            with out:
                await _spool(limited(chunks, key, max_size), out)
                await asyncio.to_thread(_sync, out)
            stored = await asyncio.to_thread(self._commit, tmp, key, target, content_type)
        except BaseException:
            _unlink(tmp)
            raise
        logger.debug(
            "Stored %s (%d bytes) from a stream in %.2f s.", self.uri(key), stored.size, time.monotonic() - started
        )
        return stored

    def presign_get(self, key: str, *, expires_in: float) -> str | None:
        """``None``: a local folder has no web address; the API serves its objects itself."""
        validate_key(key)
        return None

    def presign_put(self, key: str, *, content_type: str, expires_in: float) -> str | None:
        """``None``: the API receives uploads to a local folder itself."""
        validate_key(key)
        return None

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires_in: float) -> str | None:
        """``None``: the API receives the parts of a local multipart upload itself."""
        validate_key(key)
        validate_part_number(part_number)
        return None

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        """Make the upload's folder and manifest; the id is random, so it cannot be guessed."""
        self._path(key)
        upload_id = uuid.uuid4().hex
        manifest = {"key": key, "content_type": content_type or guess_content_type(key)}
        await asyncio.to_thread(self._write_manifest, self._upload_dir(key, upload_id), manifest)
        logger.debug("Started multipart upload %s to %s.", upload_id, self.uri(key))
        return upload_id

    async def upload_part(
        self, key: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes], *, max_size: int
    ) -> UploadedPart:
        """Write the part beside the others, hashing it on the way, and rename it into place."""
        validate_part_number(part_number)
        folder = self._upload_dir(key, upload_id)
        await asyncio.to_thread(self._read_manifest, folder, key)
        digest = hashlib.md5(usedforsecurity=False)
        try:
            out, tmp = await asyncio.to_thread(self._open_tmp, folder)
        except FileNotFoundError:
            raise upload_missing(key) from None
        try:
            with out:
                size = await _spool(limited(chunks, key, max_size), out, digest)
                await asyncio.to_thread(_sync, out)
            etag = digest.hexdigest()
            await asyncio.to_thread(_place_part, folder, part_number, etag, tmp)
        except FileNotFoundError:
            # The upload was completed or aborted while this part was arriving.
            _unlink(tmp)
            raise upload_missing(key) from None
        except BaseException:
            _unlink(tmp)
            raise
        return UploadedPart(part_number=part_number, etag=etag, size=size)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        """The part files of the upload, by part number."""
        folder = self._upload_dir(key, upload_id)
        await asyncio.to_thread(self._read_manifest, folder, key)
        return await asyncio.to_thread(_list_parts, folder, key)

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[PartTag]) -> StoredObject:
        """Check ``parts`` as S3 would, join them into the object, then remove the upload's folder."""
        target = self._path(key)
        folder = self._upload_dir(key, upload_id)
        started = time.monotonic()
        stored = await asyncio.to_thread(self._join_parts, key, target, folder, parts)
        logger.debug(
            "Completed multipart upload %s to %s (%d parts, %d bytes) in %.2f s.",
            upload_id,
            self.uri(key),
            len(parts),
            stored.size,
            time.monotonic() - started,
        )
        return stored

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Remove the upload's folder and its parts, if it is still there."""
        folder = self._upload_dir(key, upload_id)
        await asyncio.to_thread(_retire, folder)

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] == TMP_DIR_NAME:
            raise InvalidInput(
                f"The object key {key!r} starts with {TMP_DIR_NAME!r}, which the local store reserves.",
                code="storage.invalid_key",
            )
        return self.root.joinpath(*key.split("/"))

    def _write_from_path(self, key: str, target: Path, path: Path, content_type: str | None) -> StoredObject:
        with path.open("rb") as source:
            return self._write(key, target, source, content_type)

    def _write(self, key: str, target: Path, source: BinaryIO, content_type: str | None) -> StoredObject:
        out, tmp = self._open_tmp()
        try:
            with out:
                shutil.copyfileobj(source, out, DEFAULT_CHUNK_SIZE)
                _sync(out)
            return self._commit(tmp, key, target, content_type)
        except BaseException:
            _unlink(tmp)
            raise

    def _open_tmp(self, folder: Path | None = None) -> tuple[BinaryIO, Path]:
        """A new private file in ``folder``, or in the store's temporary folder (made if needed)."""
        if folder is None:
            folder = self.root / TMP_DIR_NAME
            folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
        return os.fdopen(fd, "wb"), Path(tmp_name)

    def _commit(self, tmp: Path, key: str, target: Path, content_type: str | None) -> StoredObject:
        """Give a complete temporary file its mode and content type and rename it to ``target``."""
        # mkstemp makes private files; stored objects are ordinary readable files.
        os.chmod(tmp, 0o644)
        _set_content_type(str(tmp), content_type or guess_content_type(key))
        self._place(tmp, target)
        stored = _describe(key, target, with_content_type=True)
        assert stored is not None, "a file just renamed into place is there"
        return stored

    def _place(self, tmp: Path, target: Path) -> None:
        # TODO(storage): a key below another object's key ("a" stored, then "a/b") raises a raw
        # OSError here, while S3 accepts both; the pipeline's key layout never produces that.
        # A concurrent delete may prune the folder between mkdir and rename; try again then.
        for attempt in range(1, _PLACE_ATTEMPTS + 1):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, target)
                return
            except FileNotFoundError:
                if attempt == _PLACE_ATTEMPTS:
                    raise

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        self._path(key)
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            # Not one this store made; refusing it here also keeps it from naming another folder.
            raise upload_missing(key)
        return self.root / TMP_DIR_NAME / _MULTIPART_DIR / upload_id

    def _write_manifest(self, folder: Path, manifest: dict[str, Any]) -> None:
        folder.mkdir(parents=True)
        (folder / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    def _read_manifest(self, folder: Path, key: str) -> dict[str, Any]:
        try:
            manifest: dict[str, Any] = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise upload_missing(key) from None
        if manifest.get("key") != key:
            raise upload_missing(key)
        return manifest

    def _join_parts(self, key: str, target: Path, folder: Path, parts: Sequence[PartTag]) -> StoredObject:
        manifest = self._read_manifest(folder, key)
        held = _list_parts(folder, key)
        check_completion(parts, held)
        files = {part.part_number: folder / _part_name(part.part_number, part.etag) for part in held}
        out, tmp = self._open_tmp()
        try:
            with out:
                for number, _etag in parts:
                    with files[number].open("rb") as piece:
                        shutil.copyfileobj(piece, out, DEFAULT_CHUNK_SIZE)
                _sync(out)
            stored = self._commit(tmp, key, target, manifest.get("content_type"))
        except FileNotFoundError:
            # Another completion or an abort took the parts away while this one was joining them.
            _unlink(tmp)
            raise upload_missing(key) from None
        except BaseException:
            _unlink(tmp)
            raise
        _retire(folder)
        return stored

    def _read_small(self, key: str, target: Path, max_size: int) -> bytes:
        with _open_object(key, target) as handle:
            # Read one byte past the limit rather than trusting a size taken before the read.
            data = handle.read(max_size + 1)
        if len(data) > max_size:
            raise object_too_large(key, max_size)
        return data

    def _copy_out(self, key: str, target: Path, dest: Path) -> None:
        with _open_object(key, target) as source:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, DEFAULT_CHUNK_SIZE)
                os.replace(tmp_name, dest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)
                raise

    def _remove_all(self, targets: builtins.list[Path]) -> None:
        for target in targets:
            self._remove(target)

    def _remove(self, target: Path) -> None:
        try:
            target.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        self._prune_empty_parents(target.parent)

    def _prune_empty_parents(self, folder: Path) -> None:
        # Empty folders would pile up under the root as videos are deleted.
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _list(self, prefix: str) -> builtins.list[StoredObject]:
        parent = prefix.rpartition("/")[0]
        base = self.root.joinpath(*parent.split("/")) if parent else self.root
        found: builtins.list[StoredObject] = []
        for folder, subfolders, files in os.walk(base):
            if Path(folder) == self.root and TMP_DIR_NAME in subfolders:
                subfolders.remove(TMP_DIR_NAME)
            for name in files:
                key = (Path(folder) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stored = _describe(key, Path(folder) / name, with_content_type=False)
                    if stored is not None:
                        found.append(stored)
        return sorted(found, key=lambda stored: stored.key)

    def _check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"The local object folder {self.root} cannot be created: {error.strerror}.",
                code="config.storage",
            ) from error
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"The local object folder {self.root} is not writable by this process.", code="config.storage"
            )


async def _spool(chunks: AsyncIterable[bytes], out: BinaryIO, digest: Any = None) -> int:
    """Write ``chunks`` to ``out`` a megabyte at a time, each write in a worker thread."""
    size = 0
    async for piece in coalesce(chunks, DEFAULT_CHUNK_SIZE):
        size += len(piece)
        await asyncio.to_thread(_write_piece, out, piece, digest)
    return size


def _write_piece(out: BinaryIO, piece: bytes, digest: Any) -> None:
    out.write(piece)
    if digest is not None:
        digest.update(piece)


def _sync(out: BinaryIO) -> None:
    out.flush()
    # Without fsync a crash soon after the rename can leave an empty file under the key.
    os.fsync(out.fileno())


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _part_name(part_number: int, etag: str) -> str:
    return f"{part_number:05d}-{etag}.part"


def _place_part(folder: Path, part_number: int, etag: str, tmp: Path) -> None:
    """Rename the new part into place, then drop an earlier upload of the same part number."""
    name = _part_name(part_number, etag)
    os.replace(tmp, folder / name)
    for stale in folder.glob(f"{part_number:05d}-*.part"):
        if stale.name != name:
            _unlink(stale)


def _retire(folder: Path) -> None:
    """Take an upload's folder away in one step, then delete it.

    The rename is atomic, so a listing sees every part or no upload at all, never the half
    that a slow recursive delete has not reached yet.
    """
    retired = folder.with_name(f"{folder.name}.ended-{uuid.uuid4().hex}")
    try:
        os.rename(folder, retired)
    except FileNotFoundError:
        return
    shutil.rmtree(retired, ignore_errors=True)


def _list_parts(folder: Path, key: str) -> list[UploadedPart]:
    found: dict[int, tuple[float, UploadedPart]] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        raise upload_missing(key) from None
    for entry in entries:
        match = _PART_FILE.fullmatch(entry.name)
        if match is None:
            continue
        try:
            facts = entry.stat()
        except FileNotFoundError:
            continue
        part = UploadedPart(part_number=int(match[1]), etag=match[2], size=facts.st_size)
        # Two uploads of one part racing can leave both files for a moment; the newer one counts.
        if part.part_number not in found or found[part.part_number][0] < facts.st_mtime:
            found[part.part_number] = (facts.st_mtime, part)
    return [found[number][1] for number in sorted(found)]


def _open_object(key: str, target: Path) -> BinaryIO:
    try:
        return target.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise object_missing(key) from None


def _describe(key: str, target: Path, *, with_content_type: bool) -> StoredObject | None:
    try:
        facts = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not target.is_file():
        return None
    return StoredObject(
        key=key,
        size=facts.st_size,
        # Every write renames a new file into place: a new inode, usually a new mtime. Together
        # with the size that changes the tag on each write without hashing the whole file.
        etag=f"{facts.st_ino:x}-{facts.st_mtime_ns:x}-{facts.st_size:x}",
        content_type=_content_type(target, key) if with_content_type else None,
        modified=datetime.fromtimestamp(facts.st_mtime, UTC),
    )


def _set_content_type(path: str, content_type: str) -> None:
    with contextlib.suppress(AttributeError, OSError):
        # Not every file system (or platform) has user attributes; the suffix guess stands in.
        os.setxattr(path, _CONTENT_TYPE_XATTR, content_type.encode())


def _content_type(target: Path, key: str) -> str:
    try:
        return os.getxattr(target, _CONTENT_TYPE_XATTR).decode()
    except (AttributeError, OSError, UnicodeDecodeError):
        return guess_content_type(key)
