"""Delivery semantics: duplicates do no work twice, fan-in queues index once, transients retry."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import func, select

from pipeline.db.models import StageRun, Thumbnail, Video
from pipeline.jobs import move_stage, new_job, queue_ready_stages
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.states import Stage, StageStatus
from tests import mediagen
from tests.conftest import Backend, embedded_env
from tests.harness import drain, open_pipeline, process, report, with_runtime
from tests.s3server import make_bucket


def test_a_redelivered_message_does_no_duplicate_work(backend: Backend, tmp_path: Path) -> None:
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
    with open_pipeline(backend.settings()) as pipeline:
        first = with_runtime(pipeline, lambda rt: process(rt, video))
        assert first["job"]["status"] == "succeeded"
        job_id = uuid.UUID(first["job"]["id"])

        async def redeliver(runtime: Runtime) -> None:
            for stage in Stage:
                runtime.dispatcher.send(job_id, stage)
                runtime.dispatcher.send(job_id, stage)

        with_runtime(pipeline, redeliver)
        drain(pipeline)
        again = with_runtime(pipeline, lambda rt: report(rt, job_id))

    assert [s["attempts"] for s in again["stages"]] == [1, 1, 1, 1]
    assert again["thumbnails"] == first["thumbnails"]
    assert again["subtitle_tracks"] == first["subtitle_tracks"]


def test_a_message_sent_twice_at_once_runs_the_stage_once(backend: Backend, tmp_path: Path) -> None:
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
    with open_pipeline(backend.settings()) as pipeline:

        async def twice(runtime: Runtime) -> dict[str, object]:
            original = runtime.dispatcher.send

            def doubled(job_id: uuid.UUID, stage: Stage, *, delay_ms: int = 0) -> None:
                original(job_id, stage, delay_ms=delay_ms)
                original(job_id, stage, delay_ms=delay_ms)

            runtime.dispatcher.send = doubled  # type: ignore[method-assign]
            return await process(runtime, video)

        result = with_runtime(pipeline, twice)
        drain(pipeline)

        async def count_thumbnails(runtime: Runtime) -> int:
            async with runtime.database.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(Thumbnail)) or 0)

        thumbnails = with_runtime(pipeline, count_thumbnails)

    assert result["job"]["status"] == "succeeded"
    assert [s["attempts"] for s in result["stages"]] == [1, 1, 1, 1]
    assert thumbnails == len(result["thumbnails"])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    env = embedded_env(tmp_path)
    if request.param == "postgresql":
        env["VIDPIPE_DATABASE_URL"] = request.getfixturevalue("pg_database")
    return Settings.from_env(env)


def test_fan_in_queues_index_exactly_once_when_both_branches_finish_together(
    database_settings: Settings,
) -> None:
    from pipeline.db import open_database
    from pipeline.runtime import prepare_database

    prepare_database(database_settings)

    async def race() -> list[list[Stage]]:
        database = open_database(database_settings)
        video = Video(title="t", source_key="k", source_filename="f")
        job = new_job(video)
        async with database.sessions() as session:
            session.add(video)
            session.add(job)
            await session.flush()
            for stage in (Stage.INGEST, Stage.THUMBNAILS, Stage.SUBTITLES):
                await session.execute(
                    StageRun.__table__.update()
                    .where(StageRun.job_id == job.id, StageRun.stage == stage.value)
                    .values(status=StageStatus.SUCCEEDED.value)
                )
            await session.commit()

        async def attempt() -> list[Stage]:
            async with database.sessions() as session:
                queued = await queue_ready_stages(session, job.id)
                await asyncio.sleep(0.05)
                await session.commit()
                return queued

        results = []
        for _ in range(3):
            results.extend(await asyncio.gather(*(attempt() for _ in range(4))))
        await database.dispose()
        return results

    outcomes = asyncio.run(race())
    assert sum(1 for queued in outcomes if queued == [Stage.INDEX]) == 1
    assert all(queued in ([], [Stage.INDEX]) for queued in outcomes)


def test_a_stage_cannot_be_claimed_twice(database_settings: Settings) -> None:
    from pipeline.db import open_database
    from pipeline.runtime import prepare_database

    prepare_database(database_settings)

    async def claim_twice() -> list[bool]:
        database = open_database(database_settings)
        video = Video(title="t", source_key="k", source_filename="f")
        job = new_job(video)
        async with database.sessions() as session:
            session.add_all([video, job])
            await session.flush()
            await move_stage(session, job.id, Stage.INGEST, StageStatus.QUEUED)
            await session.commit()
        claims = []
        for _ in range(2):
            async with database.sessions() as session:
                claims.append(await move_stage(session, job.id, Stage.INGEST, StageStatus.RUNNING))
                await session.commit()
        await database.dispose()
        return claims

    assert asyncio.run(claim_twice()) == [True, False]


def test_two_branches_succeeding_at_once_queue_the_stage_that_waits_for_both(database_settings: Settings) -> None:
    """The runner's success of one branch waits for the other's open transaction, then sees its success.

    The subtitles branch's success is recorded and left uncommitted while the thumbnails
    branch finishes through the runner: had the thumbnails transaction gone ahead, each would
    have read the other still running, and index would never be queued.
    """
    from pipeline.stages.runner import _succeed, record_success

    async def finish_both(runtime: Runtime) -> tuple[list[Stage], str]:
        video = Video(title="t", source_key="k", source_filename="f")
        job = new_job(video)
        async with runtime.database.sessions() as session:
            session.add_all([video, job])
            await session.flush()
            for stage, status in (
                (Stage.INGEST, "succeeded"),
                (Stage.THUMBNAILS, "running"),
                (Stage.SUBTITLES, "running"),
            ):
                await session.execute(
                    StageRun.__table__.update()
                    .where(StageRun.job_id == job.id, StageRun.stage == stage.value)
                    .values(status=status)
                )
            await session.commit()
        async with runtime.database.sessions() as subtitles:
            by_subtitles, _ = await record_success(subtitles, job.id, Stage.SUBTITLES)
            thumbnails = asyncio.create_task(_succeed(runtime, job.id, Stage.THUMBNAILS))
            await asyncio.sleep(0.5)
            await subtitles.commit()
        await thumbnails
        async with runtime.database.sessions() as session:
            index = (StageRun.job_id == job.id) & (StageRun.stage == Stage.INDEX.value)
            return by_subtitles, str(await session.scalar(select(StageRun.status).where(index)))

    with open_pipeline(database_settings, start_workers=False) as pipeline:
        by_subtitles, index_status = with_runtime(pipeline, finish_both)
    assert by_subtitles == []
    assert index_status == StageStatus.QUEUED.value


def test_a_storage_outage_is_retried_with_backoff_and_the_job_finishes(backend: Backend, tmp_path: Path) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    make_bucket(endpoint, "outage")
    backend.configure(
        VIDPIPE_STORAGE_URL="s3://outage/media",
        VIDPIPE_S3_ENDPOINT_URL=endpoint,
        VIDPIPE_S3_PATH_STYLE="true",
        VIDPIPE_MAX_ATTEMPTS="10",
        VIDPIPE_RETRY_BACKOFF_MS="300",
        VIDPIPE_RETRY_BACKOFF_MAX_MS="1500",
    )
    video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)

    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> dict[str, object]:
            from pipeline.submit import submit_file

            stopped = asyncio.Event()
            original = runtime.dispatcher.send

            def send_after_outage(job_id: uuid.UUID, stage: Stage, *, delay_ms: int = 0) -> None:
                if stage is Stage.INGEST and not stopped.is_set():
                    server.stop()  # the store goes away just as the first stage is sent
                    stopped.set()
                original(job_id, stage, delay_ms=delay_ms)

            runtime.dispatcher.send = send_after_outage  # type: ignore[method-assign]
            submitted = await submit_file(runtime, video)
            await asyncio.sleep(1.5)
            restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            restarted.start()
            try:
                from pipeline.cli.progress import wait_for_job

                await wait_for_job(runtime, submitted.job_id, show=False, timeout=90)
                return await report(runtime, submitted.job_id)
            finally:
                restarted.stop()

        result = with_runtime(pipeline, scenario)

    assert result["job"]["status"] == "succeeded", result
    ingest = next(s for s in result["stages"] if s["name"] == "ingest")
    assert ingest["attempts"] >= 2


def test_progress_is_written_at_most_every_half_second_counted_from_the_claim(database_settings: Settings) -> None:
    """A short stage writes no intermediate progress: each write is a transaction no poller would see."""
    from pipeline.stages.runner import _claim

    async def progress_seen(runtime: Runtime) -> list[float]:
        video = Video(title="t", source_key="k", source_filename="f")
        job = new_job(video)
        async with runtime.database.sessions() as session:
            session.add_all([video, job])
            await session.flush()
            await move_stage(session, job.id, Stage.INGEST, StageStatus.QUEUED)
            await session.commit()
        context = await _claim(runtime, job.id, Stage.INGEST)
        assert context is not None

        async def stored() -> float:
            async with runtime.database.sessions() as session:
                ingest = (StageRun.job_id == job.id) & (StageRun.stage == Stage.INGEST.value)
                return float(await session.scalar(select(StageRun.progress).where(ingest)) or 0.0)

        seen = []
        await context.report(40)  # right after the claim: not written
        seen.append(await stored())
        await context.report(50, force=True)
        seen.append(await stored())
        await context.report(60)  # right after the forced write: not written either
        seen.append(await stored())
        await asyncio.sleep(0.6)
        await context.report(70)
        seen.append(await stored())
        return seen

    with open_pipeline(database_settings, start_workers=False) as pipeline:
        assert with_runtime(pipeline, progress_seen) == [0.0, 50.0, 50.0, 70.0]


def test_a_second_pipeline_with_workers_in_one_process_is_refused_and_the_first_keeps_working(tmp_path: Path) -> None:
    """Dramatiq keeps one event loop thread per process: a second in-process worker would strand one."""
    import threading

    from pipeline.errors import ConfigurationError
    from tests.services import wait_until

    settings = Settings.from_env(embedded_env(tmp_path))
    clip = mediagen.make_video(tmp_path / "clip.mp4", duration=1.0)
    before = {thread for thread in threading.enumerate() if not thread.daemon}

    with open_pipeline(settings) as first:
        with pytest.raises(ConfigurationError, match="already runs the in-process workers"), open_pipeline(settings):
            pass
        with open_pipeline(settings, start_workers=False) as sharing:
            assert sharing.worker is None
        done = with_runtime(first, lambda rt: process(rt, clip, title="Still working"))
        assert done["job"]["status"] == "succeeded", done
    with open_pipeline(settings) as again:
        assert again.worker is not None

    def nothing_stranded() -> bool:
        return {thread for thread in threading.enumerate() if not thread.daemon} <= before

    assert wait_until(nothing_stranded, timeout=10), threading.enumerate()
