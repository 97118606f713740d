"""``/metrics``: jobs, stages, queues, uploads and requests, read after real work on every backend.

Each test builds the API over the backend's settings (the embedded default, then PostgreSQL,
S3, Redis and a real worker process), runs videos through the pipeline for real and parses the
scrape with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session

from api.app import create_app
from pipeline.cli.app import Pipeline
from pipeline.db import open_database
from pipeline.db.migrate import sync_url, upgrade
from pipeline.db.models import Job, StageRun, Video, utcnow
from pipeline.settings import Settings
from pipeline.stagetotals import Durations, read_durations
from pipeline.states import Stage, VideoStatus
from pipeline.submit import submit_file
from tests import mediagen
from tests.conftest import SERVICES_ONLY, Backend
from tests.harness import open_pipeline, process, with_runtime
from tests.services import stop_group, wait_until
from tests.test_api_auth import _bearer, _error_code, _login, _register
from tests.test_search import _scratch_database
from workers.broker import DramatiqDispatcher, queue_depths

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
JOB_ROUTE = "/api/v1/jobs/{job_id}"


def scrape(client: TestClient[Any], headers: dict[str, str] | None = None) -> Samples:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``; None when there is none."""
    found = [v for (n, have), v in samples.items() if n == name and set(labels.items()) <= have]
    assert len(found) <= 1, f"{name}{labels} matches several series"
    return found[0] if found else None


@contextlib.contextmanager
def sync_session(database_url: str) -> Iterator[Session]:
    engine = create_engine(sync_url(database_url))
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


@contextlib.contextmanager
def api(pipeline: Pipeline) -> Iterator[TestClient[Any]]:
    settings = pipeline.settings
    app = create_app(settings, DramatiqDispatcher(pipeline.broker), queue_depths=partial(queue_depths, pipeline.broker))
    with TestClient(app) as client:
        yield client


def _member(client: TestClient[Any], name: str) -> tuple[uuid.UUID, dict[str, str]]:
    assert _register(client, name).status_code == 201
    headers = _bearer(_login(client, name).json()["access_token"])
    return uuid.UUID(client.get("/api/v1/users/me", headers=headers).json()["id"]), headers


def test_a_scrape_after_processing_shows_jobs_stages_failures_queues_and_requests(
    backend: Backend, tmp_path: Path
) -> None:
    settings = backend.settings()
    clip = mediagen.make_video(tmp_path / "lighthouse.mp4", duration=2.0)
    podcast = mediagen.make_audio_only(tmp_path / "podcast.m4a", duration=1.0)

    with open_pipeline(settings) as pipeline, api(pipeline) as client:
        ada, headers = _member(client, "ada")
        good = with_runtime(pipeline, lambda rt: process(rt, clip, title="Lighthouse", owner_id=ada))
        bad = with_runtime(pipeline, lambda rt: process(rt, podcast, title="Podcast", owner_id=ada))
        assert good["job"]["status"] == "succeeded" and bad["job"]["status"] == "failed", (good, bad)

        before = scrape(client)
        for _ in range(2):
            assert client.get(f"/api/v1/jobs/{good['job']['id']}", headers=headers).status_code == 200
        after = scrape(client)
        ready = client.get("/health/ready").json()["checks"]

    assert value(after, "vidpipe_jobs", state="succeeded") == 1
    assert value(after, "vidpipe_jobs", state="failed") == 1
    assert value(after, "vidpipe_jobs", state="queued") == value(after, "vidpipe_jobs", state="running") == 0

    for stage in Stage:
        assert value(after, "vidpipe_stage_duration_seconds_count", stage=stage.value) == 1, stage
        assert value(after, "vidpipe_stage_duration_seconds_bucket", stage=stage.value, le="+Inf") == 1
        assert (value(after, "vidpipe_stage_duration_seconds_sum", stage=stage.value) or 0) > 0
        assert value(after, "vidpipe_queue_depth", queue=stage.value) == 0
        assert value(after, "vidpipe_queue_oldest_age_seconds", queue=stage.value) == 0
        assert value(after, "vidpipe_stage_runs", stage=stage.value, state="queued") == 0
        assert value(after, "vidpipe_stage_runs", stage=stage.value, state="running") == 0

    failures = {labels: v for (name, labels), v in after.items() if name == "vidpipe_stage_failures_total"}
    code = bad["job"]["error_code"]
    assert failures == {frozenset({("stage", "ingest"), ("error_code", code)}): 1}, failures
    assert value(after, "vidpipe_uploads_in_progress") == 0

    job_route = {"method": "GET", "path": JOB_ROUTE, "status_code": "200"}
    requests_before = value(before, "vidpipe_http_requests_total", **job_route) or 0
    assert value(after, "vidpipe_http_requests_total", **job_route) == requests_before + 2
    assert (value(after, "vidpipe_http_request_duration_seconds_count", **job_route) or 0) >= 2
    ids = {good["job"]["id"], good["video"]["id"], bad["job"]["id"], bad["video"]["id"]}
    label_values = {v for _, labels in after for _, v in labels}
    assert not ids & label_values, "an id became a label value"
    assert not any("/api/v1/jobs/" in v and "{" not in v for v in label_values)

    for dependency in ("database", "storage", "search"):
        expected = 1.0 if ready[dependency]["status"] == "ok" else 0.0
        assert value(after, "vidpipe_dependency_up", dependency=dependency) == expected, dependency
    assert value(after, "vidpipe_dependency_up", dependency="database") == 1
    assert value(after, "vidpipe_dependency_up", dependency="broker") == 1


