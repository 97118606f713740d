"""Running one stage of one job: claim, work with heartbeats, record, hand on.

Delivery is at least once, so the runner first claims the stage with a conditional update
(``queued -> running``); a duplicate or redelivered message finds nothing to claim and
returns quietly. Permanent errors fail the stage and the job at once; transient ones put the
stage back to ``queued`` and send it again after an exponential backoff, until
``max_attempts`` is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline.db.models import Job, StageRun, Video, utcnow
from pipeline.errors import PermanentError, TransientError, VidpipeError
from pipeline.jobs import backoff_ms, lock_job, move_job, move_stage, queue_ready_stages, stage_duration
from pipeline.logs import bind_log_context, log_context
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.stagetotals import add_success
from pipeline.states import GRAPH, JOB_TERMINAL, JobStatus, Stage, StageStatus, VideoStatus, dependents
from pipeline.webhooks import announce_job_event

logger = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What a stage function gets: the services, the ids, and a way to report progress."""

    runtime: Runtime
    job_id: uuid.UUID
    video_id: uuid.UUID
    stage: Stage
    attempt: int
    duration: float | None = None
    """The video's duration when the stage was claimed (``None`` before ingest)."""
    _last_report: float = field(default_factory=time.monotonic)
    """When progress was last written; the claim that made the context wrote the run's start."""

    async def report(self, progress: float, *, force: bool = False) -> None:
        """Record progress (0-100); writes at most every half second (counted from the claim) unless ``force``.

        Each write is a transaction, and a short video's stage is over before a poller could
        see its steps: most of a 2 s clip's thumbnails stage went into three such writes.
        """
        now = time.monotonic()
        if not force and now - self._last_report < 0.5:
            return
        self._last_report = now
        async with self.runtime.database.sessions() as session:
            await session.execute(
                update(StageRun)
                .where(StageRun.job_id == self.job_id, StageRun.stage == self.stage.value)
                .values(progress=max(0.0, min(100.0, progress)), heartbeat_at=utcnow())
            )
            await session.commit()


StageFunction = Callable[[StageContext], Coroutine[Any, Any, None]]


async def run_stage(runtime: Runtime, job_id: uuid.UUID, stage: Stage, work: StageFunction) -> None:
    """Run ``stage`` of ``job_id`` with ``work`` if this call wins the claim.

    Every log line of the stage's work, in this task and the ones it starts, carries the job id,
    the video id (once claimed) and the stage.
    """
    with log_context(job_id=job_id, stage=stage.value):
        await _run_stage(runtime, job_id, stage, work)


async def _run_stage(runtime: Runtime, job_id: uuid.UUID, stage: Stage, work: StageFunction) -> None:
    context = await _claim(runtime, job_id, stage)
    if context is None:
        return
    bind_log_context(video_id=context.video_id)
    started = time.monotonic()
    limit = stage_time_limit(runtime.settings, stage, context.duration)
    logger.info("Stage %s of job %s started (attempt %d, limit %.0f s).", stage, job_id, context.attempt, limit)
    task = asyncio.create_task(work(context))
    watch = _Watch()
    watcher = asyncio.create_task(_heartbeat(runtime, job_id, stage, task, watch))
    try:
        await _finish_within(task, limit)
    except asyncio.CancelledError:
        if not watch.job_cancelled:
            raise
        logger.info("Stage %s of job %s stopped: the job was cancelled.", stage, job_id)
        await _cancelled(runtime, job_id, stage)
    except TimeoutError:
        message = f"The {stage} stage took longer than its limit of {limit:.0f} s and was stopped."
        logger.warning("Stage %s of job %s timed out after %.0f s.", stage, job_id, limit)
        await fail_stage(runtime, job_id, stage, "stage.timeout", message)
    except PermanentError as exc:
        logger.warning("Stage %s of job %s failed for good: [%s] %s", stage, job_id, exc.code, exc.message)
        await fail_stage(runtime, job_id, stage, exc.code, exc.message)
    except TransientError as exc:
        await _retry_or_fail(runtime, context, exc.code, exc.message)
    except (OperationalError, InterfaceError) as exc:
        logger.warning("Stage %s of job %s lost the database: %s", stage, job_id, type(exc.orig).__name__)
        await _retry_or_fail(runtime, context, "database.unavailable", "The database did not answer; retrying.")
    except Exception as exc:
        logger.exception("Stage %s of job %s raised an unexpected error.", stage, job_id)
        await _retry_or_fail(runtime, context, "internal.error", _unexpected_message(exc))
    else:
        await _succeed(runtime, job_id, stage)
        logger.info("Stage %s of job %s succeeded in %.2f s.", stage, job_id, time.monotonic() - started)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def stage_time_limit(settings: Settings, stage: Stage, duration: float | None) -> float:
    """Seconds a stage may run: a fixed base plus a share of the video's duration."""
    if stage is Stage.INDEX or duration is None:
        return settings.stage_timeout_base
    return settings.stage_timeout_base + settings.stage_timeout_factor * duration


