"""Turning a file into a video and a queued job: the one path every entry point takes.

The command line (``vidpipe process``), the drop-folder scanner and the HTTP API all end
here, so a video is created the same way whichever door it came through.
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from pipeline import keys
from pipeline.db.models import SubtitleTrack, Video
from pipeline.dispatch import Dispatcher
from pipeline.errors import InvalidInput
from pipeline.jobs import new_job, start_job
from pipeline.languages import normalise_language
from pipeline.runtime import Runtime
from pipeline.states import VideoStatus
from pipeline.subtitles import language_from_filename

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubtitleFile:
    path: Path
    language: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Submitted:
    video_id: uuid.UUID
    job_id: uuid.UUID


async def submit_file(
    runtime: Runtime,
    path: Path,
    *,
    title: str | None = None,
    description: str = "",
    language: str | None = None,
    subtitles: list[SubtitleFile] | tuple[SubtitleFile, ...] = (),
    poster_at: float | None = None,
    owner_id: uuid.UUID | None = None,
    notes: list[str] | None = None,
) -> Submitted:
    """Upload ``path`` (and its subtitle files) to storage, create the rows, start the job.

    ``notes`` are problems the caller met on the way in (the drop folder's unreadable
    sidecars); they are kept on the video as ``ingest_notes`` and never stop it.
    """
    if not path.is_file():
        raise InvalidInput(f"There is no file at {path}.", code="input.file_not_found")
    for sub in subtitles:
        if not sub.path.is_file():
            raise InvalidInput(f"There is no subtitle file at {sub.path}.", code="input.file_not_found")
    if poster_at is not None and poster_at < 0:
        raise InvalidInput("The poster time cannot be negative.", code="input.poster_time")

    language = checked_language(language)
    subtitles = [
        SubtitleFile(sub.path, checked_language(sub.language) or language_from_filename(sub.path.name), sub.label)
        for sub in subtitles
    ]
    video_id = uuid.uuid4()
    video = Video(
        id=video_id,
        owner_id=owner_id,
        title=(title or path.stem)[:500],
        description=description,
        language=language,
        source_key=keys.source_key(video_id, path.name),
        source_filename=path.name[:500],
        poster_at=poster_at,
        ingest_notes=list(notes) if notes else None,
    )
    await runtime.storage.put_file(video.source_key, path, mimetypes.guess_type(path.name)[0])
    tracks = [await _upload_subtitle(runtime, video_id, sub) for sub in subtitles]

    job = new_job(video)
    async with runtime.database.sessions() as session:
        session.add(video)
        session.add_all(tracks)
        session.add(job)
        await session.commit()
        await start_job(session, runtime.dispatcher, job.id)
    logger.info("Video %s was created from an upload with %d subtitle files; job %s.", video_id, len(tracks), job.id)
    return Submitted(video_id=video_id, job_id=job.id)


async def submit_stored(
    session: AsyncSession, dispatcher: Dispatcher, video: Video, *, job_id: uuid.UUID | None = None
) -> uuid.UUID:
    """Create and start the job of a video whose source is already in storage (an API upload).

    Whatever else the caller changed in ``session`` is committed in the same transaction as
    the job, so an upload can record that it made this job (``job_id``, chosen by the caller)
    atomically with the job itself.
    """
    job = new_job(video)
    if job_id is not None:
        job.id = job_id
    video.status = VideoStatus.PENDING.value
    session.add(job)
    await start_job(session, dispatcher, job.id)
    logger.info("Video %s was submitted from its stored source; job %s.", video.id, job.id)
    return job.id


def checked_language(tag: str | None) -> str | None:
    """``tag`` normalised (``ko``, ``en-US``), ``None`` for none; ``input.language`` when it is no language tag."""
    if tag is None:
        return None
    language = normalise_language(tag)
    if language is None:
        raise InvalidInput(f"{tag!r} is not a language tag; use one such as ko, en or en-US.", code="input.language")
    return language


async def _upload_subtitle(runtime: Runtime, video_id: uuid.UUID, sub: SubtitleFile) -> SubtitleTrack:
    track_id = uuid.uuid4()
    key = keys.subtitle_source_key(video_id, track_id, sub.path.name)
    await runtime.storage.put_file(key, sub.path, "application/octet-stream")
    return SubtitleTrack(
        id=track_id,
        video_id=video_id,
        source="file",
        source_ref=key,
        filename=sub.path.name[:500],
        language=sub.language,
        label=sub.label,
    )
