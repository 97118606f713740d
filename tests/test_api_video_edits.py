"""Changing and deleting videos and subtitle tracks through the HTTP API.

One world per backend, shared by the module's tests: the embedded default with in-process
workers, and PostgreSQL, the S3 server, Redis with a worker process and OpenSearch. Three
accounts (ada owns the videos, bob is another member, cyd an admin); each test that changes
or deletes a video processes one of its own from a generated clip.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import update

from api.app import create_app
from pipeline.cli.app import Pipeline
from pipeline.db.models import User
from pipeline.edits import MAX_SUBTITLE_BYTES
from pipeline.errors import SubtitleError
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.submit import SubtitleFile
from pipeline.subtitles import parse_subtitles
from tests import services
from tests.conftest import embedded_env, services_env
from tests.harness import open_pipeline, process, with_runtime
from tests.mediagen import make_video
from tests.opensearch_server import delete_indices
from tests.s3server import S3Server, make_bucket
from tests.test_api_auth import _bearer, _error_code, _login, _register, _sync_session
from workers.broker import DramatiqDispatcher

# Each word searched for shares no three-letter run with another video's text: osmem-server
# was seen to match "zither" in a cue that shares only "the" with it.
KOREAN_VTT = "WEBVTT\n\n00:00.400 --> 00:01.500\n오늘은 <b>고유값</b>을 배웁니다.\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@dataclass
class World:
    client: TestClient[Any]
    pipeline: Pipeline
    headers: dict[str, dict[str, str]]
    """Bearer headers by user name."""
    owner_id: uuid.UUID
    """ada's account."""
    tmp: Path

    def video(self, title: str, subtitle_text: str | None = None) -> tuple[str, str]:
        """Process a new video of ada's; returns its id and its job's id."""
        clip = make_video(self.tmp / f"{uuid.uuid4().hex}.mp4", duration=2.0)
        subtitles = []
        if subtitle_text is not None:
            path = self.tmp / f"{uuid.uuid4().hex}.en.srt"
            path.write_text(subtitle_text, encoding="utf-8")
            subtitles.append(SubtitleFile(path))
        report = with_runtime(
            self.pipeline,
            lambda rt: process(rt, clip, title=title, subtitles=subtitles, owner_id=self.owner_id),
        )
        assert report["job"]["status"] == "succeeded", report
        return report["video"]["id"], report["job"]["id"]

    def call(self, method: str, path: str, user: str = "ada", **options: Any) -> Any:
        return self.client.request(method, f"/api/v1{path}", headers=self.headers[user], **options)

    def wait_for_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.call("GET", f"/jobs/{job_id}").json()
            if body["status"] in ("succeeded", "failed", "cancelled"):
                return body
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not end in time")

    def found(self, query: str, user: str = "ada") -> list[str]:
        response = self.call("GET", "/search", user, params={"q": query})
        assert response.status_code == 200, response.text
        return [hit["video"]["id"] for hit in response.json()["hits"]]

    def objects(self, video_id: str) -> list[str]:
        async def listing(runtime: Runtime) -> list[str]:
            return [stored.key for stored in await runtime.storage.list(f"videos/{video_id}/")]

        return with_runtime(self.pipeline, listing)


def _services_env(request: pytest.FixtureRequest, tmp: Path) -> tuple[dict[str, str], list[Any]]:
    """PostgreSQL, S3, Redis and OpenSearch settings for a module, and what undoes them."""
    reason = services.redis_available()
    if reason:
        services.unavailable(reason)
    template: str = request.getfixturevalue("pg_template")
    server: S3Server = request.getfixturevalue("s3_server")
    opensearch_url: str = request.getfixturevalue("opensearch_url")
    database = services.unique("vidpipe_test")
    services.create_database(database, template=template)
    bucket = services.unique("vidpipe").replace("_", "-").lower()
    make_bucket(server.endpoint_url, bucket)
    env = services_env(tmp, services.pg_url(database), services.REDIS_URL, server.endpoint_url, bucket)
    prefix = f"vidpipe-test-{uuid.uuid4().hex[:12]}"
    env.update(VIDPIPE_SEARCH_URL=opensearch_url, VIDPIPE_SEARCH_INDEX_PREFIX=prefix)
    undo = [
        lambda: services.drop_database(database),
        lambda: services.delete_redis_namespace(env["VIDPIPE_BROKER_NAMESPACE"]),
        lambda: delete_indices(opensearch_url, f"{prefix}-videos-v*"),
    ]
    return env, undo


@pytest.fixture(scope="module", params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"api_video_edits_{request.param}")
    env, undo = embedded_env(tmp), []
    worker = None
    if request.param == "services":
        env, undo = _services_env(request, tmp)
        worker = services.WorkerProcess(env, log=tmp / "worker.log")
    settings = Settings.from_env(env).with_secret()
    try:
        with (
            open_pipeline(settings) as pipeline,
            TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
        ):
            headers = {}
            for name in ("ada", "bob", "cyd"):
                assert _register(client, name).status_code == 201
                headers[name] = _bearer(_login(client, name).json()["access_token"])
            with _sync_session(settings.database_url) as session:
                session.execute(update(User).where(User.username == "cyd").values(role="admin"))
                session.commit()
            owner = uuid.UUID(client.get("/api/v1/users/me", headers=headers["ada"]).json()["id"])
            yield World(client, pipeline, headers, owner, tmp)
    finally:
        if worker is not None:
            worker.stop()
        for step in undo:
            step()