async def _finish_within(task: asyncio.Task[None], limit: float) -> None:
    """Wait for ``task``; past ``limit`` cancel it (its ffmpeg child dies with it) and raise TimeoutError."""
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise TimeoutError
    task.result()


@dataclass
class _Watch:
    job_cancelled: bool = False


async def _claim(runtime: Runtime, job_id: uuid.UUID, stage: Stage) -> StageContext | None:
    async with runtime.database.sessions() as session:
        row = await session.execute(
            select(Job.status, Job.video_id, StageRun.status, StageRun.attempts, Video.duration)
            .join(StageRun, StageRun.job_id == Job.id)
            .join(Video, Video.id == Job.video_id)
            .where(Job.id == job_id, StageRun.stage == stage.value)
        )
        found = row.first()
        if found is None:
            logger.info(
                "Stage %s of job %s has no row; the job was deleted, so the message is dropped.",
                stage,
                job_id,
            )
            return None
        job_status, video_id, stage_status, attempts, duration = found
        if JobStatus(job_status) in JOB_TERMINAL:
            logger.info("Stage %s of job %s is not run: the job is already %s.", stage, job_id, job_status)
            # A cancel made through the API or CLI recorded webhook deliveries; a runner announces them.
            await announce_job_event(runtime, job_id)
            return None
        if not await move_stage(
            session,
            job_id,
            stage,
            StageStatus.RUNNING,
            only_from=[StageStatus.QUEUED],
            attempts=attempts + 1,
            progress=0.0,
            error_code=None,
            error_message=None,
            finished_at=None,
        ):
            logger.info(
                "Stage %s of job %s is %s, not queued: a duplicate message, ignored.",
                stage,
                job_id,
                stage_status,
            )
            return None
        if await move_job(session, job_id, JobStatus.RUNNING):
            await session.execute(update(Video).where(Video.id == video_id).values(status=VideoStatus.PROCESSING.value))
        await session.commit()
    return StageContext(
        runtime=runtime, job_id=job_id, video_id=video_id, stage=stage, attempt=attempts + 1, duration=duration
    )


async def _heartbeat(
    runtime: Runtime, job_id: uuid.UUID, stage: Stage, task: asyncio.Task[None], watch: _Watch
) -> None:
    """Tell the database this stage is alive, and stop the work when its job is cancelled.

    The heartbeat lets the reconciler tell a dead worker apart; reading the job's state on the
    same beat is how a cancel requested anywhere (CLI, API) reaches the worker doing the work.
    """
    while not task.done():
        await asyncio.sleep(runtime.settings.heartbeat_seconds)
        try:
            async with runtime.database.sessions() as session:
                await session.execute(
                    update(StageRun)
                    .where(StageRun.job_id == job_id, StageRun.stage == stage.value)
                    .values(heartbeat_at=utcnow())
                )
                status = await session.scalar(select(Job.status).where(Job.id == job_id))
                await session.commit()
        except Exception:  # a missed heartbeat is not worth failing the stage over
            logger.debug("Heartbeat of stage %s of job %s was not written.", stage, job_id, exc_info=True)
            continue
        if status == JobStatus.CANCELLED:
            watch.job_cancelled = True
            task.cancel()
            return


async def _cancelled(runtime: Runtime, job_id: uuid.UUID, stage: Stage) -> None:
    async with runtime.database.sessions() as session:
        await move_stage(session, job_id, stage, StageStatus.CANCELLED, only_from=[StageStatus.RUNNING])
        await session.commit()
    await announce_job_event(runtime, job_id)


async def _succeed(runtime: Runtime, job_id: uuid.UUID, stage: Stage) -> None:
    """Record the stage's success together with what follows from it, in one transaction.

    The stages it unblocks are queued, or the job ends when it was the last one: a connection
    lost between the two would otherwise leave the stage succeeded and the job running, and a
    redelivered message for a succeeded stage is ignored.
    """
    async with runtime.database.sessions() as session:
        ready, finished = await record_success(session, job_id, stage)
        await session.commit()
    for follower in ready:
        runtime.dispatcher.send(job_id, follower)
    if finished:
        await announce_job_event(runtime, job_id)


