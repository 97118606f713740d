"""Changing and deleting videos and their subtitle tracks: the one path every caller takes.

Nothing here writes to the search backend except the final clean-up of a deleted video.
The index stage is what puts a video into search, and the subtitles stage is what turns a
track into cues, so an edit changes the rows and then lets the job machinery run those
stages again on the video's latest job (see :func:`_rerun`):

* title, description or language: ``index``;
* a track added: ``subtitles`` and ``index`` (the new file is parsed as the stage parses
  every file, normalised to WebVTT, its cues stored, then indexed);
* a track deleted: ``index`` (its cues go with its row, so the stage indexes what is left).

Re-running stages of the existing job rather than creating a job per edit keeps the graph's
own guarantees (fan-in, retries, the reconciler) without a second kind of job, and leaves
the stages that read nothing that changed (``ingest``, ``thumbnails``) alone.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline import keys
from pipeline.db.models import Job, StageRun, SubtitleTrack, Video, utcnow
from pipeline.dispatch import Dispatcher
from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.jobs import cancel_job, move_stage, queue_ready_stages, retry_job
from pipeline.runtime import Runtime
from pipeline.states import JOB_TERMINAL, JobStatus, Stage, StageStatus, downstream
from pipeline.submit import checked_language
from pipeline.subtitles import language_from_filename, parse_subtitles
from pipeline.uploads import Upload, UploadStatus

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 500
MAX_DESCRIPTION_CHARS = 10_000
MAX_LABEL_CHARS = 200
MAX_SUBTITLE_BYTES = 5 * 2**20
"""The largest subtitle file accepted; a feature film's subtitles are a few hundred kilobytes."""

_STOP_POLL_SECONDS = 0.2


class Keep(enum.Enum):
    """Marks a field an update leaves as it is (``None`` would clear it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


class SubtitleTooLarge(InvalidInput):
    """A subtitle file over :data:`MAX_SUBTITLE_BYTES`; the API answers it with 413."""

    code = "subtitles.too_large"


@dataclass(frozen=True)
class Rerun:
    """What an edit asked of the video's job."""

    job_id: uuid.UUID | None
    """The video's latest job; ``None`` while it has none (its source has not arrived)."""
    stages: tuple[Stage, ...]
    """The stages that will read the change, queued again where they had already run; empty
    when nothing will (no job yet, or the job failed or was cancelled: its retry reads it)."""


@dataclass(frozen=True)
class AddedTrack:
    track: SubtitleTrack
    rerun: Rerun


async def update_video(
    runtime: Runtime,
    video_id: uuid.UUID,
    *,
    title: str | Keep = KEEP,
    description: str | Keep = KEEP,
    language: str | Keep | None = KEEP,
) -> Rerun:
    """Change a video's title, description or language, and have it indexed again.

    Raises:
        NotFound: ``video.not_found``.
        InvalidInput: an empty or overlong title, an overlong description, or a language
            that is not a tag (``input.language``).
        Conflict: ``video.busy`` while the index stage is running for the video.
    """
    values: dict[str, object] = {}
    if not isinstance(title, Keep):
        values["title"] = _checked_title(title)
    if not isinstance(description, Keep):
        values["description"] = _checked_description(description)
    if not isinstance(language, Keep):
        values["language"] = checked_language(language)

    async with runtime.database.sessions() as session:
        video = await _video(session, video_id)
        changed = {name: value for name, value in values.items() if getattr(video, name) != value}
        if not changed:
            job_id = await _latest_job_id(session, video_id)
            return Rerun(job_id=job_id, stages=())
        await _lock_stage_runs(session, video_id)
        await session.execute(update(Video).where(Video.id == video_id).values(**changed, updated_at=utcnow()))
        rerun = await _rerun(session, runtime.dispatcher, video_id, Stage.INDEX)
    logger.info("Video %s was changed (%s); stages to run again: %s.", video_id, ", ".join(changed), _names(rerun))
    return rerun


