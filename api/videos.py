"""The video routes under ``/api/v1/videos``: announce and upload a video, list videos, read one.

Uploading is three steps. ``POST /videos`` announces the file and answers with where to send
it (a presigned PUT, or a multipart upload with part URLs); the client sends the bytes there;
``POST /videos/{id}/uploads/complete`` checks them and starts the job. Simple clients may
instead stream the file through ``PUT /videos/{id}/source``. See :mod:`pipeline.uploads`.

On the local store the upload and download URLs point at this API's ``/signed?token=…``
routes: public, because the token's signature is the authorisation.

Visibility: a member lists and reads only their own videos; another account's video answers
404 ``video.not_found``. Admins see every video.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import posixpath
import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Stream
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import viewer_of, visible_video
from api.errors import Forbidden, exception_handlers
from pipeline import uploads
from pipeline.db.models import Job, SubtitleTrack, Thumbnail, Video
from pipeline.errors import InvalidInput, ObjectMissing, VidpipeError
from pipeline.runtime import Runtime
from pipeline.states import VideoStatus
from pipeline.storage.base import PartTag
from pipeline.uploads import Links, Upload, UploadTooLarge

logger = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]

DEFAULT_PAGE = 20
MAX_PAGE = 100
_SPRITE_REFERENCE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(#xywh=\d+,\d+,\d+,\d+)")


# Request and response bodies.


class AnnounceRequest(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(max_length=500)]
    filename: Annotated[str, msgspec.Meta(max_length=1024)]
    """The file's name on the client; only its extension is kept in the object key."""
    content_type: Annotated[str, msgspec.Meta(max_length=255)]
    size: int
    """The file's exact length in bytes."""
    description: Annotated[str, msgspec.Meta(max_length=10_000)] = ""
    language: Annotated[str, msgspec.Meta(max_length=35)] | None = None


class PartUrlView(msgspec.Struct):
    part_number: int
    url: str


class UploadView(msgspec.Struct, omit_defaults=True):
    """Where to send the bytes: ``url`` (+ ``headers``) for ``PUT``, part URLs for ``multipart``."""

    method: str
    expires_at: datetime
    url: str | None = None
    headers: dict[str, str] | None = None
    upload_id: str | None = None
    part_size: int | None = None
    part_count: int | None = None
    parts: list[PartUrlView] | None = None


class JobRef(msgspec.Struct):
    id: uuid.UUID
    status: str


class UploadState(msgspec.Struct):
    status: str
    """``pending`` until the upload is completed."""
    method: str
    size: int


class ImageView(msgspec.Struct):
    url: str
    content_type: str
    width: int | None
    height: int | None
    time: float | None
    """Where in the video the frame was taken, in seconds."""


class StoryboardView(msgspec.Struct):
    vtt_url: str
    """The WebVTT index players use for hover previews; its sprite references are signed URLs."""
    sprites: list[ImageView]


class TrackView(msgspec.Struct):
    id: uuid.UUID
    language: str | None
    label: str | None
    source: str
    """``file`` (uploaded with the video) or ``embedded`` (a text stream of the container)."""
    status: str
    cue_count: int
    error_code: str | None
    error_message: str | None
    url: str | None
    """The normalised WebVTT, once the track is ready."""


class VideoView(msgspec.Struct):
    """A video with its probe facts, its latest job and URLs for its images and subtitles."""

    id: uuid.UUID
    title: str
    description: str
    language: str | None
    status: str
    owner_id: uuid.UUID | None
    source_filename: str
    created_at: datetime
    updated_at: datetime
    size: int | None
    sha256: str | None
    container: str | None
    duration: float | None
    width: int | None
    height: int | None
    display_width: int | None
    display_height: int | None
    rotation: int | None
    frame_rate: float | None
    video_codec: str | None
    audio_codec: str | None
    bit_rate: int | None
    has_audio: bool | None
    ingest_notes: list[str]
    job: JobRef | None
    upload: UploadState | None
    poster: ImageView | None
    candidates: list[ImageView]
    storyboard: StoryboardView | None
    subtitles: list[TrackView]
    urls_expire_at: datetime
    """When the URLs in this answer stop working; read the video again for new ones."""


