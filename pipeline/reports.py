"""Plain-data views of jobs and videos, shared by the CLI's ``--json`` and the HTTP API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, Uuid, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import Job, StageRun, SubtitleTrack, Thumbnail, Video
from pipeline.jobs import load_job, stage_duration


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def stage_report(run: StageRun) -> dict[str, Any]:
    return {
        "name": run.stage,
        "status": run.status,
        "progress": run.progress,
        "attempts": run.attempts,
        "error_code": run.error_code,
        "error_message": run.error_message,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration": stage_duration(run),
    }


def job_summary(job: Job) -> dict[str, Any]:
    done = sum(run.progress for run in job.stages) / max(1, len(job.stages))
    return {
        "id": str(job.id),
        "video_id": str(job.video_id),
        "status": job.status,
        "progress": round(done, 1),
        "error_code": job.error_code,
        "error_message": job.error_message,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


@dataclass(frozen=True)
class JobRead:
    """A job view read in one round trip, with what visibility checks need beside it."""

    body: dict[str, Any]
    owner_id: uuid.UUID | None


_JOB_COLUMNS = (Job.id, Job.video_id, Job.status, Job.error_code, Job.error_message, Job.created_at)
_JOB_TIMES = (Job.started_at, Job.finished_at)
_STAGE_COLUMNS = (
    StageRun.stage,
    StageRun.status,
    StageRun.progress,
    StageRun.attempts,
    StageRun.error_code,
    StageRun.error_message,
    StageRun.started_at,
    StageRun.finished_at,
)


def _job_view_statement() -> Select[Any]:
    columns: list[Any] = [
        *(c.label(f"job_{c.key}") for c in (*_JOB_COLUMNS, *_JOB_TIMES)),
        Video.owner_id.label("owner_id"),
        *(c.label(c.key) for c in _STAGE_COLUMNS),
    ]
    return (
        select(*columns)
        .join(Video, Video.id == Job.video_id)
        .outerjoin(StageRun, StageRun.job_id == Job.id)
        .where(Job.id == bindparam("job_id", type_=Uuid()))
        .order_by(StageRun.position)
    )


# Built once: pollers run this many times a second, and a ready statement skips building it
# and its cache key on every call.
_JOB_VIEW = _job_view_statement()


async def read_job_view(session: AsyncSession, job_id: uuid.UUID) -> JobRead | None:
    """The job with its stages as :func:`job_summary` and :func:`stage_report` give them, or ``None``.

    One statement: the job joined to its stage runs (one row per stage) and its video's owner.
    """
    rows = (await session.execute(_JOB_VIEW, {"job_id": job_id})).all()
    if not rows:
        return None
    first = rows[0]
    stages = [SimpleNamespace(**{c.key: getattr(row, c.key) for c in _STAGE_COLUMNS}) for row in rows if row.stage]
    job = SimpleNamespace(
        **{c.key: getattr(first, f"job_{c.key}") for c in (*_JOB_COLUMNS, *_JOB_TIMES)}, stages=stages
    )
    body = {**job_summary(job), "stages": [stage_report(run) for run in stages]}  # type: ignore[arg-type]
    return JobRead(body=body, owner_id=first.owner_id)


def video_report(video: Video) -> dict[str, Any]:
    return {
        "id": str(video.id),
        "title": video.title,
        "status": video.status,
        "language": video.language,
        "size": video.size,
        "sha256": video.sha256,
        "container": video.container,
        "duration": video.duration,
        "width": video.width,
        "height": video.height,
        "display_width": video.display_width,
        "display_height": video.display_height,
        "rotation": video.rotation,
        "frame_rate": video.frame_rate,
        "video_codec": video.video_codec,
        "audio_codec": video.audio_codec,
        "bit_rate": video.bit_rate,
        "has_audio": video.has_audio,
        "ingest_notes": list(video.ingest_notes or []),
    }


def thumbnail_report(row: Thumbnail) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "position": row.position,
        "time": row.time,
        "key": row.key,
        "content_type": row.content_type,
        "width": row.width,
        "height": row.height,
    }


def track_report(track: SubtitleTrack) -> dict[str, Any]:
    return {
        "id": str(track.id),
        "language": track.language,
        "label": track.label,
        "source": track.source,
        "filename": track.filename,
        "format": track.format,
        "encoding": track.encoding,
        "status": track.status,
        "cues": track.cue_count,
        "warnings": len(track.warnings or []),
        "vtt_key": track.vtt_key,
        "error_code": track.error_code,
        "error_message": track.error_message,
    }


async def full_job_report(session: AsyncSession, job_id: uuid.UUID) -> dict[str, Any]:
    """The job, its stages, its video, thumbnails and subtitle tracks as one JSON-ready dict."""
    job = await load_job(session, job_id)
    video = job.video
    thumbnails = await session.scalars(
        select(Thumbnail).where(Thumbnail.video_id == video.id).order_by(Thumbnail.kind, Thumbnail.position)
    )
    tracks = await session.scalars(
        select(SubtitleTrack).where(SubtitleTrack.video_id == video.id).order_by(SubtitleTrack.created_at)
    )
    return {
        "job": job_summary(job),
        "video": video_report(video),
        "stages": [stage_report(run) for run in job.stages],
        "thumbnails": [thumbnail_report(row) for row in thumbnails],
        "subtitle_tracks": [track_report(track) for track in tracks],
    }
