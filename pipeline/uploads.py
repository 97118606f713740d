"""Uploads through the API: announcing a video, moving its bytes, and starting its job.

A client announces a video (title, file name, type, size) and gets back where to send the
bytes: one presigned PUT for an ordinary file, or a multipart upload (part URLs, listable and
resumable) above ``VIDPIPE_MULTIPART_THRESHOLD_MB``. On S3 the URLs go straight to the bucket;
the local store has no address of its own, so its URLs point at the API's signed endpoint,
whose token names the object, the part and the expiry (:class:`Links`). Completing the
upload checks that the object holds the announced size and starts the job through
:func:`pipeline.submit.submit_stored`, the path every entry point shares.

The ``uploads`` row is the upload's state: ``pending`` until a completion claims it with a
conditional update, which also records the job, so completing twice (or at once from two
requests) starts one job. ``idempotency_keys`` lets a client retry an announcement safely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, Uuid, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pipeline import keys
from pipeline.db.models import Base, Job, User, Video, utcnow
from pipeline.errors import Conflict, InvalidInput, NotFound, PermanentError, TransientError
from pipeline.languages import normalise_language
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.states import VideoStatus
from pipeline.storage.base import MAX_PART_NUMBER, PartTag, SizeLimitExceeded, Storage, UploadedPart
from pipeline.submit import submit_stored

logger = logging.getLogger(__name__)

SIGNED_PATH = "/api/v1/signed"
"""Where the API serves the local store's signed URLs, below ``VIDPIPE_PUBLIC_URL``."""
FIRST_PARTS = 100
"""Part URLs handed out with an announcement; a client asks for the rest as it goes."""
MAX_PARTS_PER_REQUEST = 1000
KNOWN_CONTAINERS = frozenset({"application/mp4", "application/x-matroska", "application/ogg", "application/mxf"})
"""Media types of video containers that are not spelled ``video/*``."""

_MIB = 2**20
_SIGNING_SALT = "vidpipe.signed-url"
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")


class UploadMethod:
    PUT = "put"
    MULTIPART = "multipart"


class UploadStatus:
    PENDING = "pending"
    COMPLETED = "completed"


