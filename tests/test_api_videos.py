"""Announcing, uploading, listing and reading videos through the HTTP API (Litestar's TestClient).

One world per backend, shared by the module: the embedded default (SQLite, a local folder
whose URLs are the API's own signed endpoint, in-process workers) and the real services
(PostgreSQL, the S3 server over HTTP with presigned URLs, Redis with a worker process). Four
accounts: ada and eve upload, bob is another member, cyd is an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from pipeline import keys
from pipeline.db.migrate import sync_url
from pipeline.db.models import User, Video
from pipeline.errors import NotFound
from pipeline.settings import Settings
from pipeline.storage import open_storage
from pipeline.uploads import IdempotencyKey, Links, Upload
from tests import services
from tests.conftest import embedded_env, services_env
from tests.harness import open_pipeline
from tests.mediagen import make_video, make_video_with_subtitles
from tests.opensearch_server import delete_indices
from tests.s3server import S3Server, make_bucket
from workers.broker import DramatiqDispatcher

PASSWORD = "Lecture-hall-42"
MIB = 2**20
USERS = ("ada", "bob", "cyd", "eve")
SRT = "1\n00:00:00,000 --> 00:00:01,500\nThe lighthouse keeper counts the waves.\n"
BACKENDS = ["embedded", pytest.param("services", marks=pytest.mark.services)]
# Multipart from 5 MiB in parts of 5 MiB (S3's smallest), so three parts fit in 11 MiB.
UPLOAD_ENV = {"VIDPIPE_MULTIPART_THRESHOLD_MB": "5", "VIDPIPE_UPLOAD_PART_MB": "5"}


# Worlds shared with tests/test_api_uploads.py.


@dataclass
class Stack:
    """The settings of one backend and, on the services, the worker process consuming its queues."""

    name: str
    env: dict[str, str]
    worker: services.WorkerProcess | None = None

    def settings(self) -> Settings:
        return Settings.from_env(self.env).with_secret()


@contextlib.contextmanager
def open_stack(request: pytest.FixtureRequest, name: str, tmp: Path, extra: dict[str, str]) -> Iterator[Stack]:
    """One backend for a whole module; on the services, a database, bucket and worker of its own."""
    if name == "embedded":
        yield Stack(name, {**embedded_env(tmp), **extra})
        return
    for reason in (services.postgres_available(), services.redis_available()):
        if reason:
            services.unavailable(reason)
    template: str = request.getfixturevalue("pg_template")
    server: S3Server = request.getfixturevalue("s3_server")
    search_url: str = request.getfixturevalue("opensearch_url")
    database = services.unique("vidpipe_up")
    services.create_database(database, template=template)
    bucket = services.unique("vidpipe-up").replace("_", "-").lower()
    make_bucket(server.endpoint_url, bucket)
    prefix = f"vidpipe-test-{uuid.uuid4().hex[:12]}"
    env = services_env(tmp, services.pg_url(database), services.REDIS_URL, server.endpoint_url, bucket)
    env.update({"VIDPIPE_SEARCH_URL": search_url, "VIDPIPE_SEARCH_INDEX_PREFIX": prefix, **extra})
    stack = Stack(name, env, services.WorkerProcess(env, log=tmp / "worker.log"))
    try:
        yield stack
    finally:
        assert stack.worker is not None
        stack.worker.stop()
        services.delete_redis_namespace(env["VIDPIPE_BROKER_NAMESPACE"])
        delete_indices(search_url, f"{prefix}-videos-v*")
        services.drop_database(database)


def sync_session(database_url: str) -> Session:
    return Session(create_engine(sync_url(database_url)))


def make_admin(database_url: str, username: str) -> None:
    with sync_session(database_url) as session:
        session.execute(update(User).where(User.username == username).values(role="admin"))
        session.commit()


def error_code(response: Any, status: int) -> str:
    """The code of an answer in the one error shape, after checking its status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def announcement(size: int, **fields: Any) -> dict[str, Any]:
    return {"title": "Linear algebra 7", "filename": "lecture.mp4", "content_type": "video/mp4", "size": size, **fields}


def object_sha256(settings: Settings, key: str) -> str:
    """Read a stored object back through the project's storage and hash it."""

    async def read() -> str:
        digest = hashlib.sha256()
        async for chunk in open_storage(settings).iter_chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    return asyncio.run(read())


