"""The job and search routes of the HTTP API, on the embedded default with in-process workers.

One module-wide world: three accounts (ada owns the video, bob is another member, cyd is
an admin) and one job processed for real from a generated clip with an English subtitle file.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import update

from api.app import create_app
from pipeline.db.models import Job, User
from pipeline.submit import SubtitleFile
from tests.harness import open_pipeline, process, with_runtime
from tests.mediagen import make_video
from tests.test_api_auth import _bearer, _error_code, _login, _register, _settings, _sync_session
from workers.broker import DramatiqDispatcher

SRT = "1\n00:00:00,000 --> 00:00:01,500\nThe lighthouse keeper counts the waves.\n"


@dataclass
class World:
    client: TestClient[Any]
    job_id: str
    video_id: str
    headers: dict[str, dict[str, str]]
    """Bearer headers by user name."""
    database_url: str


def _user_headers(client: TestClient[Any], name: str) -> dict[str, str]:
    assert _register(client, name).status_code == 201
    return _bearer(_login(client, name).json()["access_token"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api_jobs")
    settings = _settings(tmp / "data")
    clip = make_video(tmp / "lighthouse.mp4", duration=2.0)
    subtitle = tmp / "lighthouse.en.srt"
    subtitle.write_text(SRT, encoding="utf-8")

    with (
        open_pipeline(settings) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
    ):
        headers = {name: _user_headers(client, name) for name in ("ada", "bob", "cyd")}
        with _sync_session(settings.database_url) as session:
            session.execute(update(User).where(User.username == "cyd").values(role="admin"))
            session.commit()
        ada = uuid.UUID(client.get("/api/v1/users/me", headers=headers["ada"]).json()["id"])

        subtitles = [SubtitleFile(subtitle, "en")]
        report = with_runtime(
            pipeline, lambda rt: process(rt, clip, title="Lighthouse", subtitles=subtitles, owner_id=ada)
        )
        assert report["job"]["status"] == "succeeded", report
        yield World(client, report["job"]["id"], report["video"]["id"], headers, settings.database_url)


def _job(world: World, user: str = "ada", suffix: str = "", if_none_match: str | None = None) -> Any:
    headers = dict(world.headers[user])
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return world.client.get(f"/api/v1/jobs/{world.job_id}{suffix}", headers=headers)


def _wait_until_ended(world: World, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = _job(world).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError("the job did not end in time")


def test_the_owner_reads_the_job_with_its_stages(world: World) -> None:
    response = _job(world)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == world.job_id and body["video_id"] == world.video_id
    assert body["status"] == "succeeded" and body["progress"] == 100
    assert {"created_at", "finished_at"} <= set(body)
    stage_fields = {"name", "status", "progress", "attempts", "error_code", "error_message"}
    stage_fields |= {"started_at", "finished_at"}
    assert body["stages"] and all(stage_fields <= set(stage) for stage in body["stages"])


def test_an_unchanged_job_answers_304_to_its_etag(world: World) -> None:
    etag = _job(world).headers["etag"]

    again = _job(world, if_none_match=etag)

    assert again.status_code == 304 and again.headers["etag"] == etag
    assert _job(world, if_none_match='"stale"').status_code == 200


def test_a_long_poll_on_an_unchanged_job_answers_304_after_the_wait(world: World) -> None:
    etag = _job(world).headers["etag"]

    started = time.monotonic()
    response = _job(world, suffix="?wait=1", if_none_match=etag)

    assert response.status_code == 304
    assert 0.9 <= time.monotonic() - started < 5


def _set_job_message(world: World, message: str | None, delay: float = 0.0) -> None:
    time.sleep(delay)
    with _sync_session(world.database_url) as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(world.job_id)).values(error_message=message))
        session.commit()


def test_a_long_poll_answers_as_soon_as_the_job_changes(world: World) -> None:
    etag = _job(world).headers["etag"]
    writer = threading.Thread(target=_set_job_message, args=(world, "a note", 0.5))

    writer.start()
    started = time.monotonic()
    try:
        response = _job(world, suffix="?wait=10", if_none_match=etag)
    finally:
        writer.join()
        _set_job_message(world, None)

    assert response.status_code == 200 and response.json()["error_message"] == "a note"
    assert response.headers["etag"] != etag and time.monotonic() - started < 5


def test_another_member_gets_404_and_an_admin_sees_the_job(world: World) -> None:
    assert _error_code(_job(world, "bob"), 404) == "job.not_found"
    assert _error_code(world.client.post(f"/api/v1/jobs/{world.job_id}/cancel", headers=world.headers["bob"]), 404)
    assert _error_code(_job(world, suffix="x"), 404) == "not_found"
    missing = world.client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=world.headers["ada"])
    assert _error_code(missing, 404) == "job.not_found"
    assert _job(world, "cyd").status_code == 200


def test_the_job_routes_need_a_token(world: World) -> None:
    assert _error_code(world.client.get(f"/api/v1/jobs/{world.job_id}"), 401) == "auth.token_missing"
    assert _error_code(world.client.get("/api/v1/search?q=lighthouse"), 401) == "auth.token_missing"


def test_cancelling_a_finished_job_is_a_conflict(world: World) -> None:
    response = world.client.post(f"/api/v1/jobs/{world.job_id}/cancel", headers=world.headers["ada"])

    assert _error_code(response, 409) == "job.already_finished"


def test_an_unknown_stage_cannot_be_retried(world: World) -> None:
    response = world.client.post(
        f"/api/v1/jobs/{world.job_id}/retry", headers=world.headers["ada"], json={"stage": "nope"}
    )

    assert _error_code(response, 422) == "job.unknown_stage"


def test_a_retried_job_runs_again_and_its_events_end_with_it(world: World) -> None:
    before = _job(world).json()

    response = world.client.post(f"/api/v1/jobs/{world.job_id}/retry", headers=world.headers["ada"])

    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("queued", "running") and response.json()["finished_at"] is None
    # The poller's cache forgets a job its own process just changed: no stale "succeeded" here.
    assert _job(world).json()["finished_at"] is None
    with world.client.stream("GET", f"/api/v1/jobs/{world.job_id}/events", headers=world.headers["ada"]) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    assert events and events[-1]["status"] == "succeeded"
    after = _wait_until_ended(world)
    assert after["status"] == "succeeded" and after["finished_at"] != before["finished_at"]


def test_search_finds_the_cue_with_a_highlight(world: World) -> None:
    response = world.client.get("/api/v1/search?q=lighthouse%20keeper", headers=world.headers["ada"])

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"total", "hits"} and body["total"] == 1
    hit = body["hits"][0]
    assert hit["video"] == {"id": world.video_id, "title": "Lighthouse"}
    assert "<mark>" in hit["cues"][0]["highlight"] and hit["cues"][0]["start"] == 0


def test_search_hides_another_members_video_but_not_from_an_admin(world: World) -> None:
    hidden = world.client.get("/api/v1/search?q=lighthouse", headers=world.headers["bob"]).json()
    shown = world.client.get("/api/v1/search?q=lighthouse", headers=world.headers["cyd"]).json()

    assert hidden["hits"] == []
    assert [hit["video"]["id"] for hit in shown["hits"]] == [world.video_id]


def test_suggest_offers_the_title(world: World) -> None:
    response = world.client.get("/api/v1/search/suggest?q=ligh", headers=world.headers["ada"])

    assert response.status_code == 200, response.text
    assert response.json() == {"suggestions": [{"text": "Lighthouse", "video_id": world.video_id}]}


def test_an_empty_query_answers_in_the_error_shape(world: World) -> None:
    response = world.client.get("/api/v1/search?q=", headers=world.headers["ada"])

    assert response.status_code in (400, 422)
    _error_code(response, response.status_code)