@pytest.fixture(scope="module")
def shared_video(world: World) -> tuple[str, str]:
    """A video of ada's (and its job) that the tests below read and add tracks to, but never delete."""
    return world.video("Foghorn signals", "1\n00:00:00,300 --> 00:00:01,200\nThe pilot boat waits.\n")


@pytest.fixture
def shared(shared_video: tuple[str, str]) -> str:
    return shared_video[0]


@pytest.fixture
def shared_job(shared_video: tuple[str, str]) -> str:
    return shared_video[1]


def test_the_routes_need_a_token(world: World, shared: str) -> None:
    for method, path in [
        ("PATCH", f"/videos/{shared}"),
        ("DELETE", f"/videos/{shared}"),
        ("GET", f"/videos/{shared}/subtitles"),
        ("POST", f"/videos/{shared}/subtitles"),
        ("DELETE", f"/videos/{shared}/subtitles/{uuid.uuid4()}"),
    ]:
        response = world.client.request(method, f"/api/v1{path}", json={} if method == "PATCH" else None)
        assert _error_code(response, 401) == "auth.token_missing", (method, path)


def test_another_members_video_answers_404_to_every_route_and_is_left_alone(world: World, shared: str) -> None:
    tracks = world.call("GET", f"/videos/{shared}/subtitles").json()
    track_id = tracks[0]["id"]
    form = {"files": {"file": ("talk.ko.vtt", KOREAN_VTT.encode())}}

    answers = [
        world.call("PATCH", f"/videos/{shared}", "bob", json={"title": "Taken over"}),
        world.call("DELETE", f"/videos/{shared}", "bob"),
        world.call("GET", f"/videos/{shared}/subtitles", "bob"),
        world.call("POST", f"/videos/{shared}/subtitles", "bob", **form),
        world.call("DELETE", f"/videos/{shared}/subtitles/{track_id}", "bob"),
        world.call("GET", f"/videos/{shared}/subtitles/{track_id}.vtt", "bob"),
        world.call("PATCH", f"/videos/{uuid.uuid4()}", json={"title": "Nobody's"}),
    ]

    assert [_error_code(answer, 404) for answer in answers] == ["video.not_found"] * len(answers)
    assert world.call("GET", f"/videos/{shared}/subtitles").json() == tracks
    assert world.found("foghorn") == [shared]