@dataclass
class World:
    stack: Stack
    settings: Settings
    client: TestClient[Any]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    clip: Path = Path()

    @property
    def local(self) -> bool:
        return self.settings.storage_url.startswith("file:")

    def call(self, method: str, url: str, **options: Any) -> Any:
        """Follow an upload or download URL: the API's own through the test client, S3's over HTTP."""
        if url.startswith(self.settings.public_url):
            return self.client.request(method, url[len(self.settings.public_url) :], **options)
        return httpx.request(method, url, timeout=60, **options)

    def announce(self, user: str, size: int, key: str | None = None, **fields: Any) -> Any:
        headers = dict(self.headers[user])
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post("/api/v1/videos", json=announcement(size, **fields), headers=headers)

    def video(self, user: str, video_id: str, suffix: str = "") -> Any:
        return self.client.get(f"/api/v1/videos/{video_id}{suffix}", headers=self.headers[user])

    def complete(self, user: str, video_id: str, parts: list[dict[str, Any]] | None = None) -> Any:
        body = {"parts": parts} if parts is not None else None
        return self.client.post(f"/api/v1/videos/{video_id}/uploads/complete", json=body, headers=self.headers[user])

    def wait_until_processed(self, user: str, video_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.video(user, video_id).json()
            if body["status"] in ("ready", "failed"):
                return body
            time.sleep(0.25)
        raise AssertionError(f"video {video_id} was not processed in time")


def register(client: Any, name: str) -> dict[str, str]:
    """Register ``name`` and return bearer headers for it (works on a TestClient and on httpx)."""
    registered = client.post(
        "/api/v1/auth/register", json={"email": f"{name}@example.org", "username": name, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    tokens = client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"videos_{request.param}")
    with open_stack(request, request.param, tmp, UPLOAD_ENV) as stack:
        settings = stack.settings()
        with (
            open_pipeline(settings) as pipeline,
            TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
        ):
            world = World(stack, settings, client, clip=make_video(tmp / "lecture.mp4", duration=2.0))
            world.headers = {name: register(client, name) for name in USERS}
            make_admin(settings.database_url, "cyd")
            yield world


def _announced_put(world: World, user: str = "ada", size: int = 1000, **fields: Any) -> dict[str, Any]:
    response = world.announce(user, size, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _random(size: int) -> bytes:
    return os.urandom(size)


# Announcing.


def test_a_small_video_is_announced_with_one_presigned_put(world: World) -> None:
    response = world.announce("ada", 172_000, description="Eigenvalues", language="ko")

    assert response.status_code == 201, response.text
    body = response.json()
    video, upload = body["video"], body["upload"]
    assert response.headers["location"] == f"/api/v1/videos/{video['id']}"
    assert video["status"] == "awaiting_upload" and video["job"] is None
    assert video["title"] == "Linear algebra 7" and video["language"] == "ko"
    assert video["upload"] == {"status": "pending", "method": "put", "size": 172_000}
    assert set(upload) == {"method", "url", "headers", "expires_at"}
    assert upload["method"] == "put" and upload["headers"] == {"Content-Type": "video/mp4"}
    if world.local:
        assert upload["url"].startswith(f"{world.settings.public_url}/api/v1/signed?token=")
    else:
        assert upload["url"].startswith(world.settings.s3_endpoint_url or "-")
        assert "X-Amz-Signature=" in upload["url"]
    with sync_session(world.settings.database_url) as session:
        row = session.get(Video, uuid.UUID(video["id"]))
        owner = session.scalar(select(User.id).where(User.username == "ada"))
        assert row is not None and row.owner_id == owner
        assert row.source_key == keys.source_key(row.id, "lecture.mp4")


def test_a_large_video_is_announced_as_a_multipart_upload_with_part_urls(world: World) -> None:
    response = world.announce("ada", 11 * MIB)

    assert response.status_code == 201, response.text
    upload = response.json()["upload"]
    assert upload["method"] == "multipart" and upload["upload_id"]
    assert upload["part_size"] == 5 * MIB and upload["part_count"] == 3
    assert [part["part_number"] for part in upload["parts"]] == [1, 2, 3]
    assert "url" not in upload and "headers" not in upload


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"size": 0}, 422, "upload.invalid_size"),
        ({"size": -5}, 422, "upload.invalid_size"),
        ({"size": 20481 * MIB}, 413, "upload.too_large"),
        ({"content_type": "text/plain"}, 422, "upload.unsupported_type"),
        ({"content_type": "video"}, 422, "upload.unsupported_type"),
        ({"filename": "../../etc/lecture.mp4"}, 422, "upload.invalid_filename"),
        ({"filename": "lecture\n.mp4"}, 422, "upload.invalid_filename"),
        ({"filename": "  "}, 422, "upload.invalid_filename"),
        ({"title": "   "}, 422, "video.title_required"),
        ({"language": "no such language!"}, 422, "input.language"),
        ({"unknown": 1}, 400, "request.invalid"),
    ],
    ids=[
        "empty",
        "negative",
        "past-the-maximum",
        "text",
        "no-subtype",
        "path",
        "control-character",
        "blank-name",
        "blank-title",
        "language",
        "unknown-field",
    ],
)
def test_unusable_announcements_are_refused_with_a_code(
    world: World, fields: dict[str, Any], status: int, code: str
) -> None:
    response = world.client.post("/api/v1/videos", json=announcement(1000) | fields, headers=world.headers["ada"])

    assert error_code(response, status) == code