def test_waiting_work_shows_as_queue_depth_and_the_age_of_the_oldest_waiting_stage(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.worker is not None:  # nothing may take the message, so it stays in Redis
        backend.worker.stop()
        backend.worker = None
    settings = backend.settings()
    clip = mediagen.make_video(tmp_path / "waiting.mp4", duration=1.0)

    with open_pipeline(settings, start_workers=False) as pipeline, api(pipeline) as client:
        submitted = with_runtime(pipeline, lambda rt: submit_file(rt, clip, title="Waiting"))
        fresh = scrape(client)

        with sync_session(settings.database_url) as session:
            ingest = (StageRun.job_id == submitted.job_id) & (StageRun.stage == Stage.INGEST.value)
            session.execute(update(StageRun).where(ingest).values(queued_at=utcnow() - timedelta(minutes=10)))
            session.add(
                Video(title="Announced", source_key="x", source_filename="x.mp4", status=VideoStatus.AWAITING_UPLOAD)
            )
            session.commit()
        waited = scrape(client)

        with sync_session(settings.database_url) as session:
            # A retry waiting for its backoff counts as waiting from when it may be taken.
            session.execute(update(StageRun).where(ingest).values(next_attempt_at=utcnow() - timedelta(minutes=1)))
            session.commit()
        retried = scrape(client)

    assert value(fresh, "vidpipe_queue_depth", queue="ingest") == 1
    assert value(fresh, "vidpipe_stage_runs", stage="ingest", state="queued") == 1
    assert value(fresh, "vidpipe_jobs", state="queued") == 1
    assert value(fresh, "vidpipe_queue_depth", queue="thumbnails") == 0
    assert value(fresh, "vidpipe_uploads_in_progress") == 0

    assert 600 <= (value(waited, "vidpipe_queue_oldest_age_seconds", queue="ingest") or 0) < 3600
    assert value(waited, "vidpipe_queue_oldest_age_seconds", queue="thumbnails") == 0
    assert value(waited, "vidpipe_uploads_in_progress") == 1

    assert 60 <= (value(retried, "vidpipe_queue_oldest_age_seconds", queue="ingest") or 0) < 600


def test_metrics_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    from pipeline.settings import Settings

    token = "scrape-" + uuid.uuid4().hex
    settings = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_METRICS_TOKEN": token}).with_secret()

    with open_pipeline(settings) as pipeline, api(pipeline) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers=_bearer("scrape-guess"))
        right = client.get("/metrics", headers=_bearer(token))

    assert _error_code(missing, 401) == "metrics.unauthenticated"
    assert _error_code(wrong, 401) == "metrics.unauthenticated"
    assert right.status_code == 200 and "vidpipe_jobs" in right.text