class Upload(Base):
    """The upload of one announced video's source: how its bytes arrive, and whether they have."""

    __tablename__ = "uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), unique=True)
    method: Mapped[str] = mapped_column(String(16))
    """``put`` (one request) or ``multipart``."""
    status: Mapped[str] = mapped_column(String(16), default=UploadStatus.PENDING)
    """``pending`` until a completion claims it; then ``completed`` with ``job_id`` set."""
    key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    """The size the client announced; the stored object must have exactly this many bytes."""
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    part_count: Mapped[int | None] = mapped_column(Integer)
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    """The store's multipart upload id."""
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        # Deferred: the completion claims the upload (naming the job) before it writes the job.
        ForeignKey("jobs.id", ondelete="SET NULL", deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a member sent with an announcement, and what it made."""

    # TODO(idempotency): keys are kept as long as their video; a purge of keys older than a day
    # (the usual retry window) would keep the table from growing with every announcement.

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the announcement as sent, so a reused key with another body is recognised."""
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadTooLarge(InvalidInput):
    """More bytes than allowed: past ``VIDPIPE_MAX_UPLOAD_MB`` or past the announced size (413)."""

    code = "upload.too_large"


class SignedUrlRejected(PermanentError):
    """A signed URL whose signature does not verify or whose time is up; the API answers 403."""

    code = "url.invalid"


@dataclass(frozen=True)
class Announcement:
    """What a client says about a video before sending it."""

    title: str
    filename: str
    content_type: str
    size: int
    description: str = ""
    language: str | None = None


@dataclass(frozen=True)
class Announced:
    video: Video
    upload: Upload
    replayed: bool
    """True when an earlier request with the same idempotency key made them."""


@dataclass(frozen=True)
class PartUrl:
    part_number: int
    url: str


@dataclass(frozen=True)
class UploadPlan:
    """Where and how a client sends the bytes, as the API answers it."""

    method: str
    expires_at: datetime
    url: str | None = None
    headers: dict[str, str] | None = None
    upload_id: str | None = None
    part_size: int | None = None
    part_count: int | None = None
    parts: list[PartUrl] | None = None


@dataclass(frozen=True)
class SignedAction:
    """What a verified local URL allows: reading an object, or writing an upload or one part."""

    action: str
    """``get``, ``storyboard`` (the WebVTT index, served with its sprite URLs signed), ``put`` or ``part``."""
    key: str
    video_id: uuid.UUID | None = None
    upload_id: str | None = None
    part_number: int | None = None
    max_size: int | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class StartedJob:
    id: uuid.UUID
    status: str


class Links:
    """URLs for moving bytes, valid until one shared expiry: presigned by the store, or signed here.

    Args:
        settings: Supplies the secret key, the public URL and how long URLs stay valid.
        storage: Presigns where it can (S3); where it cannot (a local folder) the URL points
            at the API's signed endpoint instead.
    """

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self._storage = storage
        self._base = f"{settings.public_url}{SIGNED_PATH}"
        self._serializer = URLSafeSerializer(settings.secret_key, salt=_SIGNING_SALT)
        self._seconds = settings.upload_url_seconds
        self._expires = math.floor(time.time() + settings.upload_url_seconds)
        self.expires_at = datetime.fromtimestamp(self._expires, UTC)

    def get(self, key: str) -> str:
        """Where to read the object."""
        return self._storage.presign_get(key, expires_in=self._seconds) or self._signed({"a": "get", "k": key})

    def storyboard(self, key: str) -> str:
        """Where to read a storyboard's WebVTT index, always through the API.

        The index names its sprites by relative file names, which a presigned URL's signature
        does not cover; the API rewrites them to signed URLs as it serves the file.
        """
        return self._signed({"a": "storyboard", "k": key})

    def put(self, upload: Upload) -> str:
        """Where to PUT the whole source of a single-request upload."""
        # TODO(uploads): S3 cannot revoke a presigned URL, so until it expires a client holding it
        # can replace the source of a video already processed. Uploading to a staging key that
        # completion copies into place would close that, at the price of a server-side copy.
        url = self._storage.presign_put(upload.key, content_type=upload.content_type, expires_in=self._seconds)
        return url or self._signed(
            {"a": "put", "k": upload.key, "v": str(upload.video_id), "n": upload.size, "c": upload.content_type}
        )

    def part(self, upload: Upload, part_number: int) -> str:
        """Where to PUT one part of a multipart upload."""
        assert upload.upload_id is not None and upload.part_size is not None, "a multipart upload"
        url = self._storage.presign_part(upload.key, upload.upload_id, part_number, expires_in=self._seconds)
        return url or self._signed(
            {
                "a": "part",
                "k": upload.key,
                "v": str(upload.video_id),
                "u": upload.upload_id,
                "p": part_number,
                "n": upload.part_size,
            }
        )

    def _signed(self, claims: dict[str, Any]) -> str:
        token = self._serializer.dumps({**claims, "e": self._expires})
        return f"{self._base}?token={token}"


def read_signed(settings: Settings, token: str) -> SignedAction:
    """Verify a token of the API's signed endpoint and say what it allows.

    Raises:
        SignedUrlRejected: the signature does not verify (``url.invalid``) or the URL has
            expired (``url.expired``).
    """
    try:
        claims = URLSafeSerializer(settings.secret_key, salt=_SIGNING_SALT).loads(token)
    except BadSignature:
        raise SignedUrlRejected("This URL is not one the API signed, or it was altered.") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("e"), int):
        raise SignedUrlRejected("This URL is not one the API signed, or it was altered.")
    if claims["e"] < time.time():
        raise SignedUrlRejected("This URL has expired; ask the API for a new one.", code="url.expired")
    video = claims.get("v")
    return SignedAction(
        action=str(claims.get("a")),
        key=str(claims.get("k")),
        video_id=uuid.UUID(video) if video else None,
        upload_id=claims.get("u"),
        part_number=claims.get("p"),
        max_size=claims.get("n"),
        content_type=claims.get("c"),
    )