async def record_success(session: AsyncSession, job_id: uuid.UUID, stage: Stage) -> tuple[list[Stage], bool]:
    """Mark ``stage`` succeeded in the caller's transaction, with the stages it unblocks or the job's end.

    Returns the stages queued (their messages are the caller's to send after the commit) and
    whether the job ended. The job's row is locked first, so the successes of one job's parallel
    stages take turns: without it two branches finishing together could each miss the other's
    uncommitted success, and the stage both wait for would never be queued.
    """
    await lock_job(session, job_id)
    if await move_stage(session, job_id, stage, StageStatus.SUCCEEDED, progress=100.0):
        await _count_duration(session, job_id, stage)
    ready = await queue_ready_stages(session, job_id) if dependents(stage) else []
    finished = not dependents(stage) and await finish_job(session, job_id)
    return ready, finished


async def _count_duration(session: AsyncSession, job_id: uuid.UUID, stage: Stage) -> None:
    """Add the run that just succeeded to the stage duration totals (the metrics histogram)."""
    run = await session.scalar(
        select(StageRun)
        .where(StageRun.job_id == job_id, StageRun.stage == stage.value)
        .execution_options(populate_existing=True)
    )
    seconds = stage_duration(run) if run is not None else None
    if seconds is not None:
        await add_success(session, stage.value, seconds)


async def finish_job(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Mark the job succeeded and its video ready, in the caller's transaction; ``False`` if it had ended."""
    if not await move_job(session, job_id, JobStatus.SUCCEEDED):
        return False
    video_id = await session.scalar(select(Job.video_id).where(Job.id == job_id))
    await session.execute(update(Video).where(Video.id == video_id).values(status=VideoStatus.READY.value))
    logger.info("Job %s succeeded; video %s is ready.", job_id, video_id)
    return True


async def fail_stage(runtime: Runtime, job_id: uuid.UUID, stage: Stage, code: str, message: str) -> None:
    """Fail the stage and its job, and skip the stages that can no longer run."""
    async with runtime.database.sessions() as session:
        await lock_job(session, job_id)
        await move_stage(session, job_id, stage, StageStatus.FAILED, error_code=code, error_message=message)
        for other in GRAPH:
            if other is not stage:
                await move_stage(
                    session,
                    job_id,
                    other,
                    StageStatus.SKIPPED,
                    only_from=[StageStatus.PENDING, StageStatus.QUEUED],
                )
        if await move_job(session, job_id, JobStatus.FAILED, error_code=code, error_message=message):
            video_id = await session.scalar(select(Job.video_id).where(Job.id == job_id))
            await session.execute(update(Video).where(Video.id == video_id).values(status=VideoStatus.FAILED.value))
        await session.commit()
    await announce_job_event(runtime, job_id)


async def _retry_or_fail(runtime: Runtime, context: StageContext, code: str, message: str) -> None:
    settings = runtime.settings
    job_id, stage = context.job_id, context.stage
    if context.attempt >= settings.max_attempts:
        logger.warning(
            "Stage %s of job %s failed after %d attempts: [%s] %s",
            stage,
            job_id,
            context.attempt,
            code,
            message,
        )
        await fail_stage(runtime, job_id, stage, code, f"{message} (gave up after {context.attempt} attempts)")
        return
    delay = backoff_ms(context.attempt, settings.retry_backoff_ms, settings.retry_backoff_max_ms)
    logger.info(
        "Stage %s of job %s hit a transient error [%s] %s; attempt %d of %d in %d ms.",
        stage,
        job_id,
        code,
        message,
        context.attempt + 1,
        settings.max_attempts,
        delay,
    )
    await requeue_running(runtime, job_id, stage, code, message, delay_ms=delay)


async def requeue_running(
    runtime: Runtime, job_id: uuid.UUID, stage: Stage, code: str, message: str, *, delay_ms: int = 0
) -> bool:
    """Put a running stage back to ``queued`` with the reason, and send its message after ``delay_ms``.

    Returns:
        Whether this call moved it; another writer may have finished or re-queued it first.
    """
    async with runtime.database.sessions() as session:
        moved = await move_stage(
            session,
            job_id,
            stage,
            StageStatus.QUEUED,
            only_from=[StageStatus.RUNNING],
            error_code=code,
            error_message=message,
            next_attempt_at=utcnow() + timedelta(milliseconds=delay_ms) if delay_ms else None,
        )
        await session.commit()
    if moved:
        runtime.dispatcher.send(job_id, stage, delay_ms=delay_ms)
    return moved


def _unexpected_message(exc: BaseException) -> str:
    if isinstance(exc, VidpipeError):
        return exc.message
    return f"An unexpected internal error occurred ({type(exc).__name__}); it will be retried."