def test_known_containers_that_are_not_video_types_are_accepted(world: World) -> None:
    response = world.announce("ada", 1000, content_type="application/x-matroska", filename="lecture.mkv")

    assert response.status_code == 201, response.text
    assert response.json()["upload"]["headers"] == {"Content-Type": "application/x-matroska"}


# Single PUT, completion and processing.


def test_an_uploaded_clip_is_processed_to_ready_and_its_urls_serve_its_images(world: World) -> None:
    data = world.clip.read_bytes()
    announced = _announced_put(world, size=len(data), language="en")
    video_id, upload = announced["video"]["id"], announced["upload"]

    put = world.call("PUT", upload["url"], content=data, headers=upload["headers"])
    assert put.status_code == 200, put.text
    first = world.complete("ada", video_id)
    again = world.complete("ada", video_id)

    assert first.status_code == 202, first.text
    assert again.status_code == 202 and again.json()["job"]["id"] == first.json()["job"]["id"]
    video = world.wait_until_processed("ada", video_id)
    assert video["status"] == "ready", video
    assert video["job"] == {"id": first.json()["job"]["id"], "status": "succeeded"}
    assert video["size"] == len(data) and video["sha256"] == hashlib.sha256(data).hexdigest()
    assert video["width"] == 320 and video["height"] == 180 and video["duration"] == pytest.approx(2.0, abs=0.1)
    assert video["upload"]["status"] == "completed"

    poster = world.call("GET", video["poster"]["url"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
    assert video["candidates"] and all(world.call("GET", c["url"]).status_code == 200 for c in video["candidates"])
    index = world.call("GET", video["storyboard"]["vtt_url"])
    assert index.status_code == 200 and index.text.startswith("WEBVTT")
    references = [line for line in index.text.splitlines() if "#xywh=" in line]
    sprite = world.call("GET", references[0].split("#", 1)[0])
    assert sprite.status_code == 200 and sprite.content[:2] == b"\xff\xd8"


def test_a_processed_videos_subtitle_tracks_come_with_their_webvtt(world: World, tmp_path: Path) -> None:
    data = make_video_with_subtitles(tmp_path / "subtitled.mp4", [("eng", SRT)]).read_bytes()
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    assert world.call("PUT", upload["url"], content=data, headers=upload["headers"]).status_code == 200
    assert world.complete("ada", video_id).status_code == 202

    video = world.wait_until_processed("ada", video_id)

    assert video["status"] == "ready", video
    [track] = video["subtitles"]
    assert track["language"] == "en" and track["source"] == "embedded" and track["status"] == "ready"
    assert track["cue_count"] == 1 and track["error_code"] is None
    vtt = world.call("GET", track["url"])
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    assert "The lighthouse keeper counts the waves." in vtt.text


def test_completing_before_the_bytes_arrive_is_a_conflict(world: World) -> None:
    announced = _announced_put(world, size=1000)

    response = world.complete("ada", announced["video"]["id"])

    assert error_code(response, 409) == "upload.incomplete"


def test_bytes_of_another_size_than_announced_are_refused_on_completion(world: World) -> None:
    announced = _announced_put(world, size=1000)
    upload = announced["upload"]
    assert world.call("PUT", upload["url"], content=b"x" * 999, headers=upload["headers"]).status_code == 200

    response = world.complete("ada", announced["video"]["id"])

    assert error_code(response, 422) == "upload.size_mismatch"
    assert response.json()["error"]["details"] == {"announced": 1000, "received": 999}


def test_a_fresh_plan_can_be_asked_for_until_the_upload_completes(world: World) -> None:
    data = _random(2000)
    announced = _announced_put(world, size=len(data))
    video_id = announced["video"]["id"]

    plan = world.video("ada", video_id, "/uploads")
    assert plan.status_code == 200 and plan.json()["method"] == "put"
    assert world.call("PUT", plan.json()["url"], content=data, headers=plan.json()["headers"]).status_code == 200
    assert world.complete("ada", video_id).status_code == 202

    assert error_code(world.video("ada", video_id, "/uploads"), 409) == "upload.already_completed"


# Multipart.


def _put_parts(world: World, urls: list[dict[str, Any]], data: bytes, part_size: int) -> dict[int, str]:
    etags = {}
    for part in urls:
        number = part["part_number"]
        piece = data[(number - 1) * part_size : number * part_size]
        response = world.call("PUT", part["url"], content=piece)
        assert response.status_code == 200, response.text
        etags[number] = response.headers["etag"]
        assert etags[number].strip('"') == hashlib.md5(piece).hexdigest()
    return etags


def test_a_multipart_upload_of_three_parts_completes_with_their_etags(world: World) -> None:
    data = _random(11 * MIB)
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]

    etags = _put_parts(world, upload["parts"], data, upload["part_size"])
    response = world.complete(
        "ada", video_id, [{"part_number": number, "etag": etag} for number, etag in sorted(etags.items())]
    )

    assert response.status_code == 202, response.text
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(world.settings, key) == hashlib.sha256(data).hexdigest()


def test_an_interrupted_multipart_upload_resumes_from_the_parts_the_store_lists(world: World) -> None:
    data = _random(11 * MIB)
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    _put_parts(world, upload["parts"][:1], data, upload["part_size"])

    listed = world.video("ada", video_id, "/uploads/parts")
    assert listed.status_code == 200, listed.text
    assert [(p["part_number"], p["size"]) for p in listed.json()["parts"]] == [(1, 5 * MIB)]
    assert listed.json()["part_count"] == 3 and listed.json()["upload_id"] == upload["upload_id"]
    missing = world.complete("ada", video_id)
    assert error_code(missing, 409) == "upload.parts_missing"
    assert missing.json()["error"]["details"]["missing"] == [2, 3]

    more = world.client.post(
        f"/api/v1/videos/{video_id}/uploads/parts", json={"part_numbers": [2, 3]}, headers=world.headers["ada"]
    )
    assert more.status_code == 200, more.text
    _put_parts(world, more.json()["parts"], data, upload["part_size"])
    done = world.complete("ada", video_id)

    assert done.status_code == 202, done.text
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(world.settings, key) == hashlib.sha256(data).hexdigest()


def test_parts_outside_the_upload_and_wrong_etags_are_refused(world: World) -> None:
    data = _random(11 * MIB)
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    etags = _put_parts(world, upload["parts"], data, upload["part_size"])

    outside = world.client.post(
        f"/api/v1/videos/{video_id}/uploads/parts", json={"part_numbers": [4]}, headers=world.headers["ada"]
    )
    wrong = world.complete(
        "ada", video_id, [{"part_number": n, "etag": '"0000"' if n == 2 else etags[n]} for n in (1, 2, 3)]
    )

    assert error_code(outside, 422) == "upload.invalid_part"
    assert error_code(wrong, 422) == "storage.invalid_part"
    assert world.complete("ada", video_id).status_code == 202


def test_a_single_put_upload_has_no_parts(world: World) -> None:
    announced = _announced_put(world, size=1000)

    response = world.video("ada", announced["video"]["id"], "/uploads/parts")

    assert error_code(response, 409) == "upload.not_multipart"


def test_aborting_removes_the_parts_and_the_announced_video(world: World) -> None:
    data = _random(11 * MIB)
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    _put_parts(world, upload["parts"][:2], data, upload["part_size"])

    response = world.client.delete(f"/api/v1/videos/{video_id}/uploads", headers=world.headers["ada"])

    assert response.status_code == 204, response.text
    assert error_code(world.video("ada", video_id), 404) == "video.not_found"
    storage = open_storage(world.settings)
    with pytest.raises(NotFound):
        asyncio.run(storage.list_parts(keys.source_key(uuid.UUID(video_id), "lecture.mp4"), upload["upload_id"]))
    with sync_session(world.settings.database_url) as session:
        assert session.scalar(select(Upload).where(Upload.video_id == uuid.UUID(video_id))) is None


def test_a_completed_upload_cannot_be_aborted(world: World) -> None:
    data = _random(1000)
    announced = _announced_put(world, size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    world.call("PUT", upload["url"], content=data, headers=upload["headers"])
    assert world.complete("ada", video_id).status_code == 202

    response = world.client.delete(f"/api/v1/videos/{video_id}/uploads", headers=world.headers["ada"])

    assert error_code(response, 409) == "upload.already_completed"


# Streaming through the API.


def test_a_source_streamed_through_the_api_is_stored_and_starts_the_job(world: World) -> None:
    data = _random(3 * MIB + 17)
    announced = _announced_put(world, size=len(data))
    video_id = announced["video"]["id"]

    response = world.client.put(f"/api/v1/videos/{video_id}/source", content=data, headers=world.headers["ada"])

    assert response.status_code == 202, response.text
    assert world.video("ada", video_id).json()["job"]["id"] == response.json()["job"]["id"]
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(world.settings, key) == hashlib.sha256(data).hexdigest()
    again = world.client.put(f"/api/v1/videos/{video_id}/source", content=data, headers=world.headers["ada"])
    assert error_code(again, 409) == "upload.already_completed"


def test_a_streamed_multipart_announcement_takes_the_whole_file_through_the_api(world: World) -> None:
    data = _random(11 * MIB)
    announced = _announced_put(world, size=len(data))
    video_id = announced["video"]["id"]

    response = world.client.put(f"/api/v1/videos/{video_id}/source", content=data, headers=world.headers["ada"])

    assert response.status_code == 202, response.text
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(world.settings, key) == hashlib.sha256(data).hexdigest()


def test_a_streamed_source_past_the_announced_size_is_refused_with_413(world: World) -> None:
    announced = _announced_put(world, size=1000)
    video_id = announced["video"]["id"]

    declared = world.client.put(f"/api/v1/videos/{video_id}/source", content=b"x" * 1001, headers=world.headers["ada"])

    def chunks() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"x" * 600

    undeclared = world.client.put(f"/api/v1/videos/{video_id}/source", content=chunks(), headers=world.headers["ada"])

    assert error_code(declared, 413) == "upload.too_large"
    assert error_code(undeclared, 413) == "upload.too_large"
    assert declared.json()["error"]["details"] == {"max_size": 1000}
    assert not asyncio.run(open_storage(world.settings).exists(keys.source_key(uuid.UUID(video_id), "lecture.mp4")))


def test_a_streamed_source_shorter_than_announced_is_refused(world: World) -> None:
    announced = _announced_put(world, size=1000)

    response = world.client.put(
        f"/api/v1/videos/{announced['video']['id']}/source", content=b"x" * 10, headers=world.headers["ada"]
    )

    assert error_code(response, 422) == "upload.size_mismatch"


# Idempotency.


def test_a_retried_announcement_with_the_same_key_answers_with_the_same_video_and_upload(world: World) -> None:
    key = f"retry-{uuid.uuid4()}"

    first = world.announce("ada", 11 * MIB, key=key)
    second = world.announce("ada", 11 * MIB, key=key)

    assert first.status_code == 201 and second.status_code == 201, second.text
    assert second.headers.get("idempotent-replayed") == "true" and "idempotent-replayed" not in first.headers
    assert second.json()["video"]["id"] == first.json()["video"]["id"]
    assert second.json()["upload"]["upload_id"] == first.json()["upload"]["upload_id"]
    with sync_session(world.settings.database_url) as session:
        stored = session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == key)).all()
        assert [row.video_id for row in stored] == [uuid.UUID(first.json()["video"]["id"])]


