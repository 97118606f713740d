"""Changing and deleting videos and subtitle tracks (pipeline.edits), on every backend.

The pipeline tests process a real clip on the embedded default and on PostgreSQL, S3 and
Redis with a worker process (searching with OpenSearch there, and once more with the
database's own search), then edit it and check what search, the rows and the store hold.
The decision tests put a job's stage runs in the states a worker would leave them in and
check what an edit asks of the job, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, update

from pipeline.cli.app import Pipeline
from pipeline.cli.progress import wait_for_job
from pipeline.db.models import Cue, Job, StageRun, SubtitleTrack, Thumbnail, User, Video
from pipeline.edits import (
    KEEP,
    MAX_SUBTITLE_BYTES,
    SubtitleTooLarge,
    add_subtitle_track,
    delete_subtitle_track,
    delete_video,
    list_tracks,
    update_video,
)
from pipeline.errors import Conflict, InvalidInput, NotFound, SubtitleError
from pipeline.jobs import new_job
from pipeline.runtime import Runtime
from pipeline.search.database import search_cues, search_videos
from pipeline.search.opensearch_index import IndexNames
from pipeline.settings import Settings
from pipeline.states import JobStatus, Stage, StageStatus, VideoStatus
from pipeline.submit import SubtitleFile, submit_file
from pipeline.uploads import Announcement, Upload, announce
from tests.conftest import Backend, embedded_env
from tests.harness import open_pipeline, process, with_runtime
from tests.mediagen import make_video

T = TypeVar("T")

ENGLISH_SRT = "1\n00:00:00,300 --> 00:00:01,200\nThe lighthouse keeper counts the waves.\n"
KOREAN_VTT = "WEBVTT\n\n00:00.400 --> 00:01.500\n오늘은 <b>고유값</b>을 배웁니다.\n"

SEARCH_MATRIX = pytest.mark.parametrize(
    ("backend", "search_url"),
    [
        pytest.param("embedded", None, id="embedded"),
        pytest.param("services", None, marks=pytest.mark.services, id="services-opensearch"),
        pytest.param("services", "database", marks=pytest.mark.services, id="services-database-search"),
    ],
    indirect=["backend"],
)
"""The embedded default, the services with OpenSearch, and the services searching in PostgreSQL."""


# --- the pipeline, for real -------------------------------------------------------------------


@dataclass
class Processed:
    video_id: uuid.UUID
    job_id: uuid.UUID
    tracks: list[dict[str, Any]]


def _process(pipeline: Pipeline, tmp_path: Path, title: str, subtitles: list[SubtitleFile] | None = None) -> Processed:
    clip = make_video(tmp_path / f"{uuid.uuid4().hex}.mp4", duration=2.0)
    report = with_runtime(pipeline, lambda rt: process(rt, clip, title=title, subtitles=subtitles or []))
    assert report["job"]["status"] == "succeeded", report
    return Processed(uuid.UUID(report["video"]["id"]), uuid.UUID(report["job"]["id"]), report["subtitle_tracks"])


def _english_srt(tmp_path: Path) -> SubtitleFile:
    path = tmp_path / "keeper.en.srt"
    path.write_text(ENGLISH_SRT, encoding="utf-8")
    return SubtitleFile(path)


async def _finished(runtime: Runtime, job_id: uuid.UUID | None) -> Job:
    assert job_id is not None
    job = await wait_for_job(runtime, job_id, show=False, timeout=120)
    assert job.status == JobStatus.SUCCEEDED, (job.status, job.error_code, job.error_message)
    return job


async def _hit_ids(runtime: Runtime, query: str) -> list[uuid.UUID]:
    return [hit.video_id for hit in (await runtime.search.search(query)).hits]


def _runs(job: Job) -> dict[str, StageRun]:
    return {run.stage: run for run in job.stages}


def test_a_new_title_is_found_by_search_and_the_old_one_is_no_longer(backend: Backend, tmp_path: Path) -> None:
    with open_pipeline(backend.settings()) as pipeline:
        done = _process(pipeline, tmp_path, "Quantum harmonica")

        async def scenario(runtime: Runtime) -> None:
            before = _runs(await wait_for_job(runtime, done.job_id, show=False))
            assert await _hit_ids(runtime, "harmonica") == [done.video_id]

            rerun = await update_video(runtime, done.video_id, title="  Baroque   lute ", language="ko")

            assert rerun.job_id == done.job_id and rerun.stages == (Stage.INDEX,)
            after = _runs(await _finished(runtime, rerun.job_id))
            assert await _hit_ids(runtime, "lute") == [done.video_id]
            assert await _hit_ids(runtime, "harmonica") == []
            assert (await runtime.search.search("baroque")).hits[0].title == "Baroque lute"
            # Only the index stage ran again: what ingest and thumbnails made is untouched.
            for stage in ("ingest", "thumbnails", "subtitles"):
                assert after[stage].finished_at == before[stage].finished_at
            assert after["index"].finished_at > before["index"].finished_at  # type: ignore[operator]
            async with runtime.database.sessions() as session:
                video = await session.get(Video, done.video_id)
                assert video is not None
                assert (video.title, video.language, video.status) == ("Baroque lute", "ko", VideoStatus.READY)

        with_runtime(pipeline, scenario)


def test_a_korean_track_added_later_is_parsed_and_its_cue_is_found(backend: Backend, tmp_path: Path) -> None:
    with open_pipeline(backend.settings()) as pipeline:
        done = _process(pipeline, tmp_path, "Linear algebra 7")

        async def scenario(runtime: Runtime) -> None:
            before = _runs(await wait_for_job(runtime, done.job_id, show=False))
            assert await _hit_ids(runtime, "고유값") == []

            added = await add_subtitle_track(
                runtime, done.video_id, KOREAN_VTT.encode("utf-8"), filename="lecture.ko.vtt", label="한국어"
            )

            assert added.track.status == "pending" and added.track.language == "ko"
            assert added.rerun.stages == (Stage.SUBTITLES, Stage.INDEX)
            after = _runs(await _finished(runtime, added.rerun.job_id))
            result = await runtime.search.search("고유값")
            assert [hit.video_id for hit in result.hits] == [done.video_id]
            assert result.hits[0].cues[0].start == pytest.approx(0.4)
            assert "<mark>고유값</mark>" in result.hits[0].cues[0].highlight
            async with runtime.database.sessions() as session:
                (track,) = await list_tracks(session, done.video_id)
            assert (track.status, track.cue_count, track.label, track.format) == ("ready", 1, "한국어", "webvtt")
            assert track.vtt_key is not None
            assert (await runtime.storage.get_bytes(track.vtt_key)).startswith(b"WEBVTT")
            assert after["thumbnails"].finished_at == before["thumbnails"].finished_at
            assert after["subtitles"].finished_at > before["subtitles"].finished_at  # type: ignore[operator]

        with_runtime(pipeline, scenario)


@SEARCH_MATRIX
def test_a_deleted_track_takes_its_cues_out_of_search(backend: Backend, search_url: str | None, tmp_path: Path) -> None:
    if search_url:
        backend.configure(VIDPIPE_SEARCH_URL=search_url)
    with open_pipeline(backend.settings()) as pipeline:
        done = _process(pipeline, tmp_path, "Coastal navigation", [_english_srt(tmp_path)])
        track_id = uuid.UUID(done.tracks[0]["id"])

        async def scenario(runtime: Runtime) -> None:
            assert await _hit_ids(runtime, "keeper") == [done.video_id]
            async with runtime.database.sessions() as session:
                track = await session.get(SubtitleTrack, track_id)
                assert track is not None and track.vtt_key is not None
                keys = [track.source_ref, track.vtt_key]

            rerun = await delete_subtitle_track(runtime, done.video_id, track_id)

            assert rerun.stages == (Stage.INDEX,)
            await _finished(runtime, rerun.job_id)
            assert await _hit_ids(runtime, "keeper") == []
            assert await _hit_ids(runtime, "coastal") == [done.video_id]
            for key in keys:
                assert not await runtime.storage.exists(key)
            async with runtime.database.sessions() as session:
                assert await list_tracks(session, done.video_id) == []
                assert await _count(session, Cue, Cue.video_id == done.video_id) == 0
            with pytest.raises(NotFound) as again:
                await delete_subtitle_track(runtime, done.video_id, track_id)
            assert again.value.code == "subtitles.track_not_found"

        with_runtime(pipeline, scenario)


@SEARCH_MATRIX
def test_a_deleted_video_leaves_no_rows_objects_or_search_entries(
    backend: Backend, search_url: str | None, tmp_path: Path
) -> None:
    if search_url:
        backend.configure(VIDPIPE_SEARCH_URL=search_url)
    settings = backend.settings()
    with open_pipeline(settings) as pipeline:
        done = _process(pipeline, tmp_path, "Tidal charts", [_english_srt(tmp_path)])
        kept = _process(pipeline, tmp_path, "Tidal kept")

        async def scenario(runtime: Runtime) -> None:
            prefix = f"videos/{done.video_id}/"
            assert await runtime.storage.list(prefix)
            assert await _search_entries(runtime, settings, done.video_id) > 0

            await delete_video(runtime, done.video_id)

            assert await runtime.storage.list(prefix) == []
            assert await _search_entries(runtime, settings, done.video_id) == 0
            assert await _hit_ids(runtime, "keeper") == []
            assert await _hit_ids(runtime, "tidal") == [kept.video_id]
            async with runtime.database.sessions() as session:
                assert await _rows_of(session, done.video_id, done.job_id) == dict.fromkeys(_TABLES, 0)
                assert (await _rows_of(session, kept.video_id, kept.job_id))["videos"] == 1
            assert await runtime.storage.list(f"videos/{kept.video_id}/")
            with pytest.raises(NotFound):
                await delete_video(runtime, done.video_id)

        with_runtime(pipeline, scenario)


def test_deleting_a_video_while_its_job_runs_cancels_the_job_first(backend: Backend, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "long.mp4", duration=12.0, width=640, height=360)
    with open_pipeline(backend.settings()) as pipeline:

        async def scenario(runtime: Runtime) -> None:
            submitted = await submit_file(
                runtime, clip, title="Interrupted lecture", subtitles=[_english_srt(tmp_path)]
            )
            await _until_a_stage_runs(runtime, submitted.job_id)

            await delete_video(runtime, submitted.video_id)

            async with runtime.database.sessions() as session:
                assert await _rows_of(session, submitted.video_id, submitted.job_id) == dict.fromkeys(_TABLES, 0)
            # Whatever the cancelled stage was doing, it stopped before the clean-up.
            await asyncio.sleep(3 * runtime.settings.heartbeat_seconds)
            assert await runtime.storage.list(f"videos/{submitted.video_id}/") == []
            assert await _search_entries(runtime, backend.settings(), submitted.video_id) == 0

        with_runtime(pipeline, scenario)


def test_deleting_a_video_whose_multipart_upload_is_unfinished_aborts_the_upload(backend: Backend) -> None:
    settings = backend.settings()
    with open_pipeline(settings) as pipeline:

        async def scenario(runtime: Runtime) -> None:
            async with runtime.database.sessions() as session:
                owner = User(email="ada@example.org", username="ada", password_hash="-")
                session.add(owner)
                await session.commit()
                size = settings.multipart_threshold_bytes + 1
                announcement = Announcement(title="Half sent", filename="half.mp4", content_type="video/mp4", size=size)
                announced = await announce(session, runtime, announcement, owner_id=owner.id, exempt=True)
            upload = announced.upload
            assert upload.upload_id is not None
            await runtime.storage.upload_part(upload.key, upload.upload_id, 1, _chunks(b"x" * 1024), max_size=2048)
            assert len(await runtime.storage.list_parts(upload.key, upload.upload_id)) == 1

            await delete_video(runtime, announced.video.id)

            with pytest.raises(NotFound):
                await runtime.storage.list_parts(upload.key, upload.upload_id)
            async with runtime.database.sessions() as session:
                assert await _count(session, Upload, Upload.video_id == announced.video.id) == 0
                assert await _count(session, Video, Video.id == announced.video.id) == 0

        with_runtime(pipeline, scenario)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_an_unusable_subtitle_file_is_refused_with_the_parsers_code_and_nothing_changes(
    backend: Backend, tmp_path: Path
) -> None:
    with open_pipeline(backend.settings()) as pipeline:
        done = _process(pipeline, tmp_path, "Untouched", [_english_srt(tmp_path)])

        async def scenario(runtime: Runtime) -> None:
            before_job = await wait_for_job(runtime, done.job_id, show=False)
            before_objects = await runtime.storage.list(f"videos/{done.video_id}/")
            refused: dict[str, str] = {}
            for name, data in [
                ("photo.vtt", b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
                ("broken.vtt", b"WEBVTT\n\nno timing here\n"),
                ("empty.srt", b""),
            ]:
                with pytest.raises(SubtitleError) as caught:
                    await add_subtitle_track(runtime, done.video_id, data, filename=name)
                refused[name] = caught.value.code
            with pytest.raises(SubtitleTooLarge):
                await add_subtitle_track(runtime, done.video_id, b"x" * (MAX_SUBTITLE_BYTES + 1), filename="big.srt")

            assert refused == {
                "photo.vtt": "subtitles.unrecognised_format",
                "broken.vtt": "subtitles.no_cues",
                "empty.srt": "subtitles.empty",
            }
            after_job = await wait_for_job(runtime, done.job_id, show=False)
            assert (after_job.status, after_job.finished_at) == (before_job.status, before_job.finished_at)
            assert await runtime.storage.list(f"videos/{done.video_id}/") == before_objects
            async with runtime.database.sessions() as session:
                assert [str(t.id) for t in await list_tracks(session, done.video_id)] == [done.tracks[0]["id"]]

        with_runtime(pipeline, scenario)


# --- decisions on a job's states ------------------------------------------------------------

States = dict[Stage, StageStatus]

_WAITING_FOR_THUMBNAILS: States = {
    Stage.INGEST: StageStatus.SUCCEEDED,
    Stage.THUMBNAILS: StageStatus.RUNNING,
    Stage.SUBTITLES: StageStatus.SUCCEEDED,
    Stage.INDEX: StageStatus.PENDING,
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def quiet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """A broker with no worker behind it: messages wait, and stage states stay as a test sets them."""
    env = embedded_env(tmp_path)
    if request.param == "postgresql":
        env["VIDPIPE_DATABASE_URL"] = request.getfixturevalue("pg_database")
    with open_pipeline(Settings.from_env(env).with_secret(), start_workers=False) as pipeline:
        yield pipeline


def _in_states(pipeline: Pipeline, job: JobStatus | None, stages: States | None = None) -> uuid.UUID:
    """A video whose latest job is in ``job`` with its stage runs in ``stages``; no job when ``job`` is None."""

    async def make(runtime: Runtime) -> uuid.UUID:
        video_id = uuid.uuid4()
        video = Video(
            id=video_id,
            title="Waves",
            source_key=f"videos/{video_id}/source/original.mp4",
            source_filename="waves.mp4",
            status=VideoStatus.AWAITING_UPLOAD if job is None else VideoStatus.PROCESSING,
        )
        async with runtime.database.sessions() as session:
            session.add(video)
            if job is not None:
                row = new_job(video)
                row.status = job.value
                session.add(row)
                await session.flush()
                for stage, state in (stages or {}).items():
                    await session.execute(
                        update(StageRun)
                        .where(StageRun.job_id == row.id, StageRun.stage == stage.value)
                        .values(status=state.value, attempts=1 if state is not StageStatus.PENDING else 0)
                    )
            await session.commit()
        return video_id

    return _run(pipeline, make)


def _stage_states(pipeline: Pipeline, video_id: uuid.UUID) -> dict[str, str]:
    async def read(runtime: Runtime) -> dict[str, str]:
        async with runtime.database.sessions() as session:
            rows = await session.execute(
                select(StageRun.stage, StageRun.status).join(Job).where(Job.video_id == video_id)
            )
            return {stage: status for stage, status in rows.all()}

    return _run(pipeline, read)


def _run(pipeline: Pipeline, work: Callable[[Runtime], Awaitable[T]]) -> T:
    return with_runtime(pipeline, work)


def test_adding_a_track_while_the_subtitles_stage_runs_is_refused_and_stores_nothing(quiet: Pipeline) -> None:
    states = {Stage.INGEST: StageStatus.SUCCEEDED, Stage.SUBTITLES: StageStatus.RUNNING}
    video_id = _in_states(quiet, JobStatus.RUNNING, states)

    async def scenario(runtime: Runtime) -> None:
        with pytest.raises(Conflict) as busy:
            await add_subtitle_track(runtime, video_id, KOREAN_VTT.encode(), filename="talk.ko.vtt")
        assert busy.value.code == "video.busy" and busy.value.details == {"stage": "subtitles"}
        assert await runtime.storage.list(f"videos/{video_id}/") == []
        async with runtime.database.sessions() as session:
            assert await list_tracks(session, video_id) == []

    _run(quiet, scenario)
    assert _stage_states(quiet, video_id)["subtitles"] == "running"


def test_a_track_added_while_thumbnails_still_run_sends_the_finished_subtitles_stage_again(quiet: Pipeline) -> None:
    video_id = _in_states(quiet, JobStatus.RUNNING, _WAITING_FOR_THUMBNAILS)

    added = _run(quiet, lambda rt: add_subtitle_track(rt, video_id, KOREAN_VTT.encode(), filename="talk.ko.vtt"))

    assert added.rerun.stages == (Stage.SUBTITLES, Stage.INDEX)
    assert _stage_states(quiet, video_id) == {
        "ingest": "succeeded",
        "thumbnails": "running",
        "subtitles": "queued",
        "index": "pending",
    }
    assert quiet.broker.queues["vidpipe.subtitles"].qsize() == 1  # type: ignore[attr-defined]


def test_an_edit_while_the_index_stage_waits_leaves_it_to_read_the_change(quiet: Pipeline) -> None:
    states = {**_WAITING_FOR_THUMBNAILS, Stage.THUMBNAILS: StageStatus.SUCCEEDED, Stage.INDEX: StageStatus.QUEUED}
    video_id = _in_states(quiet, JobStatus.RUNNING, states)

    rerun = _run(quiet, lambda rt: update_video(rt, video_id, title="Waves, revised"))

    assert rerun.stages == (Stage.INDEX,)
    assert _stage_states(quiet, video_id)["index"] == "queued"
    assert "vidpipe.index" not in quiet.broker.queues or quiet.broker.queues["vidpipe.index"].qsize() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "states",
    [
        {**_WAITING_FOR_THUMBNAILS, Stage.THUMBNAILS: StageStatus.SUCCEEDED, Stage.INDEX: StageStatus.RUNNING},
        # The index stage has succeeded and its job is about to: re-queueing it now would be lost.
        {**_WAITING_FOR_THUMBNAILS, Stage.THUMBNAILS: StageStatus.SUCCEEDED, Stage.INDEX: StageStatus.SUCCEEDED},
    ],
    ids=["index-running", "index-finishing"],
)
def test_an_edit_while_the_index_stage_runs_is_refused_and_changes_nothing(quiet: Pipeline, states: States) -> None:
    video_id = _in_states(quiet, JobStatus.RUNNING, states)

    with pytest.raises(Conflict) as busy:
        _run(quiet, lambda rt: update_video(rt, video_id, title="Never stored"))

    assert busy.value.code == "video.busy"
    assert _run(quiet, lambda rt: _title(rt, video_id)) == "Waves"


def test_a_track_cannot_be_deleted_while_the_subtitles_stage_runs(quiet: Pipeline) -> None:
    video_id = _in_states(quiet, JobStatus.SUCCEEDED, dict.fromkeys(Stage, StageStatus.SUCCEEDED))
    added = _run(quiet, lambda rt: add_subtitle_track(rt, video_id, KOREAN_VTT.encode(), filename="talk.ko.vtt"))
    track_id = added.track.id
    _set_state(quiet, video_id, Stage.SUBTITLES, StageStatus.RUNNING)

    with pytest.raises(Conflict):
        _run(quiet, lambda rt: delete_subtitle_track(rt, video_id, track_id))

    assert [t.id for t in _run(quiet, lambda rt: _tracks(rt, video_id))] == [track_id]


@pytest.mark.parametrize("job", [JobStatus.FAILED, JobStatus.CANCELLED, None])
def test_an_edit_of_a_video_whose_job_cannot_run_now_is_kept_for_its_next_run(
    quiet: Pipeline, job: JobStatus | None
) -> None:
    states = {Stage.INGEST: StageStatus.FAILED, Stage.THUMBNAILS: StageStatus.SKIPPED}
    video_id = _in_states(quiet, job, states)

    rerun = _run(quiet, lambda rt: update_video(rt, video_id, title="Kept", description="For the retry"))

    assert rerun.stages == ()
    assert (rerun.job_id is None) == (job is None)
    assert _run(quiet, lambda rt: _title(rt, video_id)) == "Kept"
    assert set(_stage_states(quiet, video_id).values()) <= {"failed", "skipped", "pending"}


def test_a_succeeded_job_is_retried_from_the_subtitles_stage_when_a_track_is_added(quiet: Pipeline) -> None:
    video_id = _in_states(quiet, JobStatus.SUCCEEDED, dict.fromkeys(Stage, StageStatus.SUCCEEDED))

    added = _run(quiet, lambda rt: add_subtitle_track(rt, video_id, KOREAN_VTT.encode(), filename="talk.ko.vtt"))

    assert added.rerun.stages == (Stage.SUBTITLES, Stage.INDEX)
    assert _stage_states(quiet, video_id) == {
        "ingest": "succeeded",
        "thumbnails": "succeeded",
        "subtitles": "queued",
        "index": "pending",
    }
    assert _run(quiet, lambda rt: _job_status(rt, video_id)) == "queued"


def test_edits_are_checked_before_anything_is_written(quiet: Pipeline) -> None:
    video_id = _in_states(quiet, None)

    def code_of(work: Callable[[Runtime], Awaitable[Any]]) -> str:
        with pytest.raises((InvalidInput, NotFound)) as caught:
            _run(quiet, work)
        return caught.value.code

    assert code_of(lambda rt: update_video(rt, video_id, title="   ")) == "video.title_empty"
    assert code_of(lambda rt: update_video(rt, video_id, title="x" * 501)) == "video.title_too_long"
    assert code_of(lambda rt: update_video(rt, video_id, description="x" * 10_001)) == "video.description_too_long"
    assert code_of(lambda rt: update_video(rt, video_id, language="not a language")) == "input.language"
    assert code_of(lambda rt: update_video(rt, uuid.uuid4(), title="Lost")) == "video.not_found"
    assert code_of(lambda rt: add_subtitle_track(rt, uuid.uuid4(), KOREAN_VTT.encode(), filename="a.vtt")) == (
        "video.not_found"
    )
    assert code_of(
        lambda rt: add_subtitle_track(rt, video_id, KOREAN_VTT.encode(), filename="a.vtt", label="x" * 201)
    ) == ("subtitles.label_too_long")
    assert code_of(lambda rt: delete_subtitle_track(rt, video_id, uuid.uuid4())) == "subtitles.track_not_found"
    assert _run(quiet, lambda rt: _title(rt, video_id)) == "Waves"
    # A language can be cleared, and an unchanged field is not a change.
    assert (
        _run(quiet, lambda rt: update_video(rt, video_id, title="Waves", language=None, description=KEEP)).stages == ()
    )


# --- helpers ----------------------------------------------------------------------------------

_TABLES = ("videos", "jobs", "stage_runs", "thumbnails", "subtitle_tracks", "cues", "search_videos", "search_cues")


async def _count(session: Any, model: Any, *where: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _rows_of(session: Any, video_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each table still belong to the video."""
    counts = {
        "videos": await _count(session, Video, Video.id == video_id),
        "jobs": await _count(session, Job, Job.video_id == video_id),
        "stage_runs": await _count(session, StageRun, StageRun.job_id == job_id),
        "thumbnails": await _count(session, Thumbnail, Thumbnail.video_id == video_id),
        "subtitle_tracks": await _count(session, SubtitleTrack, SubtitleTrack.video_id == video_id),
        "cues": await _count(session, Cue, Cue.video_id == video_id),
    }
    for table in (search_videos, search_cues):
        counts[table.name] = await _count(session, table, table.c.video_id == video_id)
    return counts