class AnnouncedView(msgspec.Struct):
    video: VideoView
    upload: UploadView


class VideoSummary(msgspec.Struct):
    id: uuid.UUID
    title: str
    status: str
    language: str | None
    duration: float | None
    size: int | None
    owner_id: uuid.UUID | None
    created_at: datetime
    poster_url: str | None


class VideoPage(msgspec.Struct):
    items: list[VideoSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``null`` on the last one."""


class PartNumbersRequest(msgspec.Struct, forbid_unknown_fields=True):
    part_numbers: list[int]


class PartUrlsView(msgspec.Struct):
    parts: list[PartUrlView]
    expires_at: datetime


class UploadedPartView(msgspec.Struct):
    part_number: int
    etag: str
    size: int


class UploadedPartsView(msgspec.Struct):
    upload_id: str
    part_size: int
    part_count: int
    parts: list[UploadedPartView]


class CompletedPart(msgspec.Struct, forbid_unknown_fields=True):
    part_number: int
    etag: Annotated[str, msgspec.Meta(max_length=200)]


class CompleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    parts: list[CompletedPart] | None = None
    """The parts and the ETags their PUTs answered; without it, every part the store holds."""


class JobAccepted(msgspec.Struct):
    job: JobRef


# The view other routes reuse.


async def video_view(runtime: Runtime, db: AsyncSession, video: Video) -> VideoView:
    """The video as the API shows it, with fresh URLs for its images, storyboard and subtitles."""
    links = Links(runtime.settings, runtime.storage)
    thumbnails = list(
        await db.scalars(
            select(Thumbnail).where(Thumbnail.video_id == video.id).order_by(Thumbnail.kind, Thumbnail.position)
        )
    )
    tracks = await db.scalars(
        select(SubtitleTrack).where(SubtitleTrack.video_id == video.id).order_by(SubtitleTrack.created_at)
    )
    job = await db.scalar(select(Job).where(Job.video_id == video.id).order_by(Job.created_at.desc()).limit(1))
    upload = await db.scalar(select(Upload).where(Upload.video_id == video.id))
    return VideoView(
        id=video.id,
        title=video.title,
        description=video.description,
        language=video.language,
        status=video.status,
        owner_id=video.owner_id,
        source_filename=video.source_filename,
        created_at=video.created_at,
        updated_at=video.updated_at,
        size=video.size,
        sha256=video.sha256,
        container=video.container,
        duration=video.duration,
        width=video.width,
        height=video.height,
        display_width=video.display_width,
        display_height=video.display_height,
        rotation=video.rotation,
        frame_rate=video.frame_rate,
        video_codec=video.video_codec,
        audio_codec=video.audio_codec,
        bit_rate=video.bit_rate,
        has_audio=video.has_audio,
        ingest_notes=[str(note) for note in video.ingest_notes or []],
        job=JobRef(id=job.id, status=job.status) if job is not None else None,
        upload=UploadState(status=upload.status, method=upload.method, size=upload.size) if upload else None,
        poster=next((_image(links, row) for row in thumbnails if row.kind == "poster"), None),
        candidates=[_image(links, row) for row in thumbnails if row.kind == "candidate"],
        storyboard=_storyboard(links, thumbnails),
        subtitles=[_track(links, track) for track in tracks],
        urls_expire_at=links.expires_at,
    )


def _image(links: Links, row: Thumbnail) -> ImageView:
    return ImageView(
        url=links.get(row.key), content_type=row.content_type, width=row.width, height=row.height, time=row.time
    )


def _storyboard(links: Links, thumbnails: list[Thumbnail]) -> StoryboardView | None:
    index = next((row for row in thumbnails if row.kind == "storyboard"), None)
    if index is None:
        return None
    sprites = [_image(links, row) for row in thumbnails if row.kind == "sprite"]
    return StoryboardView(vtt_url=links.storyboard(index.key), sprites=sprites)


def _track(links: Links, track: SubtitleTrack) -> TrackView:
    return TrackView(
        id=track.id,
        language=track.language,
        label=track.label,
        source=track.source,
        status=track.status,
        cue_count=track.cue_count,
        error_code=track.error_code,
        error_message=track.error_message,
        url=links.get(track.vtt_key) if track.vtt_key and track.status == "ready" else None,
    )


def _upload_view(plan: uploads.UploadPlan) -> UploadView:
    return UploadView(
        method=plan.method,
        expires_at=plan.expires_at,
        url=plan.url,
        headers=plan.headers,
        upload_id=plan.upload_id,
        part_size=plan.part_size,
        part_count=plan.part_count,
        parts=[PartUrlView(part.part_number, part.url) for part in plan.parts] if plan.parts is not None else None,
    )


def _too_large(request: AnyRequest, exc: UploadTooLarge) -> Response[Any]:
    """The one error shape, with 413: the body (or the announced size) is past a limit."""
    response = exception_handlers()[VidpipeError](request, exc)
    response.status_code = 413
    return response


def _content_length(request: AnyRequest) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _runtime(request: AnyRequest) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Listing.


def _encode_cursor(video: Video) -> str:
    raw = json.dumps([video.created_at.isoformat(), str(video.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, video_id = json.loads(raw)
        moment, after = datetime.fromisoformat(created), uuid.UUID(video_id)
    except (binascii.Error, ValueError, TypeError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput("The cursor is not one this API gave out.", code="video.invalid_cursor")
    return moment, after


def _status_filter(status: str | None) -> str | None:
    if status is None:
        return None
    try:
        return VideoStatus(status).value
    except ValueError:
        raise InvalidInput(
            f"There is no video status {status!r}.",
            code="video.unknown_status",
            details={"statuses": [value.value for value in VideoStatus]},
        ) from None


class VideosController(Controller):
    """Announcing, uploading, listing and reading videos."""

    path = "/videos"
    tags = ("videos",)
    exception_handlers = {UploadTooLarge: _too_large}  # noqa: RUF012  (Litestar's own attribute)

    @post("/", status_code=201)
    async def announce(
        self, request: AnyRequest, data: JSONBody[AnnounceRequest], db: NamedDependency[AsyncSession]
    ) -> Response[AnnouncedView]:
        """Announce a video and get where to upload it.

        Up to ``VIDPIPE_MULTIPART_THRESHOLD_MB`` the answer is one presigned ``PUT`` (send the
        given headers); above it a multipart upload with the first part URLs. Send an
        ``Idempotency-Key`` header to retry safely: the same key and body answer with the same
        video and upload. Past ``VIDPIPE_MAX_UPLOAD_MB`` the answer is 413 ``upload.too_large``;
        past the member's quota, 409 ``quota.videos_exceeded`` or ``quota.bytes_exceeded``.
        """
        viewer = viewer_of(request)
        runtime = _runtime(request)
        announced = await uploads.announce(
            db,
            runtime,
            uploads.Announcement(**msgspec.structs.asdict(data)),
            owner_id=viewer.user_id,
            exempt=viewer.is_admin,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        links = Links(runtime.settings, runtime.storage)
        body = AnnouncedView(
            video=await video_view(runtime, db, announced.video),
            upload=_upload_view(uploads.plan(links, announced.upload)),
        )
        headers = {"Location": f"{request.url.path.rstrip('/')}/{announced.video.id}"}
        if announced.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status_code=201, headers=headers)

    @get("/")
    async def list_videos(
        self,
        request: AnyRequest,
        db: NamedDependency[AsyncSession],
        limit: FromQuery[int] = DEFAULT_PAGE,
        cursor: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
    ) -> VideoPage:
        """The caller's videos (an admin's: everyone's), newest first, ``limit`` (1 to 100) at a time.

        Filter with ``status`` (``awaiting_upload``, ``pending``, ``processing``, ``ready``,
        ``failed``); follow ``next_cursor`` for the next page.
        """
        viewer = viewer_of(request)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", code="video.invalid_limit")
        query = select(Video).order_by(Video.created_at.desc(), Video.id.desc()).limit(limit + 1)
        if not viewer.is_admin:
            query = query.where(Video.owner_id == viewer.user_id)
        wanted = _status_filter(status)
        if wanted is not None:
            query = query.where(Video.status == wanted)
        if cursor:
            created, video_id = _decode_cursor(cursor)
            query = query.where(or_(Video.created_at < created, and_(Video.created_at == created, Video.id < video_id)))
        videos = list(await db.scalars(query))
        page, more = videos[:limit], len(videos) > limit
        return VideoPage(
            items=await _summaries(_runtime(request), db, page),
            next_cursor=_encode_cursor(page[-1]) if more else None,
        )

    @get("/{video_id:uuid}")
    async def read(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> VideoView:
        """The video with its probe facts, job, poster, candidates, storyboard and subtitle tracks.

        Image and subtitle URLs are presigned (S3) or signed by this API (local store) and
        stop working at ``urls_expire_at``.
        """
        video = await visible_video(db, viewer_of(request), video_id)
        return await video_view(_runtime(request), db, video)

    @get("/{video_id:uuid}/uploads")
    async def upload_plan(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> UploadView:
        """Where to send the bytes of a pending upload, with fresh URLs (the announcement's may have expired)."""
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        uploads.require_pending(upload)
        runtime = _runtime(request)
        return _upload_view(uploads.plan(Links(runtime.settings, runtime.storage), upload))

    @post("/{video_id:uuid}/uploads/parts", status_code=200)
    async def presign_parts(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        data: JSONBody[PartNumbersRequest],
        db: NamedDependency[AsyncSession],
    ) -> PartUrlsView:
        """URLs for more parts of a multipart upload (at most 1000 part numbers at a time)."""
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        runtime = _runtime(request)
        links = Links(runtime.settings, runtime.storage)
        parts = uploads.part_urls(links, upload, data.part_numbers)
        return PartUrlsView(
            parts=[PartUrlView(part.part_number, part.url) for part in parts], expires_at=links.expires_at
        )

    @get("/{video_id:uuid}/uploads/parts")
    async def list_parts(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> UploadedPartsView:
        """The parts uploaded so far, with their sizes and ETags, so an interrupted client can resume."""
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        held = await uploads.uploaded_parts(_runtime(request).storage, upload)
        return UploadedPartsView(
            upload_id=upload.upload_id or "",
            part_size=upload.part_size or 0,
            part_count=upload.part_count or 0,
            parts=[UploadedPartView(part.part_number, part.etag, part.size) for part in held],
        )

    @post("/{video_id:uuid}/uploads/complete", status_code=202)
    async def complete(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        data: JSONBody[CompleteRequest | None] = None,
    ) -> JobAccepted:
        """Finish the upload and start processing; completing again answers with the same job.

        409 ``upload.incomplete`` or ``upload.parts_missing`` while bytes are missing; 422
        ``upload.size_mismatch`` when they differ from the announced size.
        """
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        parts = None
        if data is not None and data.parts is not None:
            parts = [PartTag(part.part_number, part.etag) for part in data.parts]
        started = await uploads.complete(db, _runtime(request), video, upload, parts)
        return JobAccepted(job=JobRef(id=started.id, status=started.status))

    @delete("/{video_id:uuid}/uploads", status_code=204)
    async def abort(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> None:
        """Abandon a pending upload: its parts and bytes go, and so does the announced video."""
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        await uploads.abort(db, _runtime(request), video, upload)

    @put("/{video_id:uuid}/source", status_code=202, request_max_body_size=None)
    async def source(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> JobAccepted:
        """Stream the whole file through the API (for clients that cannot use presigned URLs).

        The body is written to storage as it arrives, never held whole; it must have exactly the
        announced size (413 ``upload.too_large`` past it). Processing starts as on completion.
        """
        video = await visible_video(db, viewer_of(request), video_id)
        upload = await uploads.find_upload(db, video)
        started = await uploads.receive_source(
            db, _runtime(request), video, upload, request.stream(), content_length=_content_length(request)
        )
        return JobAccepted(job=JobRef(id=started.id, status=started.status))


async def _summaries(runtime: Runtime, db: AsyncSession, videos: list[Video]) -> list[VideoSummary]:
    rows = await db.execute(
        select(Thumbnail.video_id, Thumbnail.key).where(
            Thumbnail.kind == "poster", Thumbnail.video_id.in_([video.id for video in videos])
        )
    )
    posters = {video_id: key for video_id, key in rows}
    links = Links(runtime.settings, runtime.storage)
    return [
        VideoSummary(
            id=video.id,
            title=video.title,
            status=video.status,
            language=video.language,
            duration=video.duration,
            size=video.size,
            owner_id=video.owner_id,
            created_at=video.created_at,
            poster_url=links.get(posters[video.id]) if video.id in posters else None,
        )
        for video in videos
    ]


# The local store's signed URLs.


class SignedController(Controller):
    """Reading and writing the local store's objects through URLs this API signed.

    Public: the ``token`` query parameter names the object (and for uploads the part and the
    size limit) and expires; its signature is the authorisation. It travels as ``token=`` so
    that log redaction of URLs hides it like every other token.
    """

    path = "/signed"
    tags = ("signed URLs",)
    exception_handlers = {UploadTooLarge: _too_large}  # noqa: RUF012  (Litestar's own attribute)

    @get("/", include_in_schema=False)
    async def read(self, request: AnyRequest, token: FromQuery[str]) -> Response[Any]:
        """An object the token names; a storyboard index comes with its sprite references signed."""
        runtime = _runtime(request)
        action = _verified(runtime, token, ("get", "storyboard"))
        if action.action == "storyboard":
            index = await runtime.storage.get_bytes(action.key)
            text = _sign_sprites(Links(runtime.settings, runtime.storage), action.key, index.decode("utf-8"))
            return Response(text, media_type="text/vtt; charset=utf-8", headers={"Cache-Control": "private"})
        stored = await runtime.storage.stat(action.key)
        if stored is None:
            raise ObjectMissing("The object this URL named has been removed.", code="storage.not_found")
        return Stream(
            runtime.storage.iter_chunks(action.key),
            media_type=stored.content_type or "application/octet-stream",
            headers={"Content-Length": str(stored.size), "Cache-Control": "private"},
        )

    @put("/", include_in_schema=False, request_max_body_size=None)
    async def write(
        self, request: AnyRequest, token: FromQuery[str], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """The body of an upload or of one part, streamed to the store; answers with its ETag."""
        runtime = _runtime(request)
        action = _verified(runtime, token, ("put", "part"))
        etag = await uploads.receive_signed(
            db, runtime, action, request.stream(), content_length=_content_length(request)
        )
        return Response(b"", status_code=200, headers={"ETag": f'"{etag}"'} if etag else {})


def _verified(runtime: Runtime, token: str, actions: tuple[str, ...]) -> uploads.SignedAction:
    try:
        action = uploads.read_signed(runtime.settings, token)
    except uploads.SignedUrlRejected as rejected:
        logger.debug("A signed URL was refused: %s.", rejected.code)
        raise Forbidden(rejected.message, code=rejected.code) from None
    if action.action not in actions:
        raise Forbidden("This URL does not allow that method.", code="url.wrong_method")
    return action


def _sign_sprites(links: Links, index_key: str, text: str) -> str:
    """Replace each ``sprite-N.jpg#xywh=…`` cue payload with the sprite's URL and the same fragment."""
    folder = posixpath.dirname(index_key)

    def signed(line: str) -> str:
        match = _SPRITE_REFERENCE.fullmatch(line.strip())
        if match is None:
            return line
        return links.get(f"{folder}/{match[1]}") + match[2]

    return "\n".join(signed(line) for line in text.split("\n"))
