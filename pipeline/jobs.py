"""Creating jobs and moving jobs and stage runs between states.

Every state write goes through :func:`move_stage` or :func:`move_job`. Each checks the
transition against :mod:`pipeline.states` and writes with a conditional ``UPDATE … WHERE
status IN (…)``, so two workers racing on the same row cannot both win: the loser's update
matches no row and it backs off. That is also how fan-in sends exactly one ``index`` message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from pipeline.db.models import Job, StageRun, Video, utcnow
from pipeline.dispatch import Dispatcher
from pipeline.errors import NotFound
from pipeline.states import (
    GRAPH,
    STAGE_ORDER,
    STAGE_TERMINAL,
    JobStatus,
    Stage,
    StageStatus,
    VideoStatus,
    allowed_job_sources,
    allowed_stage_sources,
    check_job_transition,
    check_stage_transition,
    downstream,
)
from pipeline.webhooks import record_job_event

logger = logging.getLogger(__name__)


def new_job(video: Video) -> Job:
    """A queued job for ``video`` with one pending run per stage of the graph."""
    job = Job(id=uuid.uuid4(), video=video, status=JobStatus.QUEUED)
    job.stages = [
        StageRun(id=uuid.uuid4(), stage=stage.value, position=i, status=StageStatus.PENDING)
        for i, stage in enumerate(STAGE_ORDER)
    ]
    return job


async def load_job(session: AsyncSession, job_id: uuid.UUID) -> Job:
    """The job with its video and stage runs, or :class:`NotFound`."""
    job = await session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .options(selectinload(Job.stages), selectinload(Job.video))
        .execution_options(populate_existing=True)
    )
    if job is None:
        raise NotFound(f"There is no job {job_id}.", code="job.not_found")
    return job


async def move_stage(
    session: AsyncSession,
    job_id: uuid.UUID,
    stage: Stage,
    target: StageStatus,
    *,
    only_from: Iterable[StageStatus] | None = None,
    **fields: Any,
) -> bool:
    """Move one stage run to ``target`` if its current state allows it.

    Returns:
        Whether this call made the move; ``False`` means another writer got there first or
        the run is in a state that does not lead to ``target``.
    """
    sources = set(allowed_stage_sources(target))
    if only_from is not None:
        sources &= set(only_from)
    now = utcnow()
    values: dict[str, Any] = {"status": target.value, **fields}
    if target is StageStatus.QUEUED:
        values.setdefault("queued_at", now)
    if target is StageStatus.RUNNING:
        values.setdefault("started_at", now)
        values.setdefault("heartbeat_at", now)
    if target in STAGE_TERMINAL:
        values.setdefault("finished_at", now)
    result = await session.execute(
        update(StageRun)
        .where(
            StageRun.job_id == job_id,
            StageRun.stage == stage.value,
            StageRun.status.in_([s.value for s in sources]),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def move_job(session: AsyncSession, job_id: uuid.UUID, target: JobStatus, **fields: Any) -> bool:
    """Move a job to ``target`` if its current state allows it; see :func:`move_stage`."""
    values: dict[str, Any] = {"status": target.value, "updated_at": utcnow(), **fields}
    if target is JobStatus.RUNNING:
        values.setdefault("started_at", utcnow())
    if target in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        values.setdefault("finished_at", utcnow())
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in allowed_job_sources(target)]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        # A job that ended gets its webhook deliveries in this transaction: both commit, or neither.
        await record_job_event(session, job_id, target)
    return moved


def check_stage_move(run: StageRun, target: StageStatus) -> None:
    """Raise :class:`~pipeline.errors.InvalidTransition` for a move the state model forbids."""
    check_stage_transition(StageStatus(run.status), target)


def check_job_move(job: Job, target: JobStatus) -> None:
    check_job_transition(JobStatus(job.status), target)


async def lock_job(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Take the job's row for the rest of the caller's transaction (``FOR UPDATE``; SQLite ignores it).

    A transaction that changes several of a job's stage runs takes the job first, so two such
    transactions take turns instead of each missing the other's changes, and never wait on each
    other's rows in opposite orders.
    """
    await session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