def test_a_key_reused_with_another_body_is_refused(world: World) -> None:
    key = f"reused-{uuid.uuid4()}"
    assert world.announce("ada", 1000, key=key).status_code == 201

    response = world.announce("ada", 2000, key=key)

    assert error_code(response, 422) == "idempotency.key_reused"


def test_the_same_key_from_another_member_makes_their_own_video(world: World) -> None:
    key = f"shared-{uuid.uuid4()}"

    ada = world.announce("ada", 1000, key=key)
    bob = world.announce("bob", 1000, key=key)

    assert ada.status_code == bob.status_code == 201
    assert ada.json()["video"]["id"] != bob.json()["video"]["id"]


# Quotas.


@contextlib.contextmanager
def _quota_client(world: World, **limits: Any) -> Iterator[TestClient[Any]]:
    """A second app on the same database and store, with other quotas."""
    settings = dataclasses.replace(world.settings, **limits)
    with (
        open_pipeline(settings, start_workers=False) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
    ):
        yield client


def test_a_member_past_the_video_quota_is_refused_and_an_admin_is_not(world: World) -> None:
    headers = register(world.client, f"q{uuid.uuid4().hex[:8]}")
    body = announcement(1000)
    with _quota_client(world, quota_videos=2) as client:
        answers = [client.post("/api/v1/videos", json=body, headers=headers).status_code for _ in range(2)]
        refused = client.post("/api/v1/videos", json=body, headers=headers)
        for _ in range(3):
            assert client.post("/api/v1/videos", json=body, headers=world.headers["cyd"]).status_code == 201

    assert answers == [201, 201]
    assert error_code(refused, 409) == "quota.videos_exceeded"
    assert refused.json()["error"]["details"] == {"limit": 2, "used": 2}


