"""Changing and deleting videos and their subtitle tracks, under ``/api/v1/videos``.

Every route goes through :mod:`pipeline.edits`, the path the rest of vidpipe shares: an edit
changes the rows, then the video's job runs the stages that read them again, so search
follows the change without the API ever writing to it. Visibility is the API's one rule
(:mod:`api.access`): another member's video answers exactly like a missing one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromPath, JSONBody, MultipartBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import Viewer, viewer_of, visible_video
from api.errors import ErrorBody, error_response
from api.jobs import forget_job_views
from api.videos import VideoView, video_view
from pipeline import edits
from pipeline.db.models import SubtitleTrack, Video
from pipeline.errors import Conflict, NotFound
from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]

_FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the form's boundaries and text fields around the file itself."""


class VideoChanges(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; a field left out keeps its value."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType | None = msgspec.UNSET
    """A BCP 47 tag such as ``ko`` or ``en-US``; ``null`` clears it."""


class SubtitleForm(msgspec.Struct):
    """A subtitle file sent as ``multipart/form-data``."""

    file: UploadFile
    language: str | None = None
    """Taken from the file name (``talk.ko.vtt``) when absent."""
    label: str | None = None


class SubtitleTrackView(msgspec.Struct):
    """One subtitle track of a video and how far its processing got."""

    id: uuid.UUID
    language: str | None
    label: str | None
    source: str
    """``file`` (uploaded) or ``embedded`` (a text stream of the video's container)."""
    filename: str | None
    format: str | None
    status: str
    """``pending`` until the subtitles stage has read it, then ``ready`` or ``failed``."""
    cue_count: int
    warnings: list[str]
    error_code: str | None
    error_message: str | None
    created_at: datetime
    vtt_url: str | None
    """Where the normalised WebVTT is served, once the track is ready."""


def track_view(request: AnyRequest, video_id: uuid.UUID, track: SubtitleTrack) -> SubtitleTrackView:
    vtt_url = None
    if track.status == "ready" and track.vtt_key:
        vtt_url = request.url_for("video_edits.track_vtt", video_id=video_id, vtt_name=f"{track.id}.vtt")
    return SubtitleTrackView(
        id=track.id,
        language=track.language,
        label=track.label,
        source=track.source,
        filename=track.filename,
        format=track.format,
        status=track.status,
        cue_count=track.cue_count,
        warnings=[str(warning) for warning in track.warnings or []],
        error_code=track.error_code,
        error_message=track.error_message,
        created_at=track.created_at,
        vtt_url=vtt_url,
    )


def _too_large(request: AnyRequest, exc: Exception) -> Response[ErrorBody]:
    # Both the framework's early refusal (a body far over the limit, never read whole) and the
    # core's own check land here, so a client sees one code for one problem.
    limit = edits.MAX_SUBTITLE_BYTES
    message = f"The subtitle file is too large; the largest accepted is {limit // 2**20} MB ({limit} bytes)."
    logger.info(
        "Request %s %s was refused: the subtitle file is over %d bytes.", request.method, request.url.path, limit
    )
    return error_response(413, edits.SubtitleTooLarge.code, message, {"max_bytes": limit})


async def _video(request: AnyRequest, db: AsyncSession, video_id: uuid.UUID) -> tuple[Viewer, Video]:
    """The caller and the video they may see; the request's read transaction ends here."""
    viewer = viewer_of(request)
    video = await visible_video(db, viewer, video_id)
    # The edit runs in sessions of its own; this one must not hold a snapshot meanwhile.
    await db.rollback()
    return viewer, video


class VideoEditsController(Controller):
    """Changing a video's metadata, its subtitle tracks, and deleting it."""

    path = "/videos"
    tags = ("videos",)

    @patch("/{video_id:uuid}")
    async def update(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        data: JSONBody[VideoChanges],
    ) -> VideoView:
        """Change the title, description or language, and answer the video as ``GET`` does.

        Search follows once the video's job has run its index stage again (the answer's ``job``
        is then queued). Answers 409 ``video.busy`` while that stage is running; try again shortly.
        """
        viewer, _ = await _video(request, db, video_id)
        runtime: Runtime = request.app.state.runtime
        rerun = await edits.update_video(
            runtime,
            video_id,
            title=edits.KEEP if data.title is msgspec.UNSET else data.title,
            description=edits.KEEP if data.description is msgspec.UNSET else data.description,
            language=edits.KEEP if data.language is msgspec.UNSET else data.language,
        )
        forget_job_views(request, rerun.job_id)
        logger.info(
            "Video %s was edited by user %s; stages to run again: %s.",
            video_id,
            viewer.user_id,
            ", ".join(stage.value for stage in rerun.stages) or "none",
        )
        video = await db.get(Video, video_id, populate_existing=True)
        if video is None:
            raise NotFound(f"There is no video {video_id}.", code="video.not_found")
        return await video_view(runtime, db, video)

    @delete("/{video_id:uuid}", status_code=204)
    async def remove(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> None:
        """Delete the video for good: its running job is cancelled, its files, rows and search entries removed."""
        viewer, _ = await _video(request, db, video_id)
        runtime: Runtime = request.app.state.runtime
        await edits.delete_video(runtime, video_id)
        forget_job_views(request)
        logger.info("Video %s was deleted by user %s.", video_id, viewer.user_id)

    @get("/{video_id:uuid}/subtitles")
    async def tracks(
        self, request: AnyRequest, video_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> list[SubtitleTrackView]:
        """The video's subtitle tracks, oldest first, with their status, cue count and any error."""
        viewer = viewer_of(request)
        await visible_video(db, viewer, video_id)
        return [track_view(request, video_id, track) for track in await edits.list_tracks(db, video_id)]

    @post(
        "/{video_id:uuid}/subtitles",
        status_code=201,
        request_max_body_size=edits.MAX_SUBTITLE_BYTES + _FORM_OVERHEAD_BYTES,
        exception_handlers={edits.SubtitleTooLarge: _too_large, RequestEntityTooLarge: _too_large},
    )
    async def add_track(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        data: MultipartBody[SubtitleForm],
    ) -> SubtitleTrackView:
        """Add a WebVTT, SRT or SBV file (form fields ``file``, ``language``, ``label``; at most 5 MB).

        The file is parsed at once: an unusable one answers 422 with the parser's code (such as
        ``subtitles.no_cues`` or ``subtitles.bad_encoding``) and its reason, and nothing is kept.
        An accepted track starts ``pending``; the subtitles and index stages then run again and
        its cues become searchable. A file over 5 MB answers 413 ``subtitles.too_large``.
        """
        viewer, _ = await _video(request, db, video_id)
        runtime: Runtime = request.app.state.runtime
        content = await data.file.read(edits.MAX_SUBTITLE_BYTES + 1)
        await data.file.close()
        added = await edits.add_subtitle_track(
            runtime,
            video_id,
            content,
            filename=data.file.filename or "subtitles",
            language=data.language or None,
            label=data.label,
        )
        forget_job_views(request, added.rerun.job_id)
        logger.info("Subtitle track %s was added to video %s by user %s.", added.track.id, video_id, viewer.user_id)
        return track_view(request, video_id, added.track)

    @get("/{video_id:uuid}/subtitles/{vtt_name:str}", name="video_edits.track_vtt")
    async def track_vtt(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        vtt_name: FromPath[str],
        db: NamedDependency[AsyncSession],
    ) -> Response[bytes]:
        """The track normalised to WebVTT, at ``{track_id}.vtt``; 409 ``subtitles.not_ready`` until it is ready."""
        viewer = viewer_of(request)
        await visible_video(db, viewer, video_id)
        track = await edits.get_track(db, video_id, _track_id(video_id, vtt_name))
        if track.status != "ready" or not track.vtt_key:
            raise Conflict(
                f"Subtitle track {track.id} is {track.status}, so it has no WebVTT to serve yet.",
                code="subtitles.not_ready",
                details={"status": track.status, "error_code": track.error_code},
            )
        runtime: Runtime = request.app.state.runtime
        content = await runtime.storage.get_bytes(track.vtt_key)
        return Response(content, media_type="text/vtt; charset=utf-8")

    @delete("/{video_id:uuid}/subtitles/{track_id:uuid}", status_code=204)
    async def remove_track(
        self,
        request: AnyRequest,
        video_id: FromPath[uuid.UUID],
        track_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
    ) -> None:
        """Delete a track with its cues and files; the video is indexed again without them."""
        viewer, _ = await _video(request, db, video_id)
        runtime: Runtime = request.app.state.runtime
        rerun = await edits.delete_subtitle_track(runtime, video_id, track_id)
        forget_job_views(request, rerun.job_id)
        logger.info("Subtitle track %s of video %s was deleted by user %s.", track_id, video_id, viewer.user_id)


def _track_id(video_id: uuid.UUID, name: str) -> uuid.UUID:
    stem, dot, suffix = name.rpartition(".")
    try:
        if dot and suffix == "vtt":
            return uuid.UUID(stem)
    except ValueError:
        pass
    raise NotFound(
        f"Video {video_id} has no subtitle file {name!r}; ask for {{track_id}}.vtt.", code="subtitles.track_not_found"
    )
