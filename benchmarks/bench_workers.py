"""Backlog drain with 1 and 2 worker processes, and the stage-to-stage hop on an idle worker.

Run from the repository root (needs PostgreSQL and Redis on 127.0.0.1)::

    .venv/bin/python benchmarks/bench_workers.py [--clips 40]

A scratch PostgreSQL database, a Redis namespace of its own and a local object folder are
used; real ``dramatiq workers.entry`` processes do the work. Figures:

- drain: 40 short clips (2 s, 320x180) are queued with no worker running, then workers start;
  the time from the first stage starting to the last job ending, for 1 process and for 2
  (one thread each and ``VIDPIPE_FFMPEG_THREADS=1``, so the ratio shows what a second process
  adds on 2 cores rather than how ffmpeg spreads one video over both);
- the cores one process's media work keeps busy: even with ``-threads 1`` ffmpeg runs its
  demuxer, decoder, filters and encoder on threads of their own, so one process already uses a
  little more than one core and ``2 / cores`` is the most a second process can add;
- overhead per video beyond the media work: the 1-process drain divided by the clip count,
  minus the same media calls (probe, poster, candidates, storyboard) run bare on one clip;
- hop: the gap between one stage finishing and the next starting, median over 20 jobs sent
  one at a time to an idle worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.cli.app import open_pipeline, open_runtime  # noqa: E402
from pipeline.db.migrate import upgrade  # noqa: E402
from pipeline.db.models import Job, StageRun  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.states import JOB_TERMINAL  # noqa: E402
from pipeline.submit import submit_file  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CACHE = ROOT / "benchmarks" / ".cache"


def make_clips(count: int) -> list[Path]:
    from tests.mediagen import make_video

    CACHE.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(count):
        path = CACHE / f"drain-{i:02d}.mp4"
        if not path.exists():
            make_video(path, duration=2.0, width=320, height=180)
        clips.append(path)
    return clips


def scratch_env(tmp: Path) -> dict[str, str]:
    name = f"vidpipe_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        "VIDPIPE_DATA_DIR": str(tmp),
        "VIDPIPE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "VIDPIPE_BROKER_URL": "redis://127.0.0.1:6379/7",
        "VIDPIPE_BROKER_NAMESPACE": name,
        "VIDPIPE_STORAGE_URL": (tmp / "objects").as_uri(),
        "VIDPIPE_FFMPEG_THREADS": "1",
    }
    upgrade(env["VIDPIPE_DATABASE_URL"])
    return env


def drop(env: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(env["VIDPIPE_BROKER_URL"])
    keys = list(client.scan_iter(f"{env['VIDPIPE_BROKER_NAMESPACE']}:*"))
    if keys:
        client.delete(*keys)
    name = env["VIDPIPE_DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_workers(env: dict[str, str], processes: int, threads: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "workers.entry", "--processes", str(processes), "--threads", str(threads)],
        env={**os.environ, "dramatiq_worker_timeout": "100", **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=30)


def drain(clips: list[Path], processes: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = scratch_env(Path(tmp))
        try:
            settings = Settings.from_env(env).with_secret()
            with open_pipeline(settings, start_workers=False) as pipeline:

                async def go() -> float:
                    async with open_runtime(pipeline) as runtime:
                        jobs = [(await submit_file(runtime, clip)).job_id for clip in clips]
                        workers = start_workers(env, processes, 1)
                        try:
                            await _wait_all(runtime, jobs)
                        finally:
                            stop(workers)
                        async with runtime.database.sessions() as session:
                            rows = (await session.execute(select(StageRun.started_at, StageRun.finished_at))).all()
                    return (max(r[1] for r in rows) - min(r[0] for r in rows)).total_seconds()

                return asyncio.run(go())
        finally:
            drop(env)


async def _wait_all(runtime, jobs: list[uuid.UUID]) -> None:  # type: ignore[no-untyped-def]
    while True:
        async with runtime.database.sessions() as session:
            statuses = list(await session.scalars(select(Job.status).where(Job.id.in_(jobs))))
        if all(s in JOB_TERMINAL for s in statuses):
            assert all(s == "succeeded" for s in statuses), statuses
            return
        await asyncio.sleep(0.1)


def hops(clip: Path, count: int = 20) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = scratch_env(Path(tmp))
        try:
            settings = Settings.from_env(env).with_secret()
            workers = start_workers(env, 1, 2)
            time.sleep(2.0)
            try:
                with open_pipeline(settings, start_workers=False) as pipeline:

                    async def go() -> list[float]:
                        gaps: list[float] = []
                        async with open_runtime(pipeline) as runtime:
                            for _ in range(count):
                                job_id = (await submit_file(runtime, clip)).job_id
                                await _wait_all(runtime, [job_id])
                                await asyncio.sleep(0.3)  # let the worker go idle again
                                gaps.extend(await _gaps(runtime, job_id))
                        return gaps

                    return asyncio.run(go())
            finally:
                stop(workers)
        finally:
            drop(env)


async def _gaps(runtime, job_id: uuid.UUID) -> list[float]:  # type: ignore[no-untyped-def]
    async with runtime.database.sessions() as session:
        runs = {r.stage: r for r in await session.scalars(select(StageRun).where(StageRun.job_id == job_id))}
    ingest_done = runs["ingest"].finished_at
    index_wait = max(runs["thumbnails"].finished_at, runs["subtitles"].finished_at)
    return [
        (runs["thumbnails"].started_at - ingest_done).total_seconds(),
        (runs["subtitles"].started_at - ingest_done).total_seconds(),
        (runs["index"].started_at - index_wait).total_seconds(),
    ]


def _bare_one(clip: str) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_pipeline import bare_media

    from pipeline.media.ffmpeg import find_ffmpeg, set_thread_count

    set_thread_count(1)  # as the workers run it
    bare_media(Path(clip), find_ffmpeg(None))


def bare_drain(clips: list[Path], processes: int) -> float:
    """The same media calls over the whole backlog in ``processes`` plain processes: the ceiling."""
    from multiprocessing import Pool

    with Pool(processes) as pool:
        pool.map(_bare_one, [str(c) for c in clips[:processes]])  # warm the imports
        started = time.perf_counter()
        pool.map(_bare_one, [str(c) for c in clips], chunksize=1)
        return time.perf_counter() - started


def _burn(_: int) -> int:
    total = 0
    for i in range(3_000_000):
        total += i * i
    return total


def cpu_ceiling() -> float:
    """What a second process adds to pure CPU work on this machine: the most any drain can gain."""
    from multiprocessing import Pool

    times = []
    for processes in (1, 2):
        with Pool(processes) as pool:
            pool.map(_burn, range(processes))
            started = time.perf_counter()
            pool.map(_burn, range(16), chunksize=1)
            times.append(time.perf_counter() - started)
    return times[0] / times[1]


def media_cores(clips: list[Path]) -> float:
    """How many cores the media work of one process keeps busy: CPU seconds (its own and its
    ffmpeg children's) over wall seconds, the calls run one after another as one worker thread
    runs them. Above 1.0 because ffmpeg (7 and later) demuxes, decodes, filters and encodes on
    threads of its own even with ``-threads 1``; two processes can then gain at most
    ``2 / cores`` on two cores, whatever the pipeline does."""
    import resource

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    _bare_one(str(clips[0]))  # warm the imports
    cpu_before, started = cpu(), time.perf_counter()
    for clip in clips:
        _bare_one(str(clip))
    return (cpu() - cpu_before) / (time.perf_counter() - started)


def bare_media_seconds(clip: Path) -> float:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_pipeline import bare_media
    from bench_storyboard import best_of

    from pipeline.media.ffmpeg import find_ffmpeg

    return best_of(3, lambda: bare_media(clip, find_ffmpeg(None)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    clips = make_clips(args.clips)

    one = drain(clips, 1)
    two = drain(clips, 2)
    bare_one = bare_drain(clips, 1)
    bare_two = bare_drain(clips, 2)
    bare = bare_media_seconds(clips[0])
    ceiling = cpu_ceiling()
    cores = media_cores(clips)
    gaps = hops(clips[0])
    print(f"backlog of {len(clips)} clips (2 s, 320x180), one thread per process")
    print(f"  1 worker process:  {one:7.2f} s  ({one / len(clips) * 1000:6.0f} ms per video)")
    print(f"  2 worker processes: {two:7.2f} s  ({two / len(clips) * 1000:6.0f} ms per video)")
    print(f"  2 processes / 1 process speed-up: {one / two:5.2f}x (goal >= 1.8x)")
    print(
        f"  baseline, the bare media work in 1 and 2 plain processes: {bare_one:6.2f} s / {bare_two:6.2f} s "
        f"= {bare_one / bare_two:5.2f}x"
    )
    print(f"  pipeline speed-up relative to the media work's own: {(one / two) / (bare_one / bare_two):5.2f}")
    print(f"  ceiling, pure Python CPU work in 1 and 2 processes: {ceiling:5.2f}x")
    print(
        f"  cores the media work of one process keeps busy (ffmpeg's own threads): {cores:4.2f}, "
        f"so 2 processes on 2 cores gain at most {2 / cores:4.2f}x"
    )
    print(
        f"  bare media work per clip: {bare * 1000:6.0f} ms; overhead per video beyond it: "
        f"{(one / len(clips) - bare) * 1000:6.0f} ms"
    )
    print(
        f"stage-to-stage hop on an idle worker, {len(gaps)} hops: median {statistics.median(gaps) * 1000:5.1f} ms, "
        f"p90 {statistics.quantiles(gaps, n=10)[-1] * 1000:5.1f} ms (goal median < 60 ms)"
    )


if __name__ == "__main__":
    main()
