"""Uploads as real clients make them: plain HTTP against a running ``vidpipe api`` process.

The bytes go where the API's answers point, with nothing but httpx: to the S3 server with
presigned URLs on the services backend, to the API's own signed endpoint on the embedded
default. Then the storage capabilities those routes stand on (streamed writes, multipart
uploads, presigned URLs), on the local folder and on S3.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pipeline import keys
from pipeline.db.models import Job
from pipeline.errors import InvalidInput, NotFound
from pipeline.settings import Settings
from pipeline.storage import Storage, open_storage
from pipeline.storage.base import MIN_PART_SIZE, PartTag, SizeLimitExceeded
from pipeline.storage.local import TMP_DIR_NAME, LocalStorage
from pipeline.storage.s3 import S3Storage
from tests import services
from tests.mediagen import make_video
from tests.opensearch_server import free_port, wait_until_answering
from tests.s3server import REGION, S3Server, make_bucket
from tests.test_api_videos import (
    BACKENDS,
    MIB,
    UPLOAD_ENV,
    Stack,
    announcement,
    error_code,
    make_admin,
    object_sha256,
    open_stack,
    register,
    sync_session,
)

GIB = 2**30
MEMORY_GROWTH_LIMIT = 64 * MIB
"""How much the API process's peak resident memory may grow while it takes a 1 GiB body."""


# A running API.