def check_announcement(announcement: Announcement, settings: Settings) -> Announcement:
    """The announcement with its title trimmed and language normalised, or the reason it is refused.

    Raises:
        UploadTooLarge: the size is past ``VIDPIPE_MAX_UPLOAD_MB``.
        InvalidInput: an empty title, a size of 0 or less, an unsafe file name, a media type
            that is not a video, or a language that is not a tag.
    """
    title = announcement.title.strip()
    if not title:
        raise InvalidInput("Give the video a title.", code="video.title_required")
    if announcement.size <= 0:
        raise InvalidInput("The size must be the file's length in bytes, above 0.", code="upload.invalid_size")
    if announcement.size > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"The file is larger than the largest video accepted ({settings.max_upload_bytes // _MIB} MiB).",
            details={"max_size": settings.max_upload_bytes},
        )
    _check_filename(announcement.filename)
    content_type = _checked_content_type(announcement.content_type)
    language = None
    if announcement.language is not None:
        language = normalise_language(announcement.language)
        if language is None:
            raise InvalidInput(
                f"{announcement.language!r} is not a language tag; use one such as ko, en or en-US.",
                code="input.language",
            )
    return Announcement(
        title=title,
        filename=announcement.filename,
        content_type=content_type,
        size=announcement.size,
        description=announcement.description,
        language=language,
    )


async def announce(
    session: AsyncSession,
    runtime: Runtime,
    announcement: Announcement,
    *,
    owner_id: uuid.UUID,
    exempt: bool,
    idempotency_key: str | None = None,
) -> Announced:
    """Create the video (awaiting its upload) and its upload, or find what a retried request made.

    Args:
        owner_id: The member the video belongs to.
        exempt: Skip the quotas (admins).
        idempotency_key: The client's ``Idempotency-Key``; a repeat with the same body answers
            with the same video and upload.

    Raises:
        InvalidInput: see :func:`check_announcement`; ``idempotency.key_reused`` when the key
            came before with another body.
        Conflict: ``quota.videos_exceeded`` or ``quota.bytes_exceeded``.
    """
    request_hash = hashlib.sha256(json.dumps(asdict(announcement), sort_keys=True).encode()).hexdigest()
    checked = check_announcement(announcement, runtime.settings)
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
        earlier = await _replay(session, owner_id, idempotency_key, request_hash)
        if earlier is not None:
            return earlier
    if not exempt:
        # TODO(uploads): an announced video whose upload never comes keeps its share of the quota
        # until the member aborts it; a scheduler pass aborting uploads idle past
        # VIDPIPE_UPLOAD_URL_MS would hand it back on its own.
        await _check_quota(session, runtime.settings, owner_id, checked.size)

    video, upload = await _new_upload(runtime, checked, owner_id)
    session.add_all([video, upload])
    if idempotency_key is not None:
        session.add(IdempotencyKey(user_id=owner_id, key=idempotency_key, request_hash=request_hash, video_id=video.id))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if upload.upload_id is not None:
            await runtime.storage.abort_multipart(upload.key, upload.upload_id)
        if idempotency_key is None:
            raise
        # The idempotency key is the only unique value here: the same request ran at the same moment.
        earlier = await _replay(session, owner_id, idempotency_key, request_hash)
        if earlier is None:
            raise
        return earlier
    logger.info(
        "Video %s was announced by user %s: %d bytes by %s upload.", video.id, owner_id, upload.size, upload.method
    )
    return Announced(video=video, upload=upload, replayed=False)


