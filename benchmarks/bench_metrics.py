"""What a ``/metrics`` scrape costs to read the stage duration histogram, as the library grows.

Run from the repository root::

    .venv/bin/python benchmarks/bench_metrics.py [--runs 400000] [--only sqlite|postgresql]

For each database (SQLite in a scratch file, and a scratch PostgreSQL database when one answers
on 127.0.0.1:5432), ``--runs`` succeeded stage runs with spread-out durations are written, the
running totals are filled from them the way migration 0011 does, and then the two ways of
reading the histogram are timed, best of five each:

- vidpipe: reading the running totals (``stage_duration_totals``), what a scrape does now;
- baseline: grouping every succeeded run by stage and bucket, what a scrape did before.

Printed per database: both times, the ratio, the back-fill's one-off time, and a check that
both give the same histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.db import open_database  # noqa: E402
from pipeline.db.migrate import upgrade  # noqa: E402
from pipeline.db.models import Job, StageRun, Video  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.stagetotals import STAGE_BUCKETS, read_durations, runs_by_bucket, totals_from_runs  # noqa: E402
from pipeline.states import Stage  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 20_000


def postgres_answers() -> bool:
    try:
        with psycopg.connect(ADMIN, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


async def best_of(times: int, work: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        await work()
        best = min(best, time.perf_counter() - started)
    return best


async def measure(url: str, runs: int) -> dict[str, float]:
    upgrade(url)
    database = open_database(dataclasses.replace(Settings.from_env({}), database_url=url))
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    try:
        await _fill(database, runs)
        async with database.sessions() as session:
            started = time.perf_counter()
            await session.execute(totals_from_runs(dialect))
            await session.commit()
            backfill = time.perf_counter() - started

        async def totals() -> Any:
            async with database.sessions() as session:
                return await read_durations(session)

        async def scan() -> Any:
            async with database.sessions() as session:
                return (await session.execute(runs_by_bucket(dialect))).all()

        read = await best_of(5, totals)
        scanned = await best_of(5, scan)
        histogram = await totals()
        counted = {(stage, bucket): count for stage, bucket, count, _ in await scan()}
        same = sum(h.count for h in histogram.values()) == sum(counted.values()) == runs
        return {"totals": read, "scan": scanned, "backfill": backfill, "same": float(same)}
    finally:
        await database.dispose()


async def _fill(database: Any, runs: int) -> None:
    """``runs`` succeeded stage runs: one video, a job per four runs, durations over every bucket."""
    rng = random.Random(7)
    stages = list(Stage)
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    async with database.sessions() as session:
        video = Video(title="Bench", source_key="x", source_filename="x.mp4", status="ready")
        session.add(video)
        await session.commit()
        video_id = video.id
    written = 0
    while written < runs:
        count = min(BATCH, runs - written)
        jobs, stage_runs = [], []
        for i in range(0, count, len(stages)):
            job_id = uuid.uuid4()
            jobs.append({"id": job_id, "video_id": video_id, "status": "succeeded"})
            for position, stage in enumerate(stages[: min(len(stages), count - i)]):
                took = rng.choice(STAGE_BUCKETS) * rng.uniform(0.2, 1.1)
                stage_runs.append(
                    {
                        "id": uuid.uuid4(),
                        "job_id": job_id,
                        "stage": stage.value,
                        "position": position,
                        "status": "succeeded",
                        "started_at": begin,
                        "finished_at": begin + timedelta(seconds=took),
                    }
                )
        async with database.sessions() as session:
            await session.execute(Job.__table__.insert(), jobs)  # type: ignore[attr-defined]
            await session.execute(StageRun.__table__.insert(), stage_runs)  # type: ignore[attr-defined]
            await session.commit()
        written += count
        print(f"  {written:,} of {runs:,} stage runs written", end="\r", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=400_000)
    parser.add_argument("--only", action="append", choices=["sqlite", "postgresql"])
    options = parser.parse_args()
    chosen = options.only or ["sqlite", "postgresql"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in chosen:
            print("sqlite:")
            results["sqlite"] = asyncio.run(measure(f"sqlite+aiosqlite:///{tmp}/metrics.db", options.runs))
        if "postgresql" in chosen and postgres_answers():
            name = f"vidpipe_bench_metrics_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                print("postgresql:")
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                results["postgresql"] = asyncio.run(measure(url, options.runs))
            finally:
                with psycopg.connect(ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"stage duration histogram at {options.runs:,} succeeded stage runs, best of 5")
    for name, figures in results.items():
        print(
            f"  {name:<11} running totals {figures['totals'] * 1000:8.2f} ms   scan of every run "
            f"{figures['scan'] * 1000:9.1f} ms   = {figures['scan'] / figures['totals']:7.0f}x faster; "
            f"one-off back-fill {figures['backfill']:5.2f} s; same histogram: {bool(figures['same'])}"
        )


if __name__ == "__main__":
    main()