def test_a_patch_changes_the_title_and_search_follows(world: World) -> None:
    video_id, job_id = world.video("Kazoo jamboree")
    assert world.found("kazoo") == [video_id]

    response = world.call("PATCH", f"/videos/{video_id}", json={"title": "Baroque lute", "language": "en-us"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["title"], body["language"]) == (video_id, "Baroque lute", "en-US")
    assert body["job"]["id"] == job_id and body["job"]["status"] in ("queued", "running", "succeeded")
    assert world.wait_for_job(job_id)["status"] == "succeeded"
    assert world.found("lute") == [video_id]
    assert world.found("kazoo") == []

    by_admin = world.call("PATCH", f"/videos/{video_id}", "cyd", json={"description": "Tuning a lute by ear"})
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["title"] == "Baroque lute" and by_admin.json()["description"] == "Tuning a lute by ear"
    world.wait_for_job(job_id)
    cleared = world.call("PATCH", f"/videos/{video_id}", json={"language": None})
    assert cleared.status_code == 200 and cleared.json()["language"] is None


def test_a_patch_with_bad_fields_answers_in_the_error_shape(world: World, shared: str) -> None:
    bad_language = world.call("PATCH", f"/videos/{shared}", json={"language": "not a language"})
    empty_title = world.call("PATCH", f"/videos/{shared}", json={"title": "   "})
    unknown_field = world.call("PATCH", f"/videos/{shared}", json={"colour": "red"})

    assert _error_code(bad_language, 422) == "input.language"
    assert "ko, en or en-US" in bad_language.json()["error"]["message"]
    assert _error_code(empty_title, 422) == "video.title_empty"
    assert _error_code(unknown_field, 400) == "request.invalid"
    assert world.found("foghorn") == [shared]


def test_a_korean_track_is_added_listed_served_and_found(world: World, shared: str, shared_job: str) -> None:
    before = world.call("GET", f"/videos/{shared}/subtitles").json()

    response = world.call(
        "POST",
        f"/videos/{shared}/subtitles",
        files={"file": ("lecture.ko.vtt", KOREAN_VTT.encode())},
        data={"label": "한국어"},
    )

    assert response.status_code == 201, response.text
    track = response.json()
    assert (track["language"], track["label"], track["source"], track["filename"]) == (
        "ko",
        "한국어",
        "file",
        "lecture.ko.vtt",
    )
    assert track["status"] == "pending" and track["vtt_url"] is None
    assert world.wait_for_job(shared_job)["status"] == "succeeded"
    listed = world.call("GET", f"/videos/{shared}/subtitles").json()
    assert [t["id"] for t in listed] == [t["id"] for t in before] + [track["id"]]
    ready = listed[-1]
    assert (ready["status"], ready["cue_count"], ready["format"], ready["error_code"]) == ("ready", 1, "webvtt", None)
    served = world.client.get(ready["vtt_url"], headers=world.headers["ada"])
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/vtt")
    assert served.text.startswith("WEBVTT") and "<b>고유값</b>" in served.text
    assert world.found("고유값") == [shared]
    assert world.found("고유값", "bob") == []
    assert world.found("고유값", "cyd") == [shared]


def test_an_unusable_subtitle_file_answers_422_with_the_parsers_code_and_reason(world: World, shared: str) -> None:
    before = world.call("GET", f"/videos/{shared}/subtitles").json()
    with pytest.raises(SubtitleError) as parser:
        parse_subtitles(PNG, "slides.vtt")

    response = world.call("POST", f"/videos/{shared}/subtitles", files={"file": ("slides.vtt", PNG)})
    no_cues = world.call("POST", f"/videos/{shared}/subtitles", files={"file": ("notes.vtt", b"WEBVTT\n\nno timing\n")})

    assert _error_code(response, 422) == parser.value.code == "subtitles.unrecognised_format"
    assert response.json()["error"]["message"] == parser.value.message
    assert _error_code(no_cues, 422) == "subtitles.no_cues"
    assert world.call("GET", f"/videos/{shared}/subtitles").json() == before


def test_an_oversized_subtitle_file_answers_413(world: World, shared: str) -> None:
    before = world.call("GET", f"/videos/{shared}/subtitles").json()
    just_over = b"WEBVTT\n\n" + b"x" * MAX_SUBTITLE_BYTES
    far_over = b"x" * (3 * MAX_SUBTITLE_BYTES)

    answers = [
        world.call("POST", f"/videos/{shared}/subtitles", files={"file": ("big.vtt", body)})
        for body in (just_over, far_over)
    ]

    assert [_error_code(answer, 413) for answer in answers] == ["subtitles.too_large"] * 2
    assert answers[0].json()["error"]["details"] == {"max_bytes": MAX_SUBTITLE_BYTES}
    assert world.call("GET", f"/videos/{shared}/subtitles").json() == before


def test_deleting_a_track_takes_its_cues_out_of_search(world: World) -> None:
    video_id, job_id = world.video("Coastal navigation", "1\n00:00:00,300 --> 00:00:01,200\nBeware of the mudflat.\n")
    (track,) = world.call("GET", f"/videos/{video_id}/subtitles").json()
    assert world.found("mudflat") == [video_id]
    assert world.client.get(track["vtt_url"], headers=world.headers["ada"]).status_code == 200

    response = world.call("DELETE", f"/videos/{video_id}/subtitles/{track['id']}")

    assert response.status_code == 204, response.text
    assert world.wait_for_job(job_id)["status"] == "succeeded"
    assert world.found("mudflat") == []
    assert world.found("coastal") == [video_id]
    assert world.call("GET", f"/videos/{video_id}/subtitles").json() == []
    assert _error_code(world.client.get(track["vtt_url"], headers=world.headers["ada"]), 404) == (
        "subtitles.track_not_found"
    )
    again = world.call("DELETE", f"/videos/{video_id}/subtitles/{track['id']}")
    assert _error_code(again, 404) == "subtitles.track_not_found"
    assert not any(track["id"] in key for key in world.objects(video_id))


def test_deleting_a_video_removes_it_everywhere(world: World) -> None:
    video_id, job_id = world.video("Tidal charts", "1\n00:00:00,300 --> 00:00:01,200\nSpring tides run high.\n")
    assert world.found("tides") == [video_id] and world.objects(video_id)

    response = world.call("DELETE", f"/videos/{video_id}", "cyd")

    assert response.status_code == 204, response.text
    assert world.found("tides") == [] and world.found("tidal") == []
    assert world.objects(video_id) == []
    assert _error_code(world.call("GET", f"/jobs/{job_id}"), 404) == "job.not_found"
    assert _error_code(world.call("GET", f"/videos/{video_id}/subtitles"), 404) == "video.not_found"
    assert _error_code(world.call("DELETE", f"/videos/{video_id}"), 404) == "video.not_found"


def test_the_routes_are_described_in_the_openapi_document(world: World) -> None:
    paths = world.client.get("/api/v1/openapi.json").json()["paths"]

    assert "multipart/form-data" in paths["/api/v1/videos/{video_id}/subtitles"]["post"]["requestBody"]["content"]
    assert {"patch", "delete"} <= set(paths["/api/v1/videos/{video_id}"])
    assert "delete" in paths["/api/v1/videos/{video_id}/subtitles/{track_id}"]
