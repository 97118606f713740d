"""Running totals of how long stages take, kept as each stage succeeds, for the metrics histogram.

``/metrics`` reports ``vidpipe_stage_duration_seconds`` as a Prometheus histogram. Reading it
from the stage runs themselves meant scanning every succeeded run on each scrape (about a second
at 400,000 runs), and its counts fell whenever a retry or a deleted video took runs away, which
Prometheus reads as a counter reset. Instead the stage runner adds each success to one row per
(stage, bucket) in the same transaction that records the success, so a scrape reads a few dozen
rows and the counts only grow. A stage that is retried and succeeds again counts again: the
histogram describes stage work done, not the runs the database still holds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, case, extract, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Insert

from pipeline.db.models import StageDurationTotal, StageRun
from pipeline.states import StageStatus

STAGE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds, in seconds, of the histogram's buckets: an index run to a long storyboard.

Rows store a bucket's position in this tuple; changing the bounds needs a migration that
re-buckets the stored totals.
"""


@dataclass
class Durations:
    """One stage's histogram: cumulative counts per bound, the count and the sum of seconds."""

    count: int = 0
    total: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(STAGE_BUCKETS))


def bucket_of(seconds: float) -> int:
    """The position of the lowest bound ``seconds`` fits under; ``len(STAGE_BUCKETS)`` beyond the last."""
    return bisect.bisect_left(STAGE_BUCKETS, seconds)


async def add_success(session: AsyncSession, stage: str, seconds: float) -> None:
    """Count one succeeded run of ``stage`` that took ``seconds``, in the caller's transaction."""
    seconds = max(0.0, seconds)
    statement = _insert(session.get_bind().dialect.name).values(
        stage=stage, bucket=bucket_of(seconds), runs=1, seconds=seconds
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[StageDurationTotal.stage, StageDurationTotal.bucket],
            set_={
                "runs": StageDurationTotal.runs + statement.excluded.runs,
                "seconds": StageDurationTotal.seconds + statement.excluded.seconds,
            },
        )
    )


async def read_durations(session: AsyncSession) -> dict[str, Durations]:
    """Every stage's histogram, from the running totals."""
    totals = StageDurationTotal
    rows = await session.execute(select(totals.stage, totals.bucket, totals.runs, totals.seconds))
    found: dict[str, Durations] = {}
    for stage, lowest, runs, seconds in rows:
        seen = found.setdefault(stage, Durations())
        seen.count += runs
        seen.total += seconds
        for i in range(lowest, len(STAGE_BUCKETS)):
            seen.buckets[i] += runs
    return found


def totals_from_runs(dialect: str) -> Insert:
    """``INSERT … SELECT`` of the totals of every succeeded run in ``stage_runs`` (a migration's back-fill)."""
    table = StageDurationTotal.__table__
    columns = ["stage", "bucket", "runs", "seconds"]
    return table.insert().from_select(columns, runs_by_bucket(dialect))  # type: ignore[attr-defined]


def runs_by_bucket(dialect: str) -> Select[tuple[str, int, int, float]]:
    """Succeeded runs in ``stage_runs`` counted by stage and bucket: a scan of every run."""
    seconds = _run_seconds(dialect)
    bucket = case(*((seconds <= bound, i) for i, bound in enumerate(STAGE_BUCKETS)), else_=len(STAGE_BUCKETS))
    return (
        select(StageRun.stage, bucket.label("bucket"), func.count(), func.coalesce(func.sum(seconds), 0.0))
        .where(
            StageRun.status == StageStatus.SUCCEEDED.value,
            StageRun.started_at.is_not(None),
            StageRun.finished_at.is_not(None),
        )
        # By the output column's name: the CASE repeated would carry bound parameters of its own.
        .group_by(StageRun.stage, literal_column("bucket"))
    )


def _run_seconds(dialect: str) -> ColumnElement[Any]:
    """Seconds from a run's start to its finish, in the database's own date arithmetic."""
    if dialect == "sqlite":
        return (func.julianday(StageRun.finished_at) - func.julianday(StageRun.started_at)) * 86400.0
    return extract("epoch", StageRun.finished_at - StageRun.started_at)


def _insert(dialect: str) -> Any:
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(StageDurationTotal)