def plan(links: Links, upload: Upload, *, first_parts: int = FIRST_PARTS) -> UploadPlan:
    """Where to send the bytes: one URL, or the first part URLs of a multipart upload."""
    if upload.method == UploadMethod.PUT:
        return UploadPlan(
            method=UploadMethod.PUT,
            url=links.put(upload),
            headers={"Content-Type": upload.content_type},
            expires_at=links.expires_at,
        )
    count = upload.part_count or 0
    return UploadPlan(
        method=UploadMethod.MULTIPART,
        upload_id=upload.upload_id,
        part_size=upload.part_size,
        part_count=count,
        parts=[PartUrl(number, links.part(upload, number)) for number in range(1, min(count, first_parts) + 1)],
        expires_at=links.expires_at,
    )


def part_urls(links: Links, upload: Upload, part_numbers: Sequence[int]) -> list[PartUrl]:
    """URLs for the given parts of a pending multipart upload.

    Raises:
        Conflict: the upload is not multipart, or not pending.
        InvalidInput: no numbers, too many, or a number outside the upload's parts.
    """
    _require_pending_multipart(upload)
    count = upload.part_count or 0
    if not part_numbers or len(part_numbers) > MAX_PARTS_PER_REQUEST:
        raise InvalidInput(
            f"Ask for between 1 and {MAX_PARTS_PER_REQUEST} part numbers at a time.", code="upload.invalid_part"
        )
    outside = sorted({n for n in part_numbers if not 1 <= n <= count})
    if outside:
        raise InvalidInput(
            f"This upload has parts 1 to {count}; {outside[0]} is not one of them.",
            code="upload.invalid_part",
            details={"part_count": count},
        )
    return [PartUrl(number, links.part(upload, number)) for number in sorted(set(part_numbers))]


async def uploaded_parts(storage: Storage, upload: Upload) -> list[UploadedPart]:
    """The parts the store holds for a pending multipart upload, to resume it."""
    _require_pending_multipart(upload)
    assert upload.upload_id is not None
    return await storage.list_parts(upload.key, upload.upload_id)


async def find_upload(session: AsyncSession, video: Video) -> Upload:
    """The upload of a video announced through the API.

    Raises:
        NotFound: the video came another way (the command line, the drop folder).
    """
    upload = await session.scalar(select(Upload).where(Upload.video_id == video.id))
    if upload is None:
        raise NotFound(f"The video {video.id} was not uploaded through the API.", code="upload.not_found")
    return upload


async def complete(
    session: AsyncSession, runtime: Runtime, video: Video, upload: Upload, parts: Sequence[PartTag] | None = None
) -> StartedJob:
    """Finish the upload and start the video's job; a completed upload answers with its job.

    A multipart upload is checked before it is joined (every part there, the sizes adding up
    to the announced size), so a client can still re-send a part. ``parts`` are the client's
    ETags; without them the parts the store holds are used.

    Raises:
        Conflict: parts are missing (``upload.parts_missing``) or the object has not arrived
            (``upload.incomplete``).
        InvalidInput: the bytes differ from the announced size (``upload.size_mismatch``) or
            an ETag differs from the part's (``storage.invalid_part``).
    """
    if upload.status == UploadStatus.COMPLETED:
        return await _job_of(session, upload)
    # Joining parts can take a while; no transaction stays open meanwhile (the rows stay loaded).
    await session.commit()
    if upload.method == UploadMethod.MULTIPART:
        await _join_parts(runtime.storage, upload, parts)
    stored = await runtime.storage.stat(upload.key)
    if stored is None:
        raise Conflict(
            "The video's file has not been uploaded yet; upload it, then complete the upload.",
            code="upload.incomplete",
        )
    _check_size(upload, stored.size)
    return await _start(session, runtime, video, upload)


