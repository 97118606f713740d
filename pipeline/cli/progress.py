"""Waiting for a job while showing each stage's progress on a terminal."""

from __future__ import annotations

import asyncio
import uuid

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pipeline.db.models import Job
from pipeline.jobs import load_job
from pipeline.runtime import Runtime
from pipeline.states import JOB_TERMINAL, JobStatus

_POLL_SECONDS = 0.2


async def wait_for_job(runtime: Runtime, job_id: uuid.UUID, *, show: bool, timeout: float | None = None) -> Job:
    """Poll the database until the job ends; draw a bar per stage when ``show``."""
    console = Console(stderr=True)
    display = show and console.is_terminal
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    with Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        TextColumn("{task.fields[status]:<10}"),
        TimeElapsedColumn(),
        console=console,
        disable=not display,
        transient=False,
    ) as progress:
        bars: dict[str, TaskID] = {}
        while True:
            async with runtime.database.sessions() as session:
                job = await load_job(session, job_id)
            for run in job.stages:
                if run.stage not in bars:
                    bars[run.stage] = progress.add_task(run.stage, total=100, status=run.status)
                progress.update(bars[run.stage], completed=run.progress, status=run.status)
            if JobStatus(job.status) in JOB_TERMINAL:
                return job
            if deadline is not None and loop.time() > deadline:
                return job
            await asyncio.sleep(_POLL_SECONDS)
