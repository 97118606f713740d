"""Nothing is lost when processes die: real workers killed, Redis emptied, connections dropped,
jobs cancelled and stages timed out — and every job still ends where it should."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis

from pipeline.cli.progress import wait_for_job
from pipeline.db.models import StageRun
from pipeline.jobs import cancel_job
from pipeline.reconciler import reconcile
from pipeline.runtime import Runtime
from pipeline.submit import submit_file
from tests import mediagen, services
from tests.conftest import SERVICES_ONLY, Backend
from tests.harness import open_pipeline, process, report, with_runtime

FAST_RECOVERY = {
    "VIDPIPE_HEARTBEAT_MS": "300",
    "VIDPIPE_STALE_HEARTBEAT_MS": "2000",
    "VIDPIPE_LOST_MESSAGE_MS": "1500",
    "VIDPIPE_RETRY_BACKOFF_MS": "200",
    "VIDPIPE_RETRY_BACKOFF_MAX_MS": "1000",
    "VIDPIPE_MAX_ATTEMPTS": "8",
}


def slow_ffmpeg(tmp_path: Path, delay: float) -> Path:
    """An ffmpeg that records its pid and waits ``delay`` seconds before running the real one."""
    script = tmp_path / "slow-ffmpeg"
    real = mediagen.ffmpeg_exe()
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"with open({str(tmp_path / 'ffmpeg.pids')!r}, 'a') as f: f.write(f'{{os.getpid()}}\\n')\n"
        f"time.sleep({delay})\n"
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return script


def ffmpeg_pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "ffmpeg.pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended; only its parent has not collected it yet.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


async def stage_status(runtime: Runtime, job_id: uuid.UUID, stage: str) -> str | None:
    from sqlalchemy import select

    async with runtime.database.sessions() as session:
        return await session.scalar(select(StageRun.status).where(StageRun.job_id == job_id, StageRun.stage == stage))


async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def reconcile_until_done(runtime: Runtime, job_ids: list[uuid.UUID], timeout: float = 90) -> None:
    """Run the reconciler every half second, as ``vidpipe scheduler`` would, until the jobs end."""
    from pipeline.db.models import Job
    from pipeline.states import JOB_TERMINAL

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await reconcile(runtime)
        async with runtime.database.sessions() as session:
            jobs = [await session.get(Job, job_id, populate_existing=True) for job_id in job_ids]
        if all(job is not None and job.status in JOB_TERMINAL for job in jobs):
            return
        await asyncio.sleep(0.5)


@SERVICES_ONLY
def test_a_worker_killed_in_the_middle_of_thumbnails_is_replaced_and_the_job_finishes_once(
    backend: Backend, tmp_path: Path
) -> None:
    backend.configure(**FAST_RECOVERY, VIDPIPE_FFMPEG=str(slow_ffmpeg(tmp_path, 1.0)))
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=2.0)

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> dict[str, object]:
            submitted = await submit_file(runtime, video)

            async def thumbnails_running() -> bool:
                return await stage_status(runtime, submitted.job_id, "thumbnails") == "running"

            assert await until(thumbnails_running, 60)
            assert backend.worker is not None
            os.killpg(backend.worker.process.pid, signal.SIGKILL)
            backend.worker.process.wait()
            backend.start_worker()
            await reconcile_until_done(runtime, [submitted.job_id])
            return await report(runtime, submitted.job_id)

        result = with_runtime(pipeline, scenario)
        objects = with_runtime(pipeline, lambda rt: rt.storage.list(f"videos/{result['video']['id']}/"))

    assert result["job"]["status"] == "succeeded", result
    thumbnails = next(s for s in result["stages"] if s["name"] == "thumbnails")
    assert thumbnails["attempts"] == 2
    kinds = [t["kind"] for t in result["thumbnails"]]
    assert kinds.count("poster") == 1 and kinds.count("storyboard") == 1
    keys = [o.key for o in objects]
    assert len(keys) == len(set(keys))
    assert len([k for k in keys if "/thumbnails/" in k or "/storyboard/" in k]) == len(result["thumbnails"])


@SERVICES_ONLY
def test_a_backlog_survives_redis_losing_every_message(backend: Backend, tmp_path: Path) -> None:
    assert backend.worker is not None
    backend.worker.stop()
    backend.worker = None
    backend.configure(**FAST_RECOVERY)
    videos = [mediagen.make_video(tmp_path / f"clip-{i}.mp4", duration=1.0) for i in range(4)]

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> list[dict[str, object]]:
            jobs = [(await submit_file(runtime, path)).job_id for path in videos]
            client = redis.Redis.from_url(services.REDIS_URL)
            namespace = backend.env["VIDPIPE_BROKER_NAMESPACE"]
            lost = client.keys(f"{namespace}:*")
            assert lost, "the backlog should be waiting in Redis"
            client.delete(*lost)
            backend.start_worker()
            await reconcile_until_done(runtime, jobs)
            return [await report(runtime, job_id) for job_id in jobs]

        results = with_runtime(pipeline, scenario)

    assert [r["job"]["status"] for r in results] == ["succeeded"] * 4


@SERVICES_ONLY
def test_jobs_finish_when_database_connections_are_cut_during_processing(backend: Backend, tmp_path: Path) -> None:
    backend.configure(**FAST_RECOVERY)
    videos = [mediagen.make_video(tmp_path / f"clip-{i}.mp4", duration=2.0) for i in range(3)]
    database = backend.env["VIDPIPE_DATABASE_URL"].rsplit("/", 1)[1]

    def cut_connections() -> int:
        with psycopg.connect(services.PG_ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return len(rows)

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> list[dict[str, object]]:
            jobs = [(await submit_file(runtime, path)).job_id for path in videos]
            cut = 0
            for _ in range(8):
                cut += await asyncio.to_thread(cut_connections)
                await asyncio.sleep(0.25)
            assert cut > 0
            await reconcile_until_done(runtime, jobs)
            return [await report(runtime, job_id) for job_id in jobs]

        results = with_runtime(pipeline, scenario)

    assert [r["job"]["status"] for r in results] == ["succeeded"] * 3


def test_the_reconciler_closes_a_job_whose_every_stage_succeeded(backend: Backend, tmp_path: Path) -> None:
    from sqlalchemy import update

    from pipeline.db.models import Job, Video

    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> tuple[dict[str, object], dict[str, object]]:
            done = await process(runtime, video)
            job_id = uuid.UUID(str(done["job"]["id"]))  # type: ignore[index]
            # What a worker that died between recording the last stage and the job's end left behind.
            async with runtime.database.sessions() as session:
                await session.execute(update(Job).where(Job.id == job_id).values(status="running", finished_at=None))
                await session.execute(update(Video).values(status="processing"))
                await session.commit()
            stuck = await report(runtime, job_id)
            reconciled = await reconcile(runtime)
            assert reconciled.finished == [job_id]
            assert (await reconcile(runtime)).finished == [], "a second pass finds nothing to do"
            return stuck, await report(runtime, job_id)

        stuck, after = with_runtime(pipeline, scenario)

    assert stuck["job"]["status"] == "running"  # type: ignore[index]
    assert after["job"]["status"] == "succeeded"  # type: ignore[index]
    assert after["video"]["status"] == "ready"  # type: ignore[index]


def test_cancelling_a_job_stops_its_running_ffmpeg_and_starts_nothing_after(backend: Backend, tmp_path: Path) -> None:
    backend.configure(VIDPIPE_HEARTBEAT_MS="200", VIDPIPE_FFMPEG=str(slow_ffmpeg(tmp_path, 60.0)))
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> dict[str, object]:
            submitted = await submit_file(runtime, video)
            assert await until(lambda: _has_pids(tmp_path), 60), "ffmpeg never started"
            async with runtime.database.sessions() as session:
                assert await cancel_job(session, submitted.job_id)
                await session.commit()
            await wait_for_job(runtime, submitted.job_id, show=False, timeout=30)

            async def thumbnails_cancelled() -> bool:
                return await stage_status(runtime, submitted.job_id, "thumbnails") == "cancelled"

            assert await until(thumbnails_cancelled, 15)
            return await report(runtime, submitted.job_id)

        started = time.monotonic()
        result = with_runtime(pipeline, scenario)
        elapsed = time.monotonic() - started

    assert result["job"]["status"] == "cancelled"
    statuses = {s["name"]: s["status"] for s in result["stages"]}
    assert statuses["thumbnails"] == "cancelled" and statuses["index"] == "cancelled"
    assert elapsed < 30
    pids = ffmpeg_pids(tmp_path)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), "a cancelled stage must not leave ffmpeg running"


def test_a_stage_past_its_time_limit_fails_with_its_own_code_and_kills_ffmpeg(backend: Backend, tmp_path: Path) -> None:
    backend.configure(
        VIDPIPE_FFMPEG=str(slow_ffmpeg(tmp_path, 60.0)),
        VIDPIPE_STAGE_TIMEOUT_BASE_MS="1500",
        VIDPIPE_STAGE_TIMEOUT_FACTOR="0",
    )
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)

    with open_pipeline(backend.settings()) as pipeline:
        result = with_runtime(pipeline, lambda rt: _process(rt, video))

    thumbnails = next(s for s in result["stages"] if s["name"] == "thumbnails")
    assert thumbnails["status"] == "failed" and thumbnails["error_code"] == "stage.timeout"
    assert thumbnails["attempts"] == 1
    assert result["job"]["status"] == "failed"
    pids = ffmpeg_pids(tmp_path)
    assert pids
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)


async def _has_pids(tmp_path: Path) -> bool:
    return bool(ffmpeg_pids(tmp_path))


async def _process(runtime: Runtime, video: Path) -> dict[str, object]:
    submitted = await submit_file(runtime, video)
    await wait_for_job(runtime, submitted.job_id, show=False, timeout=60)
    return await report(runtime, submitted.job_id)


def test_thumbnail_stages_wait_for_a_free_slot_on_the_host(backend: Backend, tmp_path: Path) -> None:
    backend.configure(VIDPIPE_THUMBNAILS_PER_HOST="1", VIDPIPE_FFMPEG=str(slow_ffmpeg(tmp_path, 0.3)))
    videos = [mediagen.make_video(tmp_path / f"clip-{i}.mp4", duration=1.0) for i in range(3)]

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> list[dict[str, object]]:
            jobs = [(await submit_file(runtime, path)).job_id for path in videos]
            for job_id in jobs:
                await wait_for_job(runtime, job_id, show=False, timeout=120)
            return [await report(runtime, job_id) for job_id in jobs]

        results = with_runtime(pipeline, scenario)

    assert [r["job"]["status"] for r in results] == ["succeeded"] * 3
    spans = sorted(
        (s["started_at"], s["finished_at"]) for r in results for s in r["stages"] if s["name"] == "thumbnails"
    )
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert first_end <= second_start, "two thumbnail stages overlapped on one host"


@SERVICES_ONLY
def test_a_worker_stopped_with_sigterm_finishes_its_running_stage_first(backend: Backend, tmp_path: Path) -> None:
    backend.configure(VIDPIPE_FFMPEG=str(slow_ffmpeg(tmp_path, 1.5)))
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> tuple[str | None, dict[str, object]]:
            submitted = await submit_file(runtime, video)

            async def thumbnails_running() -> bool:
                return await stage_status(runtime, submitted.job_id, "thumbnails") == "running"

            assert await until(thumbnails_running, 60)
            assert backend.worker is not None
            backend.worker.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(backend.worker.process.wait, 120)
            finished = await stage_status(runtime, submitted.job_id, "thumbnails")
            backend.start_worker()
            await wait_for_job(runtime, submitted.job_id, show=False, timeout=60)
            return finished, await report(runtime, submitted.job_id)

        during_shutdown, result = with_runtime(pipeline, scenario)

    assert during_shutdown == "succeeded", "the stage running at SIGTERM must finish before the worker exits"
    assert result["job"]["status"] == "succeeded"
    assert [s["attempts"] for s in result["stages"]] == [1, 1, 1, 1]