def test_a_member_past_the_byte_quota_is_refused(world: World) -> None:
    headers = register(world.client, f"q{uuid.uuid4().hex[:8]}")
    with _quota_client(world, quota_bytes=10 * MIB) as client:
        first = client.post("/api/v1/videos", json=announcement(6 * MIB), headers=headers)
        refused = client.post("/api/v1/videos", json=announcement(5 * MIB), headers=headers)
        fits = client.post("/api/v1/videos", json=announcement(4 * MIB), headers=headers)

    assert first.status_code == 201 and fits.status_code == 201
    assert error_code(refused, 409) == "quota.bytes_exceeded"
    assert refused.json()["error"]["details"] == {"limit": 10 * MIB, "used": 6 * MIB, "requested": 5 * MIB}


# Visibility.


def test_another_members_video_answers_404_on_every_route_and_an_admin_sees_it(world: World) -> None:
    announced = _announced_put(world, size=11 * MIB)
    video_id = announced["video"]["id"]
    bob = world.headers["bob"]

    answers = [
        world.client.get(f"/api/v1/videos/{video_id}", headers=bob),
        world.client.get(f"/api/v1/videos/{video_id}/uploads", headers=bob),
        world.client.get(f"/api/v1/videos/{video_id}/uploads/parts", headers=bob),
        world.client.post(f"/api/v1/videos/{video_id}/uploads/parts", json={"part_numbers": [1]}, headers=bob),
        world.client.post(f"/api/v1/videos/{video_id}/uploads/complete", headers=bob),
        world.client.delete(f"/api/v1/videos/{video_id}/uploads", headers=bob),
        world.client.put(f"/api/v1/videos/{video_id}/source", content=b"x", headers=bob),
        world.client.get(f"/api/v1/videos/{uuid.uuid4()}", headers=world.headers["ada"]),
    ]

    assert [error_code(answer, 404) for answer in answers] == ["video.not_found"] * len(answers)
    assert world.video("cyd", video_id).status_code == 200
    assert world.video("ada", video_id).status_code == 200