async def add_subtitle_track(
    runtime: Runtime,
    video_id: uuid.UUID,
    data: bytes,
    *,
    filename: str,
    language: str | None = None,
    label: str | None = None,
) -> AddedTrack:
    """Add a subtitle file to a video once the parser accepts it, and have it processed.

    The file is parsed here first, exactly as the subtitles stage will parse it, so an
    unusable one is refused at once with the parser's code and nothing is stored. The
    language is the one given, else the one the file name carries (``talk.ko.vtt``).

    Raises:
        NotFound: ``video.not_found``.
        SubtitleTooLarge: over :data:`MAX_SUBTITLE_BYTES`.
        SubtitleError: the parser's reason, e.g. ``subtitles.no_cues``.
        InvalidInput: a language that is not a tag, or an overlong label.
        Conflict: ``video.busy`` while the subtitles or index stage is running for the video.
    """
    if len(data) > MAX_SUBTITLE_BYTES:
        raise SubtitleTooLarge(
            f"The subtitle file is {len(data)} bytes; the largest accepted is {MAX_SUBTITLE_BYTES} bytes.",
            details={"max_bytes": MAX_SUBTITLE_BYTES},
        )
    filename = filename.strip()[:500] or "subtitles"
    language = checked_language(language) if language else language_from_filename(filename)
    label = _checked_label(label)
    document = await asyncio.to_thread(parse_subtitles, data, filename)

    track_id = uuid.uuid4()
    key = keys.subtitle_source_key(video_id, track_id, filename)
    async with runtime.database.sessions() as session:
        await _video(session, video_id)
        await _lock_stage_runs(session, video_id)
        track = SubtitleTrack(
            id=track_id,
            video_id=video_id,
            source="file",
            source_ref=key,
            filename=filename,
            language=language,
            label=label,
        )
        session.add(track)
        await session.flush()
        await _refuse_if_busy(session, video_id, downstream(Stage.SUBTITLES))
        # Stored before the commit that makes the track visible, so the stage always finds it.
        await runtime.storage.put_bytes(key, data, "application/octet-stream")
        # TODO(subtitles): the stage reads every track again, and an embedded one needs the whole
        # source downloaded; a run limited to the new track would spare that on long videos.
        try:
            rerun = await _rerun(session, runtime.dispatcher, video_id, Stage.SUBTITLES)
        except Exception:
            await runtime.storage.delete(key)
            raise
    logger.info(
        "Subtitle track %s (%s, %s, %d cues) was added to video %s; stages to run again: %s.",
        track_id,
        language or "language unknown",
        document.format,
        len(document.cues),
        video_id,
        _names(rerun),
    )
    return AddedTrack(track=track, rerun=rerun)


async def list_tracks(session: AsyncSession, video_id: uuid.UUID) -> list[SubtitleTrack]:
    """The video's subtitle tracks, oldest first."""
    rows = await session.scalars(
        select(SubtitleTrack)
        .where(SubtitleTrack.video_id == video_id)
        .order_by(SubtitleTrack.created_at, SubtitleTrack.id)
    )
    return list(rows)


async def get_track(session: AsyncSession, video_id: uuid.UUID, track_id: uuid.UUID) -> SubtitleTrack:
    """One track of the video, or ``subtitles.track_not_found``."""
    track = await session.get(SubtitleTrack, track_id)
    if track is None or track.video_id != video_id:
        raise NotFound(f"Video {video_id} has no subtitle track {track_id}.", code="subtitles.track_not_found")
    return track


async def delete_subtitle_track(runtime: Runtime, video_id: uuid.UUID, track_id: uuid.UUID) -> Rerun:
    """Remove a track, its cues and its files, and have the video indexed without them.

    Raises:
        NotFound: ``video.not_found`` or ``subtitles.track_not_found``.
        Conflict: ``video.busy`` while the subtitles or index stage is running for the video.
    """
    async with runtime.database.sessions() as session:
        await _video(session, video_id)
        await _lock_stage_runs(session, video_id)
        # The cues go with the row (ON DELETE CASCADE).
        removed = (
            await session.execute(
                delete(SubtitleTrack)
                .where(SubtitleTrack.id == track_id, SubtitleTrack.video_id == video_id)
                .returning(SubtitleTrack.source, SubtitleTrack.source_ref)
            )
        ).first()
        if removed is None:
            raise NotFound(f"Video {video_id} has no subtitle track {track_id}.", code="subtitles.track_not_found")
        # A running subtitles stage would still write this track's WebVTT after its files are gone.
        rerun = await _rerun(session, runtime.dispatcher, video_id, Stage.INDEX, also_idle=(Stage.SUBTITLES,))

    source, source_ref = removed
    await runtime.storage.delete(keys.subtitle_vtt_key(video_id, track_id))
    if source == "file":
        await runtime.storage.delete(source_ref)
    # TODO(subtitles): an embedded track comes back when ingest runs again (a full retry),
    # because ingest records the container's tracks; keeping it gone needs a "hidden" column.
    logger.info(
        "Subtitle track %s (%s) of video %s was deleted; stages to run again: %s.",
        track_id,
        source,
        video_id,
        _names(rerun),
    )
    return rerun