async def queue_ready_stages(session: AsyncSession, job_id: uuid.UUID) -> list[Stage]:
    """Queue every pending stage whose prerequisites have all succeeded.

    The finishing stage's success must be visible to every other finisher when this reads:
    call it in its own transaction after that success is committed, or in the same transaction
    with the job's row locked first (as the stage runner's ``record_success`` does). Then the
    last of two parallel branches always sees both successes, and the conditional update lets
    exactly one caller queue the waiting stage.
    """
    rows = await session.execute(select(StageRun.stage, StageRun.status).where(StageRun.job_id == job_id))
    status = {Stage(stage): StageStatus(state) for stage, state in rows.all()}
    queued: list[Stage] = []
    for stage, needs in GRAPH.items():
        if status.get(stage) is not StageStatus.PENDING:
            continue
        if all(status.get(need) is StageStatus.SUCCEEDED for need in needs) and await move_stage(
            session, job_id, stage, StageStatus.QUEUED, only_from=[StageStatus.PENDING]
        ):
            queued.append(stage)
    return queued


async def start_job(session: AsyncSession, dispatcher: Dispatcher, job_id: uuid.UUID) -> list[Stage]:
    """Queue the job's first stages, commit, then send their messages.

    The message goes out only after the commit, so a worker never finds a stage that is
    not yet queued in the database.
    """
    stages = await queue_ready_stages(session, job_id)
    await session.commit()
    for stage in stages:
        dispatcher.send(job_id, stage)
    logger.info("Job %s started with %s.", job_id, ", ".join(s.value for s in stages) or "no stage")
    return stages


async def retry_job(
    session: AsyncSession, dispatcher: Dispatcher, job_id: uuid.UUID, stage: Stage | None = None
) -> list[Stage]:
    """Run a finished job again: every stage, or ``stage`` and what depends on it."""
    job = await load_job(session, job_id)
    check_job_move(job, JobStatus.QUEUED)
    again = set(downstream(stage) if stage else STAGE_ORDER)
    for run in job.stages:
        if Stage(run.stage) in again:
            if run.status != StageStatus.PENDING:
                check_stage_move(run, StageStatus.PENDING)
            await session.execute(
                update(StageRun)
                .where(StageRun.id == run.id)
                .values(
                    status=StageStatus.PENDING.value,
                    progress=0.0,
                    attempts=0,
                    error_code=None,
                    error_message=None,
                    started_at=None,
                    finished_at=None,
                    next_attempt_at=None,
                )
            )
    await move_job(session, job_id, JobStatus.QUEUED, error_code=None, error_message=None, finished_at=None)
    return await start_job(session, dispatcher, job_id)


def stage_duration(run: StageRun) -> float | None:
    """Seconds between a run's start and finish, when both are known."""
    if run.started_at is None or run.finished_at is None:
        return None
    return (run.finished_at - run.started_at).total_seconds()


def backoff_ms(attempt: int, base_ms: int, max_ms: int) -> int:
    """Exponential backoff: ``base_ms`` after the first attempt, doubling, capped at ``max_ms``."""
    return int(min(max_ms, base_ms * 2 ** max(0, attempt - 1)))


async def cancel_job(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Cancel a job that has not ended: waiting stages are cancelled at once, a running one
    by its worker at its next heartbeat (which also ends its ffmpeg child).

    Returns:
        Whether the job was cancelled by this call (``False`` if it had already ended).
    """
    await load_job(session, job_id)
    if not await move_job(
        session, job_id, JobStatus.CANCELLED, error_code="job.cancelled", error_message="The job was cancelled."
    ):
        return False
    for stage in STAGE_ORDER:
        await move_stage(
            session, job_id, stage, StageStatus.CANCELLED, only_from=[StageStatus.PENDING, StageStatus.QUEUED]
        )
    video_id = await session.scalar(select(Job.video_id).where(Job.id == job_id))
    await session.execute(update(Video).where(Video.id == video_id).values(status=VideoStatus.FAILED.value))
    logger.info("Job %s was cancelled.", job_id)
    return True