async def _search_entries(runtime: Runtime, settings: Settings, video_id: uuid.UUID) -> int:
    """The video's entries in the search backend itself: rows, or the OpenSearch document."""
    if runtime.search.name == "database":
        async with runtime.database.sessions() as session:
            rows = await _rows_of(session, video_id, uuid.uuid4())
        return rows["search_videos"] + rows["search_cues"]
    alias = IndexNames(settings.search_index_prefix).alias
    url = f"{settings.search_url}/{alias}/_doc/{video_id}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return 1 if answer.status == 200 else 0
    except urllib.error.HTTPError as exc:
        assert exc.code == 404, exc
        return 0


async def _until_a_stage_runs(runtime: Runtime, job_id: uuid.UUID) -> None:
    for _ in range(600):
        async with runtime.database.sessions() as session:
            states = set((await session.scalars(select(StageRun.status).where(StageRun.job_id == job_id))).all())
        if StageStatus.RUNNING.value in states or states <= {"succeeded"}:
            return
        await asyncio.sleep(0.05)


async def _title(runtime: Runtime, video_id: uuid.UUID) -> str:
    async with runtime.database.sessions() as session:
        video = await session.get(Video, video_id)
        assert video is not None
        return video.title


async def _tracks(runtime: Runtime, video_id: uuid.UUID) -> list[SubtitleTrack]:
    async with runtime.database.sessions() as session:
        return await list_tracks(session, video_id)


async def _job_status(runtime: Runtime, video_id: uuid.UUID) -> str | None:
    async with runtime.database.sessions() as session:
        return await session.scalar(select(Job.status).where(Job.video_id == video_id))


def _set_state(pipeline: Pipeline, video_id: uuid.UUID, stage: Stage, state: StageStatus) -> None:
    async def write(runtime: Runtime) -> None:
        async with runtime.database.sessions() as session:
            job_id = await session.scalar(select(Job.id).where(Job.video_id == video_id))
            await session.execute(
                update(StageRun)
                .where(StageRun.job_id == job_id, StageRun.stage == stage.value)
                .values(status=state.value)
            )
            await session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.RUNNING.value))
            await session.commit()

    _run(pipeline, write)