def test_the_video_routes_need_a_token(world: World) -> None:
    assert error_code(world.client.get("/api/v1/videos"), 401) == "auth.token_missing"
    assert error_code(world.client.post("/api/v1/videos", json=announcement(10)), 401) == "auth.token_missing"


# Listing.


def test_listing_pages_through_the_callers_videos_newest_first(world: World) -> None:
    name = f"l{uuid.uuid4().hex[:8]}"
    world.headers[name] = register(world.client, name)
    made = [_announced_put(world, name, size=1000, title=f"Lecture {i}")["video"]["id"] for i in range(5)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = world.client.get(f"/api/v1/videos{query}", headers=world.headers[name])
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break

    assert pages == 3 and seen == list(reversed(made))
    item = page.json()["items"][0]
    assert item["status"] == "awaiting_upload" and item["poster_url"] is None and item["title"] == "Lecture 0"


def test_listing_filters_by_status_and_an_admin_sees_every_member(world: World) -> None:
    data = world.clip.read_bytes()
    announced = _announced_put(world, "eve", size=len(data))
    video_id, upload = announced["video"]["id"], announced["upload"]
    world.call("PUT", upload["url"], content=data, headers=upload["headers"])
    world.complete("eve", video_id)
    assert world.wait_until_processed("eve", video_id)["status"] == "ready"

    ready = world.client.get("/api/v1/videos?status=ready&limit=100", headers=world.headers["eve"]).json()
    waiting = world.client.get("/api/v1/videos?status=awaiting_upload&limit=100", headers=world.headers["eve"])
    bob = world.client.get("/api/v1/videos?limit=100", headers=world.headers["bob"]).json()
    admin = world.client.get("/api/v1/videos?limit=100", headers=world.headers["cyd"]).json()

    assert [item["id"] for item in ready["items"]] == [video_id]
    assert ready["items"][0]["poster_url"] and world.call("GET", ready["items"][0]["poster_url"]).status_code == 200
    assert video_id not in [item["id"] for item in waiting.json()["items"]]
    assert video_id not in [item["id"] for item in bob["items"]]
    assert video_id in [item["id"] for item in admin["items"]]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?limit=0", "video.invalid_limit"),
        ("?status=done", "video.unknown_status"),
        ("?cursor=abc", "video.invalid_cursor"),
        # Well formed, but without a time zone, which no cursor the API gives out lacks.
        (
            "?cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJd",
            "video.invalid_cursor",
        ),
    ],
)
def test_bad_listing_parameters_are_refused(world: World, query: str, code: str) -> None:
    response = world.client.get(f"/api/v1/videos{query}", headers=world.headers["ada"])

    assert error_code(response, 422) == code