class ApiServer:
    """``vidpipe api`` in a child process, on a free port, with a backend's settings."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "VIDPIPE_PUBLIC_URL": self.url}
        self.log = log
        self._handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.env},
            cwd=services.REPO,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=services._end_with_parent,
        )
        if not wait_until_answering(f"{self.url}/health/live", 60):
            self.stop()
            raise AssertionError(f"vidpipe api did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._handle.close()

    def memory(self) -> dict[str, int]:
        """The process's current (VmRSS) and peak (VmHWM) resident memory, in bytes."""
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
        return found

    def reset_peak_memory(self) -> None:
        """Start VmHWM again from the current resident size (Linux's clear_refs "5")."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@dataclass
class Served:
    stack: Stack
    settings: Settings
    server: ApiServer
    http: httpx.Client
    headers: dict[str, dict[str, str]]
    clip: Path

    def announce(self, user: str, size: int, **fields: Any) -> Any:
        return self.http.post("/api/v1/videos", json=announcement(size, **fields), headers=self.headers[user])

    def video(self, user: str, video_id: str, suffix: str = "") -> Any:
        return self.http.get(f"/api/v1/videos/{video_id}{suffix}", headers=self.headers[user])

    def complete(self, user: str, video_id: str, parts: list[dict[str, Any]] | None = None) -> Any:
        body = {"parts": parts} if parts is not None else None
        return self.http.post(f"/api/v1/videos/{video_id}/uploads/complete", json=body, headers=self.headers[user])


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"uploads_{request.param}")
    extra = {**UPLOAD_ENV, "VIDPIPE_QUOTA_MB": "4096"}
    with open_stack(request, request.param, tmp, extra) as stack:
        server = ApiServer(stack.env, tmp / "api.log")
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                headers = {name: register(http, name) for name in ("ada", "bob", "cyd", "quinn")}
                settings = Settings.from_env(server.env).with_secret()
                make_admin(settings.database_url, "cyd")
                yield Served(stack, settings, server, http, headers, make_video(tmp / "lecture.mp4", duration=2.0))
        finally:
            server.stop()


def _put_parts(urls: list[dict[str, Any]], data: bytes, part_size: int) -> list[dict[str, Any]]:
    """PUT each part with a fresh plain HTTP client, as a browser would, and keep the ETags."""
    sent = []
    with httpx.Client(timeout=120) as client:
        for part in urls:
            number = part["part_number"]
            answer = client.put(part["url"], content=data[(number - 1) * part_size : number * part_size])
            assert answer.status_code == 200, answer.text
            sent.append({"part_number": number, "etag": answer.headers["etag"]})
    return sent


def test_a_real_clip_uploaded_with_a_presigned_put_is_processed_to_ready(served: Served) -> None:
    data = served.clip.read_bytes()
    announced = served.announce("ada", len(data), language="en").json()
    upload = announced["upload"]

    put = httpx.put(upload["url"], content=data, headers=upload["headers"], timeout=60)
    assert put.status_code == 200, put.text
    completed = served.complete("ada", announced["video"]["id"])
    assert completed.status_code == 202, completed.text

    deadline = time.monotonic() + 120
    video = served.video("ada", announced["video"]["id"]).json()
    while video["status"] not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.25)
        video = served.video("ada", announced["video"]["id"]).json()
    assert video["status"] == "ready", video
    assert video["sha256"] == hashlib.sha256(data).hexdigest() and video["video_codec"] == "h264"
    assert httpx.get(video["poster"]["url"]).content[:2] == b"\xff\xd8"


def test_a_multipart_upload_in_three_parts_over_plain_http(served: Served) -> None:
    data = os.urandom(11 * MIB)
    announced = served.announce("ada", len(data)).json()
    video_id, upload = announced["video"]["id"], announced["upload"]
    assert upload["method"] == "multipart" and len(upload["parts"]) == 3

    sent = _put_parts(upload["parts"], data, upload["part_size"])
    completed = served.complete("ada", video_id, sent)

    assert completed.status_code == 202, completed.text
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(served.settings, key) == hashlib.sha256(data).hexdigest()


def test_a_multipart_upload_resumes_after_the_client_crashes(served: Served) -> None:
    data = os.urandom(11 * MIB)
    announced = served.announce("ada", len(data)).json()
    video_id, upload = announced["video"]["id"], announced["upload"]
    _put_parts(upload["parts"][:1], data, upload["part_size"])

    # A new client knows only the video id: it asks what arrived and for URLs of the rest.
    with httpx.Client(base_url=served.server.url, timeout=120, headers=served.headers["ada"]) as restarted:
        listed = restarted.get(f"/api/v1/videos/{video_id}/uploads/parts").json()
        have = {part["part_number"] for part in listed["parts"]}
        rest = [n for n in range(1, listed["part_count"] + 1) if n not in have]
        urls = restarted.post(f"/api/v1/videos/{video_id}/uploads/parts", json={"part_numbers": rest}).json()
        _put_parts(urls["parts"], data, listed["part_size"])
        completed = restarted.post(f"/api/v1/videos/{video_id}/uploads/complete")

    assert have == {1} and rest == [2, 3]
    assert completed.status_code == 202, completed.text
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    assert object_sha256(served.settings, key) == hashlib.sha256(data).hexdigest()


def test_completions_racing_each_other_start_one_job(served: Served) -> None:
    data = os.urandom(11 * MIB)
    announced = served.announce("ada", len(data)).json()
    video_id, upload = announced["video"]["id"], announced["upload"]
    _put_parts(upload["parts"], data, upload["part_size"])

    def complete() -> Any:
        with httpx.Client(base_url=served.server.url, timeout=120) as client:
            return client.post(f"/api/v1/videos/{video_id}/uploads/complete", headers=served.headers["ada"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: complete(), range(4)))

    assert [answer.status_code for answer in answers] == [202] * 4, [answer.text for answer in answers]
    assert len({answer.json()["job"]["id"] for answer in answers}) == 1
    with sync_session(served.settings.database_url) as session:
        jobs = session.scalars(select(Job.id).where(Job.video_id == uuid.UUID(video_id))).all()
    assert [str(job) for job in jobs] == [answers[0].json()["job"]["id"]]


def test_size_and_quota_errors_come_in_the_one_error_shape(served: Served) -> None:
    too_large = served.announce("quinn", 20 * 1024 * MIB + 1)
    first = served.announce("quinn", 3 * 1024 * MIB)
    over_quota = served.announce("quinn", 2 * 1024 * MIB)
    exempt = served.announce("cyd", 5 * 1024 * MIB)
    small = served.announce("quinn", 100).json()
    past_announced = served.http.put(
        f"/api/v1/videos/{small['video']['id']}/source", content=b"x" * 101, headers=served.headers["quinn"]
    )

    assert error_code(too_large, 413) == "upload.too_large"
    assert first.status_code == 201 and exempt.status_code == 201
    assert error_code(over_quota, 409) == "quota.bytes_exceeded"
    assert error_code(past_announced, 413) == "upload.too_large"


def test_a_retried_announcement_answers_with_the_same_video(served: Served) -> None:
    headers = {**served.headers["ada"], "Idempotency-Key": f"client-{uuid.uuid4()}"}

    first = served.http.post("/api/v1/videos", json=announcement(2000), headers=headers)
    second = served.http.post("/api/v1/videos", json=announcement(2000), headers=headers)
    reused = served.http.post("/api/v1/videos", json=announcement(3000), headers=headers)

    assert first.json()["video"]["id"] == second.json()["video"]["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert error_code(reused, 422) == "idempotency.key_reused"


def test_another_members_upload_answers_404(served: Served) -> None:
    announced = served.announce("ada", 11 * MIB).json()
    video_id = announced["video"]["id"]

    assert error_code(served.video("bob", video_id), 404) == "video.not_found"
    assert error_code(served.video("bob", video_id, "/uploads/parts"), 404) == "video.not_found"
    assert error_code(served.complete("bob", video_id), 404) == "video.not_found"
    assert served.video("cyd", video_id).status_code == 200


@pytest.mark.slow
def test_a_1_gib_source_streams_through_the_api_with_flat_memory(served: Served) -> None:
    block = os.urandom(MIB)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(GIB // MIB):
            digest.update(block)
            yield block

    # A small upload first, so every code path is loaded before memory is measured.
    warm = served.announce("ada", 1000).json()
    served.http.put(f"/api/v1/videos/{warm['video']['id']}/source", content=b"w" * 1000, headers=served.headers["ada"])
    announced = served.announce("ada", GIB).json()
    video_id = announced["video"]["id"]
    before = served.server.memory()["VmRSS"]
    served.server.reset_peak_memory()

    response = served.http.put(
        f"/api/v1/videos/{video_id}/source",
        content=body(),
        headers={**served.headers["ada"], "Content-Length": str(GIB)},
        timeout=600,
    )
    peak = served.server.memory()["VmHWM"]

    assert response.status_code == 202, response.text
    growth = peak - before
    sys.stderr.write(f"API memory: {before / MIB:.1f} MiB before, peak {peak / MIB:.1f} MiB (+{growth / MIB:.1f})\n")
    assert growth < MEMORY_GROWTH_LIMIT, f"the API grew by {growth / MIB:.1f} MiB while taking 1 GiB"
    # The bytes are random, so the job would only fail to probe them; spare the machine the work.
    served.http.post(f"/api/v1/jobs/{response.json()['job']['id']}/cancel", headers=served.headers["ada"])
    key = keys.source_key(uuid.UUID(video_id), "lecture.mp4")
    stored = asyncio.run(open_storage(served.settings).stat(key))
    assert stored is not None and stored.size == GIB
    if isinstance(open_storage(served.settings), LocalStorage):
        assert object_sha256(served.settings, key) == digest.hexdigest()
    asyncio.run(open_storage(served.settings).delete(key))


# The storage capabilities the routes stand on.


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    make_bucket(server.endpoint_url, bucket)
    return S3Storage(bucket, "tenant", endpoint_url=server.endpoint_url, region=REGION, path_style=True)


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_stream_larger_than_a_part_is_stored_unchanged(store: Storage) -> None:
    data = os.urandom(9 * MIB + 3)

    stored = _run(store.put_stream("videos/v1/source/original.mp4", _chunks(data)))

    assert stored.size == len(data) and stored.content_type == "video/mp4"
    assert _run(store.get_bytes("videos/v1/source/original.mp4", max_size=len(data))) == data


def test_a_stream_past_its_limit_stores_nothing_and_keeps_the_earlier_object(store: Storage) -> None:
    _run(store.put_bytes("videos/v1/source/original.mp4", b"earlier"))

    with pytest.raises(SizeLimitExceeded):
        _run(store.put_stream("videos/v1/source/original.mp4", _chunks(os.urandom(9 * MIB)), max_size=9 * MIB - 1))

    assert _run(store.get_bytes("videos/v1/source/original.mp4")) == b"earlier"


def test_an_empty_stream_stores_an_empty_object(store: Storage) -> None:
    assert _run(store.put_stream("videos/v1/empty.mp4", _chunks(b""))).size == 0


def test_multipart_parts_are_listed_replaced_and_joined_in_order(store: Storage) -> None:
    key = "videos/v2/source/original.mkv"
    first, second, last = os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE), os.urandom(10)

    async def scenario() -> bytes:
        upload_id = await store.create_multipart(key, "video/x-matroska")
        await store.upload_part(key, upload_id, 1, _chunks(os.urandom(MIN_PART_SIZE)), max_size=MIN_PART_SIZE)
        tags = [
            await store.upload_part(key, upload_id, number, _chunks(data), max_size=MIN_PART_SIZE)
            for number, data in ((1, first), (2, second), (3, last))
        ]
        listed = await store.list_parts(key, upload_id)
        assert [(p.part_number, p.size, p.etag) for p in listed] == [(t.part_number, t.size, t.etag) for t in tags]
        assert tags[0].etag == hashlib.md5(first).hexdigest()
        stored = await store.complete_multipart(key, upload_id, [PartTag(t.part_number, t.etag) for t in tags])
        assert stored.content_type == "video/x-matroska"
        with pytest.raises(NotFound):
            await store.list_parts(key, upload_id)
        return await store.get_bytes(key, max_size=3 * MIN_PART_SIZE)

    assert _run(scenario()) == first + second + last


@pytest.mark.parametrize(
    ("order", "code"),
    [("small", "storage.part_too_small"), ("etag", "storage.invalid_part"), ("order", "storage.invalid_part_order")],
)
def test_a_completion_that_s3_would_refuse_is_refused_on_both_stores(store: Storage, order: str, code: str) -> None:
    key = "videos/v3/source/original.mp4"

    async def scenario() -> None:
        upload_id = await store.create_multipart(key)
        size = 10 if order == "small" else MIN_PART_SIZE
        one = await store.upload_part(key, upload_id, 1, _chunks(os.urandom(size)), max_size=MIN_PART_SIZE)
        two = await store.upload_part(key, upload_id, 2, _chunks(b"end"), max_size=MIN_PART_SIZE)
        parts = {
            "small": [PartTag(1, one.etag), PartTag(2, two.etag)],
            "etag": [PartTag(1, "0" * 32), PartTag(2, two.etag)],
            "order": [PartTag(2, two.etag), PartTag(1, one.etag)],
        }[order]
        await store.complete_multipart(key, upload_id, parts)

    with pytest.raises(InvalidInput) as refused:
        _run(scenario())
    assert refused.value.code == code
    assert not _run(store.exists(key))


def test_a_part_past_its_limit_is_refused_and_an_aborted_upload_is_gone(store: Storage) -> None:
    key = "videos/v4/source/original.mp4"

    async def scenario() -> None:
        upload_id = await store.create_multipart(key)
        with pytest.raises(SizeLimitExceeded):
            await store.upload_part(key, upload_id, 1, _chunks(os.urandom(MIN_PART_SIZE + 1)), max_size=MIN_PART_SIZE)
        assert await store.list_parts(key, upload_id) == []
        await store.abort_multipart(key, upload_id)
        await store.abort_multipart(key, upload_id)
        with pytest.raises(NotFound):
            await store.list_parts(key, upload_id)
        with pytest.raises(NotFound):
            await store.complete_multipart(key, upload_id, [PartTag(1, "0" * 32)])
        if isinstance(store, LocalStorage):
            # moto answers a part for an aborted upload with a 500 where S3 says NoSuchUpload.
            with pytest.raises(NotFound):
                await store.upload_part(key, upload_id, 1, _chunks(b"late"), max_size=MIN_PART_SIZE)

    _run(scenario())


def test_presigned_urls_move_bytes_to_and_from_s3_over_plain_http(store: Storage) -> None:
    if isinstance(store, LocalStorage):
        assert store.presign_put("videos/v5/a.mp4", content_type="video/mp4", expires_in=60) is None
        assert store.presign_get("videos/v5/a.mp4", expires_in=60) is None
        return
    key = "videos/v5/source/original.mp4"

    put = httpx.put(
        store.presign_put(key, content_type="video/mp4", expires_in=60) or "",
        content=b"lecture bytes",
        headers={"Content-Type": "video/mp4"},
    )
    got = httpx.get(store.presign_get(key, expires_in=60) or "")

    assert put.status_code == 200 and put.headers["etag"].strip('"') == hashlib.md5(b"lecture bytes").hexdigest()
    assert got.status_code == 200 and got.content == b"lecture bytes"
    stored = _run(store.stat(key))
    assert stored is not None and stored.content_type == "video/mp4"


def test_the_local_store_refuses_upload_ids_it_did_not_make_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "objects")
    key = "videos/v6/source/original.mp4"

    async def scenario() -> None:
        for foreign in ("../../../etc", "ABC", ""):
            with pytest.raises(NotFound):
                await store.list_parts(key, foreign)
        upload_id = await store.create_multipart(key)
        with pytest.raises(NotFound):
            await store.list_parts("videos/other/source/original.mp4", upload_id)
        part = await store.upload_part(key, upload_id, 1, _chunks(b"only part"), max_size=100)
        await store.complete_multipart(key, upload_id, [PartTag(1, part.etag)])

    _run(scenario())
    leftovers = [p for p in (tmp_path / "objects" / TMP_DIR_NAME).rglob("*") if p.is_file()]
    assert leftovers == []
    assert (tmp_path / "objects" / key).read_bytes() == b"only part"
