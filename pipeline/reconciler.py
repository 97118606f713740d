"""The reconciler: the database is the truth, the broker only delivers.

It finds work the broker lost and hands it out again:

- a stage ``running`` whose heartbeat is older than ``stale_heartbeat_seconds`` lost its
  worker (killed, machine gone): it goes back to ``queued`` and its message is sent again;
  past ``max_attempts`` it fails with ``worker.lost``;
- a stage ``queued`` for longer than ``lost_message_seconds`` (counted from its scheduled
  attempt) has its message sent again — Redis may have restarted empty. A duplicate of a
  message that was not lost costs nothing: the stage runner's claim ignores it;
- a ``pending`` stage whose prerequisites all succeeded (a worker died between recording a
  success and queueing what follows) is queued;
- an active job whose every stage succeeded (written by an older release that recorded the
  last stage and the job's end in two transactions) is marked succeeded;
- webhook deliveries and account emails whose message was lost are sent again
  (:mod:`pipeline.webhooks`, :mod:`pipeline.email`).

Every decision is logged with its reason.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update

from pipeline.db.models import Job, StageRun, utcnow
from pipeline.email import resend_lost_emails
from pipeline.jobs import queue_ready_stages
from pipeline.runtime import Runtime
from pipeline.stages.runner import fail_stage, finish_job, requeue_running
from pipeline.states import JobStatus, Stage, StageStatus
from pipeline.webhooks import announce_job_event, resend_lost_deliveries

logger = logging.getLogger(__name__)

_ACTIVE_JOBS = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass
class ReconcileReport:
    requeued_stale: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    resent_lost: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    queued_waiting: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    failed_lost: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    finished: list[uuid.UUID] = field(default_factory=list)
    resent_deliveries: int = 0
    resent_emails: int = 0

    @property
    def total(self) -> int:
        return (
            len(self.requeued_stale)
            + len(self.resent_lost)
            + len(self.queued_waiting)
            + len(self.failed_lost)
            + len(self.finished)
            + self.resent_deliveries
            + self.resent_emails
        )


async def reconcile(runtime: Runtime) -> ReconcileReport:
    """One pass over the active jobs; safe to run from several schedulers at once."""
    report = ReconcileReport()
    await _requeue_stale(runtime, report)
    await _resend_lost(runtime, report)
    await _queue_waiting(runtime, report)
    await _finish_done(runtime, report)
    report.resent_deliveries = await resend_lost_deliveries(runtime)
    report.resent_emails = await resend_lost_emails(runtime)
    if report.total:
        logger.info(
            "Reconciler: %d stale running stages re-queued, %d lost messages re-sent, %d waiting stages queued, "
            "%d stages failed after losing their worker too often, %d finished jobs closed, "
            "%d webhook deliveries and %d emails re-sent.",
            len(report.requeued_stale),
            len(report.resent_lost),
            len(report.queued_waiting),
            len(report.failed_lost),
            len(report.finished),
            report.resent_deliveries,
            report.resent_emails,
        )
    return report


async def _requeue_stale(runtime: Runtime, report: ReconcileReport) -> None:
    settings = runtime.settings
    cutoff = utcnow() - timedelta(seconds=settings.stale_heartbeat_seconds)
    async with runtime.database.sessions() as session:
        rows = await session.execute(
            select(StageRun.job_id, StageRun.stage, StageRun.attempts, StageRun.heartbeat_at)
            .join(Job, Job.id == StageRun.job_id)
            .where(StageRun.status == StageStatus.RUNNING.value, StageRun.heartbeat_at < cutoff)
            .where(Job.status.in_(_ACTIVE_JOBS))
        )
        stale = rows.all()
    for job_id, stage_name, attempts, heartbeat_at in stale:
        stage = Stage(stage_name)
        if attempts >= settings.max_attempts:
            await _fail_lost(runtime, job_id, stage, attempts)
            report.failed_lost.append((job_id, stage_name))
            continue
        message = "The worker running this stage stopped answering."
        if await requeue_running(runtime, job_id, stage, "worker.lost", message):
            logger.warning(
                "Stage %s of job %s has had no heartbeat since %s: its worker is taken as lost, so it is re-queued.",
                stage,
                job_id,
                heartbeat_at,
            )
            report.requeued_stale.append((job_id, stage_name))


async def _fail_lost(runtime: Runtime, job_id: uuid.UUID, stage: Stage, attempts: int) -> None:
    message = f"The worker running this stage was lost {attempts} times; giving up."
    logger.warning("Stage %s of job %s lost its worker %d times and fails.", stage, job_id, attempts)
    await fail_stage(runtime, job_id, stage, "worker.lost", message)


async def _resend_lost(runtime: Runtime, report: ReconcileReport) -> None:
    now = utcnow()
    cutoff = now - timedelta(seconds=runtime.settings.lost_message_seconds)
    async with runtime.database.sessions() as session:
        lost = (
            await session.execute(
                select(StageRun.id, StageRun.job_id, StageRun.stage)
                .join(Job, Job.id == StageRun.job_id)
                .where(StageRun.status == StageStatus.QUEUED.value, Job.status.in_(_ACTIVE_JOBS))
                .where(StageRun.queued_at < cutoff)
                .where(or_(StageRun.next_attempt_at.is_(None), StageRun.next_attempt_at < cutoff))
            )
        ).all()
        for run_id, job_id, stage_name in lost:
            # Restart the clock, so a stage whose message is only waiting in a long queue is
            # re-sent once per period, not on every pass.
            result = await session.execute(
                update(StageRun)
                .where(StageRun.id == run_id, StageRun.status == StageStatus.QUEUED.value, StageRun.queued_at < cutoff)
                .values(queued_at=now)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                report.resent_lost.append((job_id, stage_name))
        await session.commit()
    for job_id, stage_name in report.resent_lost:
        logger.warning(
            "Stage %s of job %s has been queued for over %.0f s without a worker taking it; its message is sent again.",
            stage_name,
            job_id,
            runtime.settings.lost_message_seconds,
        )
        runtime.dispatcher.send(job_id, Stage(stage_name))


async def _queue_waiting(runtime: Runtime, report: ReconcileReport) -> None:
    async with runtime.database.sessions() as session:
        job_ids = list(
            await session.scalars(
                select(Job.id)
                .join(StageRun, StageRun.job_id == Job.id)
                .where(Job.status.in_(_ACTIVE_JOBS), StageRun.status == StageStatus.PENDING.value)
                .distinct()
            )
        )
    for job_id in job_ids:
        async with runtime.database.sessions() as session:
            stages = await queue_ready_stages(session, job_id)
            await session.commit()
        for stage in stages:
            logger.warning(
                "Stage %s of job %s was waiting although everything before it had succeeded; it is queued now.",
                stage,
                job_id,
            )
            runtime.dispatcher.send(job_id, stage)
            report.queued_waiting.append((job_id, stage.value))


async def _finish_done(runtime: Runtime, report: ReconcileReport) -> None:
    stages = select(StageRun.job_id).where(StageRun.job_id == Job.id)
    unfinished = stages.where(StageRun.status != StageStatus.SUCCEEDED.value).exists()
    async with runtime.database.sessions() as session:
        job_ids = list(
            await session.scalars(select(Job.id).where(Job.status.in_(_ACTIVE_JOBS), stages.exists(), ~unfinished))
        )
    for job_id in job_ids:
        async with runtime.database.sessions() as session:
            finished = await finish_job(session, job_id)
            await session.commit()
        if finished:
            logger.warning("Job %s was still active although every stage had succeeded; it is finished now.", job_id)
            report.finished.append(job_id)
            await announce_job_event(runtime, job_id)