async def receive_source(
    session: AsyncSession,
    runtime: Runtime,
    video: Video,
    upload: Upload,
    chunks: AsyncIterable[bytes],
    *,
    content_length: int | None,
) -> StartedJob:
    """Store a source streamed through the API, then start the job as :func:`complete` does.

    Raises:
        Conflict: the upload is already complete (``upload.already_completed``).
        UploadTooLarge: more bytes than announced.
        InvalidInput: fewer bytes than announced (``upload.size_mismatch``).
    """
    require_pending(upload)
    if content_length is not None and content_length > upload.size:
        raise _past_announced(upload)
    # No transaction stays open while the body streams in, however long that takes.
    await session.commit()
    try:
        stored = await runtime.storage.put_stream(upload.key, chunks, upload.content_type, max_size=upload.size)
    except SizeLimitExceeded:
        raise _past_announced(upload) from None
    _check_size(upload, stored.size)
    if upload.upload_id is not None:
        # The client chose to stream instead; the multipart upload it was offered is not needed.
        await runtime.storage.abort_multipart(upload.key, upload.upload_id)
    return await _start(session, runtime, video, upload)


async def receive_signed(
    session: AsyncSession,
    runtime: Runtime,
    action: SignedAction,
    chunks: AsyncIterable[bytes],
    *,
    content_length: int | None,
) -> str | None:
    """Store the body of a PUT to the API's signed URL (the local store's upload URLs).

    Returns:
        The ETag to answer with (a part's MD5, as S3 answers).

    Raises:
        Conflict: the upload has been completed or aborted since the URL was made.
        UploadTooLarge: more bytes than the URL allows.
    """
    upload = await session.scalar(select(Upload).where(Upload.video_id == action.video_id))
    if upload is None or upload.key != action.key or upload.status != UploadStatus.PENDING:
        raise Conflict(
            "This upload was completed or aborted, so its URL no longer takes data.", code="upload.not_pending"
        )
    limit = action.max_size or 0
    if content_length is not None and content_length > limit:
        raise _too_large_for_url(limit)
    await session.commit()
    try:
        if action.action == "part":
            if action.upload_id is None or action.upload_id != upload.upload_id or action.part_number is None:
                raise Conflict("This part URL belongs to an upload that has ended.", code="upload.not_pending")
            part = await runtime.storage.upload_part(
                upload.key, action.upload_id, action.part_number, chunks, max_size=limit
            )
            return part.etag
        stored = await runtime.storage.put_stream(upload.key, chunks, action.content_type, max_size=limit)
    except SizeLimitExceeded:
        raise _too_large_for_url(limit) from None
    return stored.etag


async def abort(session: AsyncSession, runtime: Runtime, video: Video, upload: Upload) -> None:
    """Abandon a pending upload: its parts, any bytes already stored, and the announced video.

    Raises:
        Conflict: the upload is complete; delete the video instead.
    """
    # TODO(uploads): deleting a video another way (DELETE /videos/{id}) while its multipart
    # upload is pending removes its objects but not the parts, which S3 keeps (and bills) until
    # a lifecycle rule for incomplete uploads drops them; that path should end here too.
    require_pending(upload)
    if upload.upload_id is not None:
        await runtime.storage.abort_multipart(upload.key, upload.upload_id)
    await runtime.storage.delete_prefix(keys.video_prefix(video.id))
    # The upload and any idempotency key go with the video (ON DELETE CASCADE).
    await session.execute(delete(Video).where(Video.id == video.id))
    await session.commit()
    logger.info("The upload of video %s was aborted and the announced video removed.", video.id)


def _check_filename(filename: str) -> None:
    name = filename.strip()
    if (
        not name
        or len(filename) > 255
        or name in (".", "..")
        or "/" in filename
        or "\\" in filename
        or any(ord(char) < 32 or ord(char) == 127 for char in filename)
    ):
        raise InvalidInput(
            "The file name must be a plain name of at most 255 characters, without folders or control characters.",
            code="upload.invalid_filename",
        )


