"""The storage contract, run against the local folder and against S3 (a moto server over HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from pipeline.errors import ConfigurationError, InvalidInput, ObjectMissing, StorageUnavailable
from pipeline.settings import Settings
from pipeline.storage import LocalStorage, Storage, open_storage
from pipeline.storage.local import TMP_DIR_NAME
from pipeline.storage.s3 import S3Storage
from tests.s3server import REGION, S3Server, make_bucket

MIB = 2**20
S3_PREFIX = "tenant/objects"

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside.txt",
    "videos/../../outside.txt",
    "videos/./poster.jpg",
    "videos//poster.jpg",
    "videos/",
    "videos\\poster.jpg",
    "videos/poster\x00.jpg",
    "videos/line\nbreak.jpg",
    "x" * 1025,
]


@pytest.fixture
def s3_endpoint(s3_server: S3Server) -> str:
    """The suite's moto server (credentials are faked for the whole session in conftest)."""
    return s3_server.endpoint_url


def _s3_settings(tmp_path: Path, endpoint: str, bucket: str) -> Settings:
    return Settings.from_env(
        {
            "VIDPIPE_DATA_DIR": str(tmp_path),
            "VIDPIPE_STORAGE_URL": f"s3://{bucket}/{S3_PREFIX}",
            "VIDPIPE_S3_ENDPOINT_URL": endpoint,
            "VIDPIPE_S3_REGION": REGION,
            "VIDPIPE_S3_PATH_STYLE": "true",
        }
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each backend, built by the factory from settings; S3 gets a fresh bucket per test."""
    if request.param == "local":
        env = {"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_STORAGE_URL": (tmp_path / "objects").as_uri()}
        return open_storage(Settings.from_env(env))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    make_bucket(endpoint, bucket)
    return open_storage(_s3_settings(tmp_path, endpoint, bucket))


@pytest.fixture
def s3_storage(s3_endpoint: str, tmp_path: Path) -> S3Storage:
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    make_bucket(s3_endpoint, bucket)
    storage = open_storage(_s3_settings(tmp_path, s3_endpoint, bucket))
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "objects")


def _random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# The contract: every backend behaves the same.


def test_put_bytes_then_get_bytes_returns_the_same_bytes(storage: Storage) -> None:
    asyncio.run(storage.put_bytes("videos/v1/meta.json", b'{"title": "Lecture 1"}'))

    assert asyncio.run(storage.get_bytes("videos/v1/meta.json")) == b'{"title": "Lecture 1"}'


def test_put_returns_what_stat_reports_with_a_utc_modification_time(storage: Storage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)

    stored = asyncio.run(storage.put_bytes("videos/v1/poster.jpg", b"\xff\xd8jpeg"))
    described = asyncio.run(storage.stat("videos/v1/poster.jpg"))

    assert described == stored
    assert stored.key == "videos/v1/poster.jpg"
    assert stored.size == 6
    assert stored.etag
    assert stored.content_type == "image/jpeg"
    assert stored.modified is not None
    assert stored.modified.tzinfo is not None and stored.modified.utcoffset() == timedelta(0)
    assert before <= stored.modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_putting_again_replaces_the_object_and_changes_its_etag(storage: Storage) -> None:
    first = asyncio.run(storage.put_bytes("videos/v1/cues.vtt", b"WEBVTT\n\nfirst"))
    second = asyncio.run(storage.put_bytes("videos/v1/cues.vtt", b"WEBVTT\n\nnext!"))

    assert asyncio.run(storage.get_bytes("videos/v1/cues.vtt")) == b"WEBVTT\n\nnext!"
    assert second.etag != first.etag


def test_exists_is_false_until_an_object_is_put(storage: Storage) -> None:
    assert asyncio.run(storage.exists("videos/v1/source.mp4")) is False

    asyncio.run(storage.put_bytes("videos/v1/source.mp4", b"mp4"))

    assert asyncio.run(storage.exists("videos/v1/source.mp4")) is True
    assert asyncio.run(storage.exists("videos/v1")) is False


def test_list_returns_keys_starting_with_the_prefix_sorted_by_key(storage: Storage) -> None:
    async def scenario() -> None:
        for key in ("videos/b/z.jpg", "videos/ab/y.jpg", "videos/a/x.jpg", "videos/a/sub/w.jpg", "other.txt"):
            await storage.put_bytes(key, key.encode())

        assert [s.key for s in await storage.list("videos/a")] == [
            "videos/a/sub/w.jpg",
            "videos/a/x.jpg",
            "videos/ab/y.jpg",
        ]
        assert [s.key for s in await storage.list("videos/a/")] == ["videos/a/sub/w.jpg", "videos/a/x.jpg"]
        everything = [s.key for s in await storage.list("")]
        assert everything[0] == "other.txt"
        assert len(everything) == 5
        assert await storage.list("nothing/") == []
        listed = (await storage.list("videos/b/"))[0]
        assert listed.size == len(b"videos/b/z.jpg")
        assert listed.modified is not None

    asyncio.run(scenario())


def test_delete_removes_the_object_and_deleting_a_missing_key_is_fine(storage: Storage) -> None:
    async def scenario() -> None:
        await storage.put_bytes("videos/v1/poster.jpg", b"jpeg")
        await storage.delete("videos/v1/poster.jpg")
        assert await storage.stat("videos/v1/poster.jpg") is None
        await storage.delete("videos/v1/poster.jpg")
        await storage.delete("never/was/there.jpg")

    asyncio.run(scenario())


def test_delete_prefix_removes_only_matching_objects_and_counts_them(storage: Storage) -> None:
    async def scenario() -> None:
        for key in ("videos/v1/a.jpg", "videos/v1/thumbs/b.jpg", "videos/v10/c.jpg", "videos/v2/d.jpg"):
            await storage.put_bytes(key, b"x")

        assert await storage.delete_prefix("videos/v1/") == 2
        assert [s.key for s in await storage.list("")] == ["videos/v10/c.jpg", "videos/v2/d.jpg"]
        assert await storage.delete_prefix("videos/v1/") == 0

    asyncio.run(scenario())


def test_delete_prefix_refuses_the_empty_prefix(storage: Storage) -> None:
    asyncio.run(storage.put_bytes("keep.txt", b"x"))

    with pytest.raises(InvalidInput):
        asyncio.run(storage.delete_prefix(""))
    assert asyncio.run(storage.exists("keep.txt"))


def test_put_file_and_download_stream_a_file_larger_than_a_chunk_unchanged(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "lecture.mp4"
    expected = _random_file(source, 5 * MIB + 123)
    dest = tmp_path / "out" / "nested" / "copy.mp4"

    stored = asyncio.run(storage.put_file("videos/v1/source.mp4", source))
    asyncio.run(storage.download("videos/v1/source.mp4", dest))

    assert stored.size == 5 * MIB + 123
    assert stored.content_type == "video/mp4"
    assert _sha256(dest) == expected
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.mp4"]


def test_local_path_gives_a_readable_file_with_the_key_suffix(storage: Storage) -> None:
    async def scenario() -> Path:
        await storage.put_bytes("videos/v1/subs/한국어.vtt", b"WEBVTT\n")
        async with storage.local_path("videos/v1/subs/한국어.vtt") as path:
            assert path.read_bytes() == b"WEBVTT\n"
            assert path.suffix == ".vtt"
        return path

    path = asyncio.run(scenario())

    if isinstance(storage, LocalStorage):
        assert path.exists(), "the local store lends the stored file itself"
    else:
        assert not path.exists(), "the S3 download is a temporary file"
        assert not path.parent.exists()


def test_iter_chunks_streams_the_object_in_pieces_of_at_most_chunk_size(storage: Storage) -> None:
    data = os.urandom(300_000)

    async def scenario() -> list[bytes]:
        await storage.put_bytes("videos/v1/blob.bin", data)
        return [chunk async for chunk in storage.iter_chunks("videos/v1/blob.bin", chunk_size=64 * 1024)]

    chunks = asyncio.run(scenario())

    assert b"".join(chunks) == data
    assert len(chunks) >= 5
    assert all(0 < len(chunk) <= 64 * 1024 for chunk in chunks)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_rejected_before_the_store_is_touched(storage: Storage, key: str) -> None:
    async def scenario() -> None:
        for attempt in (
            storage.put_bytes(key, b"x"),
            storage.get_bytes(key),
            storage.stat(key),
            storage.delete(key),
            storage.download(key, Path("/nonexistent/never-written")),
        ):
            with pytest.raises(InvalidInput):
                await attempt
        with pytest.raises(InvalidInput):
            async with storage.local_path(key):
                pass
        with pytest.raises(InvalidInput):
            async for _ in storage.iter_chunks(key):
                pass

    asyncio.run(scenario())
    assert asyncio.run(storage.list("")) == []


@pytest.mark.parametrize("prefix", ["/videos", "../", "videos/../x/", "a//b"])
def test_invalid_prefixes_are_rejected(storage: Storage, prefix: str) -> None:
    with pytest.raises(InvalidInput):
        asyncio.run(storage.list(prefix))
    with pytest.raises(InvalidInput):
        asyncio.run(storage.delete_prefix(prefix))


def test_a_missing_key_raises_object_missing_and_stat_returns_none(storage: Storage, tmp_path: Path) -> None:
    async def scenario() -> None:
        assert await storage.stat("videos/none.mp4") is None
        with pytest.raises(ObjectMissing):
            await storage.get_bytes("videos/none.mp4")
        with pytest.raises(ObjectMissing):
            await storage.download("videos/none.mp4", tmp_path / "none.mp4")
        with pytest.raises(ObjectMissing):
            async with storage.local_path("videos/none.mp4"):
                pass
        with pytest.raises(ObjectMissing):
            async for _ in storage.iter_chunks("videos/none.mp4"):
                pass

    asyncio.run(scenario())
    assert not (tmp_path / "none.mp4").exists()


def test_korean_characters_in_a_key_work_everywhere(storage: Storage, tmp_path: Path) -> None:
    key = "videos/강의 1/자막/한국어 자막.ko.vtt"

    async def scenario() -> None:
        stored = await storage.put_bytes(key, "WEBVTT\n\n00:00.000 --> 00:01.000\n안녕하세요\n".encode())
        assert stored.key == key
        assert [s.key for s in await storage.list("videos/강의 1/")] == [key]
        assert (await storage.get_bytes(key)).decode().endswith("안녕하세요\n")
        await storage.download(key, tmp_path / "다운로드.vtt")
        assert await storage.delete_prefix("videos/강의") == 1

    asyncio.run(scenario())
    assert "%EA%B0%95" in storage.uri(key) or "강의" in storage.uri(key)


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("v/source.mp4", "video/mp4"),
        ("v/source.MKV", "video/x-matroska"),
        ("v/source.webm", "video/webm"),
        ("v/source.mov", "video/quicktime"),
        ("v/poster.jpg", "image/jpeg"),
        ("v/poster.webp", "image/webp"),
        ("v/storyboard.vtt", "text/vtt; charset=utf-8"),
        ("v/original.srt", "application/x-subrip"),
        ("v/meta.json", "application/json"),
        ("v/no-suffix", "application/octet-stream"),
    ],
)
def test_content_type_is_guessed_from_the_key_suffix(storage: Storage, key: str, content_type: str) -> None:
    stored = asyncio.run(storage.put_bytes(key, b"x"))

    assert stored.content_type == content_type
    described = asyncio.run(storage.stat(key))
    assert described is not None and described.content_type == content_type


def test_an_explicit_content_type_is_stored(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "upload"
    source.write_bytes(b"\x1aE\xdf\xa3")

    asyncio.run(storage.put_file("videos/v1/source", source, content_type="video/x-matroska"))
    asyncio.run(storage.put_bytes("videos/v1/track", b"WEBVTT\n", content_type="text/vtt; charset=utf-8"))

    described = asyncio.run(storage.stat("videos/v1/source"))
    assert described is not None and described.content_type == "video/x-matroska"
    described = asyncio.run(storage.stat("videos/v1/track"))
    assert described is not None and described.content_type == "text/vtt; charset=utf-8"


def test_copy_keeps_the_bytes_and_content_type_replaces_the_target_and_leaves_the_source(storage: Storage) -> None:
    asyncio.run(storage.put_bytes("incoming/lecture.ko.vtt", b"WEBVTT\n\n1", content_type="text/vtt; charset=utf-8"))
    asyncio.run(storage.put_bytes("processed/lecture.ko.vtt", b"an older file"))

    copied = asyncio.run(storage.copy("incoming/lecture.ko.vtt", "processed/lecture.ko.vtt"))

    assert copied.key == "processed/lecture.ko.vtt" and copied.size == len(b"WEBVTT\n\n1")
    assert asyncio.run(storage.get_bytes("processed/lecture.ko.vtt")) == b"WEBVTT\n\n1"
    described = asyncio.run(storage.stat("processed/lecture.ko.vtt"))
    assert described is not None and described.content_type == "text/vtt; charset=utf-8"
    assert asyncio.run(storage.get_bytes("incoming/lecture.ko.vtt")) == b"WEBVTT\n\n1"
    with pytest.raises(ObjectMissing):
        asyncio.run(storage.copy("incoming/gone.mp4", "processed/gone.mp4"))
    assert not asyncio.run(storage.exists("processed/gone.mp4"))


def test_get_bytes_refuses_an_object_larger_than_max_size(storage: Storage) -> None:
    asyncio.run(storage.put_bytes("videos/v1/big.json", b"x" * 1001))

    assert asyncio.run(storage.get_bytes("videos/v1/big.json", max_size=1001)) == b"x" * 1001
    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        asyncio.run(storage.get_bytes("videos/v1/big.json", max_size=1000))


def test_check_passes_for_a_store_that_exists(storage: Storage) -> None:
    asyncio.run(storage.check())


def test_uri_and_description_name_the_store(storage: Storage) -> None:
    uri = storage.uri("videos/v1/poster.jpg")

    if isinstance(storage, LocalStorage):
        assert uri == (storage.root / "videos/v1/poster.jpg").as_uri()
        assert storage.description == f"local folder {storage.root}"
    else:
        assert uri.startswith("s3://test-") and uri.endswith(f"/{S3_PREFIX}/videos/v1/poster.jpg")
        assert storage.description.startswith("s3://test-")
        assert "testing" not in storage.description


# The local folder.


def test_local_writes_leave_no_temporary_files_and_the_temp_folder_is_not_listed(
    local_storage: LocalStorage, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    _random_file(source, 3 * MIB)

    asyncio.run(local_storage.put_file("videos/v1/source.mp4", source))
    asyncio.run(local_storage.put_bytes("videos/v1/poster.jpg", b"jpeg"))

    assert list((local_storage.root / TMP_DIR_NAME).iterdir()) == []
    assert [s.key for s in asyncio.run(local_storage.list(""))] == [
        "videos/v1/poster.jpg",
        "videos/v1/source.mp4",
    ]
    assert (local_storage.root / "videos" / "v1" / "source.mp4").stat().st_mode & 0o777 == 0o644


def test_local_failed_write_keeps_the_previous_object(local_storage: LocalStorage, tmp_path: Path) -> None:
    asyncio.run(local_storage.put_bytes("videos/v1/source.mp4", b"old"))

    with pytest.raises(FileNotFoundError):
        asyncio.run(local_storage.put_file("videos/v1/source.mp4", tmp_path / "missing.mp4"))

    assert asyncio.run(local_storage.get_bytes("videos/v1/source.mp4")) == b"old"


def test_local_keys_inside_the_reserved_temp_folder_are_rejected(local_storage: LocalStorage) -> None:
    with pytest.raises(InvalidInput, match="reserves"):
        asyncio.run(local_storage.put_bytes(f"{TMP_DIR_NAME}/x.jpg", b"x"))


def test_local_delete_removes_folders_left_empty(local_storage: LocalStorage) -> None:
    asyncio.run(local_storage.put_bytes("videos/v1/thumbs/a.jpg", b"x"))
    asyncio.run(local_storage.put_bytes("videos/v2/b.jpg", b"x"))

    asyncio.run(local_storage.delete("videos/v1/thumbs/a.jpg"))

    assert not (local_storage.root / "videos" / "v1").exists()
    assert (local_storage.root / "videos" / "v2" / "b.jpg").exists()


def test_local_check_creates_a_missing_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "new" / "objects")

    asyncio.run(storage.check())

    assert storage.root.is_dir()


def test_local_check_of_a_path_that_is_a_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "objects").write_text("not a folder")

    with pytest.raises(ConfigurationError, match="objects"):
        asyncio.run(LocalStorage(tmp_path / "objects").check())


@pytest.mark.parametrize("url", ["file://server/share/objects", "file:relative/objects"])
def test_a_file_url_that_is_not_a_local_absolute_folder_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    settings = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_STORAGE_URL": url})

    with pytest.raises(ConfigurationError):
        open_storage(settings)


# S3 only.


def test_s3_keys_are_stored_below_the_url_prefix(s3_storage: S3Storage, s3_endpoint: str) -> None:
    asyncio.run(s3_storage.put_bytes("videos/v1/poster.jpg", b"jpeg"))

    raw = boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION, config=Config(s3={"addressing_style": "path"})
    )
    listed = raw.list_objects_v2(Bucket=s3_storage.bucket)
    assert [item["Key"] for item in listed["Contents"]] == [f"{S3_PREFIX}/videos/v1/poster.jpg"]
    head = raw.head_object(Bucket=s3_storage.bucket, Key=f"{S3_PREFIX}/videos/v1/poster.jpg")
    assert head["ContentType"] == "image/jpeg"


def test_s3_large_upload_goes_through_multipart_and_downloads_unchanged(s3_storage: S3Storage, tmp_path: Path) -> None:
    source = tmp_path / "long-lecture.mp4"
    expected = _random_file(source, 20 * MIB)

    stored = asyncio.run(s3_storage.put_file("videos/v1/source.mp4", source))
    asyncio.run(s3_storage.download("videos/v1/source.mp4", tmp_path / "back.mp4"))

    assert stored.size == 20 * MIB
    # S3 gives a multipart object the ETag "<hash>-<number of parts>".
    assert stored.etag is not None and stored.etag.endswith("-3")
    assert stored.content_type == "video/mp4"
    assert _sha256(tmp_path / "back.mp4") == expected


def test_s3_copies_a_large_object_on_the_server_in_parts(s3_storage: S3Storage, tmp_path: Path) -> None:
    source = tmp_path / "long-lecture.mkv"
    expected = _random_file(source, 20 * MIB)
    asyncio.run(s3_storage.put_file("incoming/long-lecture.mkv", source, content_type="video/x-matroska"))

    copied = asyncio.run(s3_storage.copy("incoming/long-lecture.mkv", "processed/long-lecture.mkv"))
    asyncio.run(s3_storage.download("processed/long-lecture.mkv", tmp_path / "back.mkv"))

    assert copied.size == 20 * MIB
    # A copy made by UploadPartCopy has a multipart ETag: the bytes never left the store.
    assert copied.etag is not None and copied.etag.endswith("-3")
    assert copied.content_type == "video/x-matroska"
    assert _sha256(tmp_path / "back.mkv") == expected


def test_s3_unreachable_endpoint_raises_storage_unavailable_within_seconds(s3_endpoint: str) -> None:
    storage = S3Storage("any-bucket", endpoint_url="http://127.0.0.1:9", path_style=True)

    for attempt in (
        storage.check,
        lambda: storage.put_bytes("a.txt", b"x"),
        lambda: storage.get_bytes("a.txt"),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1:9\b"):
            asyncio.run(attempt())
        assert time.monotonic() - started < 5


def test_s3_check_of_a_missing_bucket_is_a_configuration_error_naming_it(s3_endpoint: str) -> None:
    storage = S3Storage("no-such-bucket-here", endpoint_url=s3_endpoint, path_style=True)

    with pytest.raises(ConfigurationError, match="'no-such-bucket-here' does not exist"):
        asyncio.run(storage.check())


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("InternalError", 500), ("Throttling", 400), ("RequestTimeout", 400), ("", 502)],
)
def test_s3_throttling_and_server_errors_are_storage_unavailable(s3_storage: S3Storage, code: str, status: int) -> None:
    with Stubber(s3_storage._client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(StorageUnavailable):
            asyncio.run(s3_storage.get_bytes("videos/v1/meta.json"))


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("NoSuchBucket", 404),
    ],
)
def test_s3_rejected_credentials_and_missing_buckets_are_configuration_errors(
    s3_storage: S3Storage, code: str, status: int
) -> None:
    with Stubber(s3_storage._client) as stub:
        stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
        with pytest.raises(ConfigurationError, match=s3_storage.bucket):
            asyncio.run(s3_storage.put_bytes("videos/v1/meta.json", b"{}"))


def test_s3_without_any_credentials_is_a_configuration_error(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage("any-bucket", endpoint_url=s3_endpoint, path_style=True)

    with pytest.raises(ConfigurationError, match="credentials"):
        asyncio.run(storage.check())


def test_s3_description_leaves_out_credentials_in_the_endpoint() -> None:
    storage = S3Storage("media", "vidpipe", endpoint_url="http://admin:hunter2@127.0.0.1:9000", path_style=True)

    assert storage.description == "s3://media/vidpipe at http://127.0.0.1:9000"
