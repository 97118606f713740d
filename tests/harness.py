"""Driving the pipeline from inside a test: submit, wait, read back, send raw messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.cli.app import Pipeline, open_pipeline, open_runtime
from pipeline.cli.progress import wait_for_job
from pipeline.reports import full_job_report
from pipeline.runtime import Runtime
from pipeline.submit import submit_file

T = TypeVar("T")


def with_runtime(pipeline: Pipeline, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_runtime(pipeline) as runtime:
            return await work(runtime)

    return asyncio.run(go())


async def process(runtime: Runtime, path: Path, timeout: float = 120, **options: Any) -> dict[str, Any]:
    submitted = await submit_file(runtime, path, **options)
    await wait_for_job(runtime, submitted.job_id, show=False, timeout=timeout)
    return await report(runtime, submitted.job_id)


async def report(runtime: Runtime, job_id: uuid.UUID) -> dict[str, Any]:
    async with runtime.database.sessions() as session:
        return await full_job_report(session, job_id)


def drain(pipeline: Pipeline, settle: float = 0.5, timeout: float = 30) -> None:
    """Wait until every stage queue is empty and nothing is in flight."""
    if pipeline.in_process:
        for queue in list(pipeline.broker.get_declared_queues()):
            pipeline.broker.join(queue, timeout=int(timeout * 1000))  # type: ignore[attr-defined]
        pipeline.worker.join()  # type: ignore[union-attr]
        return
    client = pipeline.broker.client  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = [k for k in client.keys(f"{pipeline.settings.broker_namespace}:*") if not k.endswith(b".msgs")]
        if all(client.llen(k) == 0 for k in keys if client.type(k) == b"list"):
            break
        time.sleep(0.1)
    time.sleep(settle)


__all__ = ["drain", "open_pipeline", "process", "report", "with_runtime"]