def _checked_content_type(content_type: str) -> str:
    media_type = content_type.strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type) or not (media_type.startswith("video/") or media_type in KNOWN_CONTAINERS):
        accepted = ["video/*", *sorted(KNOWN_CONTAINERS)]
        raise InvalidInput(
            f"{content_type!r} is not a video media type; send one such as video/mp4.",
            code="upload.unsupported_type",
            details={"accepted": accepted},
        )
    return media_type


def _check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise InvalidInput(
            "An Idempotency-Key must be 1 to 255 printable ASCII characters.", code="idempotency.invalid_key"
        )


async def _replay(session: AsyncSession, owner_id: uuid.UUID, key: str, request_hash: str) -> Announced | None:
    found = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == owner_id, IdempotencyKey.key == key)
    )
    if found is None:
        return None
    if found.request_hash != request_hash:
        raise InvalidInput(
            "This Idempotency-Key was used before for a different request; use a new key for a new video.",
            code="idempotency.key_reused",
        )
    video = await session.get(Video, found.video_id)
    upload = await session.scalar(select(Upload).where(Upload.video_id == found.video_id))
    assert video is not None and upload is not None, "the key goes when its video goes"
    logger.info("Idempotency key of user %s answered again with video %s.", owner_id, video.id)
    return Announced(video=video, upload=upload, replayed=True)


async def _check_quota(session: AsyncSession, settings: Settings, owner_id: uuid.UUID, size: int) -> None:
    # Holding the member's row makes two announcements of one member count one after the other
    # (PostgreSQL); SQLite has one writer at a time anyway.
    await session.execute(select(User.id).where(User.id == owner_id).with_for_update())
    count, used = (
        await session.execute(
            select(func.count(Video.id), func.coalesce(func.sum(func.coalesce(Video.size, Upload.size)), 0))
            .select_from(Video)
            .outerjoin(Upload, Upload.video_id == Video.id)
            .where(Video.owner_id == owner_id)
        )
    ).one()
    if count >= settings.quota_videos:
        raise Conflict(
            f"You have {count} videos, the most one member may keep; delete some before uploading more.",
            code="quota.videos_exceeded",
            details={"limit": settings.quota_videos, "used": count},
        )
    if used + size > settings.quota_bytes:
        raise Conflict(
            f"This file would take your videos past {settings.quota_bytes // _MIB} MiB, the space one member "
            "may use; delete some videos first.",
            code="quota.bytes_exceeded",
            details={"limit": settings.quota_bytes, "used": int(used), "requested": size},
        )


async def _new_upload(runtime: Runtime, announcement: Announcement, owner_id: uuid.UUID) -> tuple[Video, Upload]:
    video_id = uuid.uuid4()
    source_key = keys.source_key(video_id, announcement.filename)
    video = Video(
        id=video_id,
        owner_id=owner_id,
        title=announcement.title,
        description=announcement.description,
        language=announcement.language,
        status=VideoStatus.AWAITING_UPLOAD.value,
        source_key=source_key,
        source_filename=announcement.filename,
    )
    upload = Upload(
        video_id=video_id,
        method=UploadMethod.PUT,
        status=UploadStatus.PENDING,
        key=source_key,
        content_type=announcement.content_type,
        size=announcement.size,
    )
    if announcement.size > runtime.settings.multipart_threshold_bytes:
        upload.method = UploadMethod.MULTIPART
        upload.part_size = _part_size(announcement.size, runtime.settings.upload_part_bytes)
        upload.part_count = math.ceil(announcement.size / upload.part_size)
        upload.upload_id = await runtime.storage.create_multipart(source_key, announcement.content_type)
    return video, upload


def _part_size(size: int, preferred: int) -> int:
    """The preferred part size, or a bigger whole number of MiB when 10,000 parts would not hold the file."""
    if math.ceil(size / preferred) <= MAX_PART_NUMBER:
        return preferred
    return math.ceil(size / MAX_PART_NUMBER / _MIB) * _MIB