def test_the_metrics_route_is_public_by_default_and_not_in_the_openapi_document(tmp_path: Path) -> None:
    from pipeline.settings import Settings

    settings = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)}).with_secret()

    with open_pipeline(settings) as pipeline, api(pipeline) as client:
        samples = scrape(client)
        document = client.get("/api/v1/openapi.json").json()

    assert value(samples, "vidpipe_jobs", state="succeeded") == 0
    assert "/metrics" not in document["paths"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


@SERVICES_ONLY
def test_two_api_processes_add_up_their_request_counts_and_log_json(backend: Backend, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "api.log"
    env = {**backend.process_env(), "VIDPIPE_LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:

        def both_started() -> bool:
            return log_path.read_text().count("Application startup complete") == 2

        assert wait_until(both_started, timeout=60), log_path.read_text()
        for _ in range(12):
            _fetch(f"{base}/health/live")
        samples = parse(_fetch(f"{base}/metrics"))
    finally:
        stop_group(server)

    live = {"method": "GET", "path": "/health/live", "status_code": "200"}
    assert value(samples, "vidpipe_http_requests_total", **live) == 12
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    started = [e for e in entries if e["logger"] == "uvicorn.error" and "startup complete" in e["message"]]
    assert len(started) == 2


def test_the_duration_histogram_only_grows_when_runs_are_retried_or_deleted(backend: Backend, tmp_path: Path) -> None:
    """Stage durations are counted as stages succeed, so neither a retry nor a deletion lowers a count."""
    settings = backend.settings()
    clip = mediagen.make_video(tmp_path / "lighthouse.mp4", duration=1.0)

    with open_pipeline(settings) as pipeline, api(pipeline) as client:
        ada, headers = _member(client, "ada")
        done = with_runtime(pipeline, lambda rt: process(rt, clip, title="Lighthouse", owner_id=ada))
        assert done["job"]["status"] == "succeeded", done
        once = scrape(client)

        job_url = f"/api/v1/jobs/{done['job']['id']}"
        assert client.post(f"{job_url}/retry", headers=headers).status_code == 202

        def ended_again() -> bool:
            body = client.get(job_url, headers=headers).json()
            return bool(body["status"] == "succeeded" and body["finished_at"] != done["job"]["finished_at"])

        assert wait_until(ended_again, timeout=120)
        twice = scrape(client)
        assert client.delete(f"/api/v1/videos/{done['video']['id']}", headers=headers).status_code == 204
        deleted = scrape(client)

    for stage in Stage:
        for samples, runs in ((once, 1), (twice, 2), (deleted, 2)):
            assert value(samples, "vidpipe_stage_duration_seconds_count", stage=stage.value) == runs, stage
            assert value(samples, "vidpipe_stage_duration_seconds_bucket", stage=stage.value, le="+Inf") == runs
        first = value(once, "vidpipe_stage_duration_seconds_sum", stage=stage.value) or 0
        assert (value(twice, "vidpipe_stage_duration_seconds_sum", stage=stage.value) or 0) > first > 0
    assert value(deleted, "vidpipe_jobs", state="succeeded") == 0


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_the_totals_migration_counts_the_runs_already_in_the_database(database: str, tmp_path: Path) -> None:
    with _scratch_database(database, tmp_path, "totals") as url:
        upgrade(url, "0010")
        started = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        with sync_session(url) as session:
            video = Video(title="Old", source_key="x", source_filename="x.mp4", status=VideoStatus.READY)
            session.add(video)
            session.flush()
            for took in (0.2, 0.4, 3.0):
                job = Job(video_id=video.id, status="succeeded")
                session.add(job)
                session.flush()
                session.add_all(
                    [
                        _run(job.id, Stage.INGEST, "succeeded", started, took),
                        _run(job.id, Stage.INDEX, "succeeded", started, took * 2000),
                        _run(job.id, Stage.THUMBNAILS, "failed", started, took),
                        _run(job.id, Stage.SUBTITLES, "pending", None, None),
                    ]
                )
            session.commit()

        upgrade(url)

        async def read() -> dict[str, Durations]:
            database = open_database(dataclasses.replace(Settings.from_env({}), database_url=url))
            try:
                async with database.sessions() as session:
                    return await read_durations(session)
            finally:
                await database.dispose()

        found = asyncio.run(read())
    assert set(found) == {"ingest", "index"}
    assert found["ingest"].count == 3 and found["ingest"].total == pytest.approx(3.6, abs=0.01)
    assert found["ingest"].buckets[:4] == [2, 2, 2, 3]  # two under 0.5 s, the third under 5 s
    assert found["index"].count == 3 and found["index"].total == pytest.approx(7200, abs=1)
    # 400 s and 800 s fall under 600 s and 1800 s; 6,000 s is beyond the last bound (1 h).
    assert found["index"].buckets[-4:] == [0, 1, 2, 2]


def _run(job_id: uuid.UUID, stage: Stage, status: str, started: datetime | None, took: float | None) -> StageRun:
    finished = started + timedelta(seconds=took) if started is not None and took is not None else None
    return StageRun(
        job_id=job_id, stage=stage.value, position=0, status=status, started_at=started, finished_at=finished
    )