# The local store's signed URLs.


def _local_only(world: World) -> None:
    if not world.local:
        pytest.skip("S3 checks its own presigned URLs; these are the API's own signed URLs")


def test_a_tampered_or_expired_signed_url_is_refused(world: World) -> None:
    _local_only(world)
    announced = _announced_put(world, size=1000)
    url = announced["upload"]["url"]
    expired_links = Links(dataclasses.replace(world.settings, upload_url_seconds=-60), open_storage(world.settings))
    with sync_session(world.settings.database_url) as session:
        upload = session.scalar(select(Upload).where(Upload.video_id == uuid.UUID(announced["video"]["id"])))
        assert upload is not None
        expired = expired_links.put(upload)

    tampered = world.call("PUT", url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"), content=b"x" * 1000)
    late = world.call("PUT", expired, content=b"x" * 1000)
    wrong_method = world.call("GET", url)

    assert error_code(tampered, 403) == "url.invalid"
    assert error_code(late, 403) == "url.expired"
    assert error_code(wrong_method, 403) == "url.wrong_method"


def test_a_signed_put_refuses_more_than_announced_and_closes_once_completed(world: World) -> None:
    _local_only(world)
    announced = _announced_put(world, size=1000)
    video_id, upload = announced["video"]["id"], announced["upload"]

    too_much = world.call("PUT", upload["url"], content=b"x" * 1001)
    assert error_code(too_much, 413) == "upload.too_large"
    assert world.call("PUT", upload["url"], content=b"x" * 1000).status_code == 200
    assert world.complete("ada", video_id).status_code == 202

    assert error_code(world.call("PUT", upload["url"], content=b"y" * 1000), 409) == "upload.not_pending"