async def _join_parts(storage: Storage, upload: Upload, parts: Sequence[PartTag] | None) -> None:
    assert upload.upload_id is not None and upload.part_count is not None
    try:
        held = await storage.list_parts(upload.key, upload.upload_id)
    except NotFound:
        # Joined already by an earlier completion whose answer was lost; the object check decides.
        return
    tags = list(parts) if parts is not None else [PartTag(part.part_number, part.etag) for part in held]
    named = {number for number, _etag in tags}
    missing = [number for number in range(1, upload.part_count + 1) if number not in named]
    if missing or len(named) != len(tags) or max(named) > upload.part_count:
        raise Conflict(
            f"{len(missing)} of the {upload.part_count} parts have not been uploaded (or named) yet.",
            code="upload.parts_missing",
            details={"missing": missing[:MAX_PARTS_PER_REQUEST], "part_count": upload.part_count},
        )
    sizes = {part.part_number: part.size for part in held}
    _check_size(upload, sum(sizes.get(number, 0) for number in named))
    try:
        await storage.complete_multipart(upload.key, upload.upload_id, sorted(tags))
    except NotFound:
        return
    except TransientError:
        # A completion racing this one, or an answer lost after the store joined the parts,
        # looks like an outage; the object tells whether the parts were joined all the same.
        stored = await storage.stat(upload.key)
        if stored is None or stored.size != upload.size:
            raise
        logger.info("The parts of video %s's upload were joined although the store failed to say so.", upload.video_id)


def _check_size(upload: Upload, received: int) -> None:
    if received != upload.size:
        raise InvalidInput(
            f"{received} bytes arrived but {upload.size} were announced; upload the whole file again.",
            code="upload.size_mismatch",
            details={"announced": upload.size, "received": received},
        )


async def _start(session: AsyncSession, runtime: Runtime, video: Video, upload: Upload) -> StartedJob:
    """Claim the upload for one new job; a claim lost to another completion answers with its job."""
    job_id = uuid.uuid4()
    claimed = await session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.status == UploadStatus.PENDING)
        .values(status=UploadStatus.COMPLETED, job_id=job_id, completed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        await session.rollback()
        await session.refresh(upload)
        return await _job_of(session, upload)
    await submit_stored(session, runtime.dispatcher, video, job_id=job_id)
    logger.info("The upload of video %s is complete (%d bytes); job %s started.", video.id, upload.size, job_id)
    return StartedJob(id=job_id, status=await session.scalar(select(Job.status).where(Job.id == job_id)) or "")


async def _job_of(session: AsyncSession, upload: Upload) -> StartedJob:
    status = await session.scalar(select(Job.status).where(Job.id == upload.job_id))
    if upload.job_id is None or status is None:
        # The job was deleted after the upload completed (a deleted and re-used video row cannot be).
        raise Conflict("The upload is complete but its job no longer exists.", code="upload.job_gone")
    return StartedJob(id=upload.job_id, status=status)


def require_pending(upload: Upload) -> None:
    """Refuse to touch an upload that is complete (``upload.already_completed``, 409)."""
    if upload.status != UploadStatus.PENDING:
        raise Conflict("The upload is already complete; its video is being processed.", code="upload.already_completed")


def _require_pending_multipart(upload: Upload) -> None:
    require_pending(upload)
    if upload.method != UploadMethod.MULTIPART or upload.upload_id is None:
        raise Conflict(
            "This upload is a single PUT, not a multipart upload; it has no parts.", code="upload.not_multipart"
        )


def _past_announced(upload: Upload) -> UploadTooLarge:
    return UploadTooLarge(
        f"The body is larger than the {upload.size} bytes announced for this video.",
        details={"max_size": upload.size},
    )


def _too_large_for_url(limit: int) -> UploadTooLarge:
    return UploadTooLarge(f"This URL accepts at most {limit} bytes.", details={"max_size": limit})
