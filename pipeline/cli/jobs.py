"""``vidpipe jobs``: list, show, retry and cancel jobs, for operators."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pipeline.cli.app import Pipeline, load_settings, open_pipeline, open_runtime, user_errors
from pipeline.db.models import Job
from pipeline.jobs import cancel_job, retry_job
from pipeline.reports import full_job_report, job_summary, stage_report
from pipeline.runtime import Runtime
from pipeline.states import Stage


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a job id.") from None


def _run(pipeline: Pipeline, work: Any) -> Any:
    async def go() -> Any:
        async with open_runtime(pipeline) as runtime:
            with user_errors():
                return await work(runtime)

    return asyncio.run(go())


@click.group()
def jobs() -> None:
    """Inspect and steer jobs."""


@jobs.command("list")
@click.option("--status", help="Only jobs in this state (queued, running, succeeded, failed, cancelled).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_jobs(status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs with their stages, and the queue depth per stage."""
    from workers.broker import queue_depths

    with open_pipeline(load_settings(), start_workers=False) as pipeline:

        async def work(runtime: Runtime) -> list[dict[str, Any]]:
            query = select(Job).options(selectinload(Job.stages)).order_by(Job.created_at.desc()).limit(limit)
            if status:
                query = query.where(Job.status == status)
            async with runtime.database.sessions() as session:
                rows = list(await session.scalars(query))
            return [{**job_summary(job), "stages": [stage_report(run) for run in job.stages]} for job in rows]

        listed = _run(pipeline, work)
        depths = queue_depths(pipeline.broker)
    if as_json:
        click.echo(json.dumps({"jobs": listed, "queues": depths}, indent=2))
        return
    for job in listed:
        stages = " ".join(f"{s['name']}={s['status']}" for s in job["stages"])
        click.echo(f"{job['id']}  {job['status']:<9}  {job['created_at'][:19]}  {stages}")
    click.echo(
        "queues: " + ", ".join(f"{name} {d['ready']} ready/{d['delayed']} delayed" for name, d in depths.items())
    )


@jobs.command("show")
@click.argument("job_id", type=_job_id)
@click.option("--json", "as_json", is_flag=True)
def show_job(job_id: uuid.UUID, as_json: bool) -> None:
    """One job with its stage timings, attempts and errors."""
    with open_pipeline(load_settings(), start_workers=False) as pipeline:

        async def work(runtime: Runtime) -> dict[str, Any]:
            async with runtime.database.sessions() as session:
                return await full_job_report(session, job_id)

        report = _run(pipeline, work)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    job = report["job"]
    click.echo(f"job {job['id']}  {job['status']}  video {job['video_id']}")
    if job["error_code"]:
        click.echo(f"  [{job['error_code']}] {job['error_message']}")
    for stage in report["stages"]:
        took = f"{stage['duration']:.2f} s" if stage["duration"] is not None else "-"
        line = f"  {stage['name']:<11} {stage['status']:<10} attempts {stage['attempts']}  {took}"
        if stage["error_code"]:
            line += f"  [{stage['error_code']}] {stage['error_message']}"
        click.echo(line)


@jobs.command("retry")
@click.argument("job_id", type=_job_id)
@click.option("--stage", type=click.Choice([s.value for s in Stage]), help="Only this stage and what follows it.")
@click.option("--wait/--no-wait", default=None, help="Wait for the job (default: only with the in-process broker).")
def retry(job_id: uuid.UUID, stage: str | None, wait: bool | None) -> None:
    """Run a finished job again, or one stage of it and what depends on it."""
    from pipeline.cli.progress import wait_for_job

    with open_pipeline(load_settings()) as pipeline:
        waiting = pipeline.in_process if wait is None else wait

        async def work(runtime: Runtime) -> str:
            async with runtime.database.sessions() as session:
                started = await retry_job(session, runtime.dispatcher, job_id, Stage(stage) if stage else None)
            click.echo(f"job {job_id} queued again from {', '.join(s.value for s in started)}")
            if not waiting:
                return "queued"
            return (await wait_for_job(runtime, job_id, show=True)).status

        status = _run(pipeline, work)
    click.echo(f"job {job_id}: {status}")
    sys.exit(0 if status in ("queued", "succeeded") else 1)


@jobs.command("cancel")
@click.argument("job_id", type=_job_id)
def cancel(job_id: uuid.UUID) -> None:
    """Cancel a job: waiting stages at once, a running stage within a heartbeat."""
    with open_pipeline(load_settings(), start_workers=False) as pipeline:

        async def work(runtime: Runtime) -> bool:
            async with runtime.database.sessions() as session:
                done = await cancel_job(session, job_id)
                await session.commit()
                return done

        cancelled = _run(pipeline, work)
    click.echo(f"job {job_id} {'cancelled' if cancelled else 'had already ended'}")