async def delete_video(runtime: Runtime, video_id: uuid.UUID) -> None:
    """Delete a video for good: its running job, its search entries, its objects, its rows.

    The job is cancelled first and its running stage given a few heartbeats to stop, so no
    stage writes after the clean-up; a multipart upload still in progress is aborted. The
    rows go last: if the search backend or the store fails on the way, the video is still
    there and the deletion can simply be repeated.

    Raises:
        NotFound: ``video.not_found``.
    """
    started = time.monotonic()
    async with runtime.database.sessions() as session:
        await _video(session, video_id)
        live = list(
            await session.scalars(
                select(Job.id).where(Job.video_id == video_id, Job.status.not_in([s.value for s in JOB_TERMINAL]))
            )
        )
        for job_id in live:
            await cancel_job(session, job_id)
        await session.commit()
        stray = await _keys_outside_prefix(session, video_id)
        unfinished = (
            await session.execute(
                select(Upload.key, Upload.upload_id).where(
                    Upload.video_id == video_id, Upload.status == UploadStatus.PENDING
                )
            )
        ).all()
    if live:
        await _wait_for_stages_to_stop(runtime, live)

    await runtime.search.delete_video(video_id)
    # A multipart upload's parts are no objects yet, so the prefix delete would not see them.
    for key, upload_id in unfinished:
        if upload_id is not None:
            await runtime.storage.abort_multipart(key, upload_id)
    removed = await runtime.storage.delete_prefix(keys.video_prefix(video_id))
    for key in stray:
        await runtime.storage.delete(key)
    async with runtime.database.sessions() as session:
        # Jobs, stage runs, thumbnails, tracks and cues go with it (ON DELETE CASCADE).
        await session.execute(delete(Video).where(Video.id == video_id))
        await session.commit()
    logger.info(
        "Video %s was deleted with %d objects in %.2f s; unfinished jobs cancelled first: %d.",
        video_id,
        removed + len(stray),
        time.monotonic() - started,
        len(live),
    )


async def _rerun(
    session: AsyncSession,
    dispatcher: Dispatcher,
    video_id: uuid.UUID,
    stage: Stage,
    *,
    also_idle: tuple[Stage, ...] = (),
) -> Rerun:
    """Have ``stage`` and what depends on it read the video again, then commit and send.

    The caller has locked the latest job's stage runs and made its change in ``session``, so
    the decision below sees states no worker can move until the commit:

    * no job yet: the first job reads the change;
    * the job succeeded: it is retried from ``stage`` (:func:`~pipeline.jobs.retry_job`);
    * the job failed or was cancelled: nothing runs now; retrying it reads the change;
    * the job is still going: stages of the set that are pending or queued will read the
      change anyway, and one that already succeeded (subtitles, while thumbnails still run)
      is put back to pending and queued again once its prerequisites allow. A stage of the
      set (or of ``also_idle``) that is running, or an index stage that finished ahead of
      its job, is ``video.busy``: re-running it now could miss the change.
    """
    job = await _latest_job(session, video_id)
    again = downstream(stage)
    if job is None:
        await session.commit()
        return Rerun(job_id=None, stages=())
    status = JobStatus(job.status)
    if status is JobStatus.SUCCEEDED:
        await retry_job(session, dispatcher, job.id, stage)
        return Rerun(job_id=job.id, stages=again)
    if status in JOB_TERMINAL:
        await session.commit()
        logger.info(
            "Job %s of video %s is %s, so it is not run again now; its retry reads the change.",
            job.id,
            video_id,
            status,
        )
        return Rerun(job_id=job.id, stages=())

    runs = await _stage_states(session, job.id)
    _refuse_running(video_id, runs, (*again, *also_idle))
    if runs.get(Stage.INDEX) is StageStatus.SUCCEEDED:
        raise _busy(video_id, Stage.INDEX)
    for name in again:
        if runs.get(name) is StageStatus.SUCCEEDED:
            await move_stage(
                session,
                job.id,
                name,
                StageStatus.PENDING,
                only_from=[StageStatus.SUCCEEDED],
                progress=0.0,
                attempts=0,
                started_at=None,
                finished_at=None,
            )
    queued = await queue_ready_stages(session, job.id)
    await session.commit()
    for name in queued:
        dispatcher.send(job.id, name)
    return Rerun(job_id=job.id, stages=again)


async def _lock_stage_runs(session: AsyncSession, video_id: uuid.UUID) -> None:
    """Lock the stage runs of the video's latest job, in graph order, before the edit writes.

    On PostgreSQL a worker claiming a stage updates its run first, so it now waits for the
    edit's commit and then reads the changed rows; taking the runs in graph order, as the
    runner queues them, keeps the two from waiting on each other. SQLite ignores ``FOR
    UPDATE``, but the edit's own write that follows takes the database's single write lock,
    which has the same effect for every read after it; that is why :func:`_rerun` reads the
    states only after the write.
    """
    job_id = await _latest_job_id(session, video_id)
    if job_id is not None:
        await session.execute(
            select(StageRun.id).where(StageRun.job_id == job_id).order_by(StageRun.position).with_for_update()
        )


async def _refuse_if_busy(session: AsyncSession, video_id: uuid.UUID, stages: Iterable[Stage]) -> None:
    job = await _latest_job(session, video_id)
    if job is None or JobStatus(job.status) in JOB_TERMINAL:
        return
    _refuse_running(video_id, await _stage_states(session, job.id), stages)


def _refuse_running(video_id: uuid.UUID, runs: dict[Stage, StageStatus], stages: Iterable[Stage]) -> None:
    for stage in stages:
        if runs.get(stage) is StageStatus.RUNNING:
            raise _busy(video_id, stage)


def _busy(video_id: uuid.UUID, stage: Stage) -> Conflict:
    return Conflict(
        f"Video {video_id} is being processed right now (its {stage} stage is running); "
        "try again in a moment, when that stage has finished.",
        code="video.busy",
        details={"stage": stage.value},
    )


async def _latest_job(session: AsyncSession, video_id: uuid.UUID) -> Job | None:
    return await session.scalar(
        select(Job)
        .where(Job.video_id == video_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )


async def _latest_job_id(session: AsyncSession, video_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(Job.id).where(Job.video_id == video_id).order_by(Job.created_at.desc(), Job.id.desc()).limit(1)
    )


async def _stage_states(session: AsyncSession, job_id: uuid.UUID) -> dict[Stage, StageStatus]:
    rows = await session.execute(select(StageRun.stage, StageRun.status).where(StageRun.job_id == job_id))
    return {Stage(name): StageStatus(state) for name, state in rows.all()}


async def _video(session: AsyncSession, video_id: uuid.UUID) -> Video:
    video = await session.get(Video, video_id, populate_existing=True)
    if video is None:
        raise NotFound(f"There is no video {video_id}.", code="video.not_found")
    return video


async def _keys_outside_prefix(session: AsyncSession, video_id: uuid.UUID) -> list[str]:
    """Objects of the video that another path stored outside ``videos/<id>/`` (none do today)."""
    prefix = keys.video_prefix(video_id)
    source = await session.scalar(select(Video.source_key).where(Video.id == video_id))
    files = await session.scalars(
        select(SubtitleTrack.source_ref).where(SubtitleTrack.video_id == video_id, SubtitleTrack.source == "file")
    )
    return sorted({key for key in (source, *files) if key and not key.startswith(prefix)})


async def _wait_for_stages_to_stop(runtime: Runtime, job_ids: list[uuid.UUID]) -> None:
    """Wait until no stage of ``job_ids`` runs: a worker stops a cancelled stage at its next heartbeat."""
    grace = 2 * runtime.settings.heartbeat_seconds + 2.0
    deadline = time.monotonic() + grace
    while True:
        async with runtime.database.sessions() as session:
            running = await session.scalar(
                select(func.count())
                .select_from(StageRun)
                .where(StageRun.job_id.in_(job_ids), StageRun.status == StageStatus.RUNNING.value)
            )
        if not running:
            return
        if time.monotonic() > deadline:
            # TODO(edits): a worker that neither stops nor dies within the grace could still write
            # an object or a search entry after the clean-up; only a tombstone row would catch it.
            logger.warning(
                "Jobs %s still have %d running stages %.0f s after being cancelled; the video is deleted anyway.",
                ", ".join(map(str, job_ids)),
                running,
                grace,
            )
            return
        await asyncio.sleep(_STOP_POLL_SECONDS)


def _checked_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise InvalidInput("A video's title cannot be empty.", code="video.title_empty")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(
            f"A video's title may have at most {MAX_TITLE_CHARS} characters; this one has {len(title)}.",
            code="video.title_too_long",
        )
    return title


def _checked_description(description: str) -> str:
    description = description.strip()
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"A video's description may have at most {MAX_DESCRIPTION_CHARS} characters; "
            f"this one has {len(description)}.",
            code="video.description_too_long",
        )
    return description


def _checked_label(label: str | None) -> str | None:
    label = " ".join((label or "").split())
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidInput(
            f"A subtitle track's label may have at most {MAX_LABEL_CHARS} characters.", code="subtitles.label_too_long"
        )
    return label or None


def _names(rerun: Rerun) -> str:
    return ", ".join(stage.value for stage in rerun.stages) or "none"
