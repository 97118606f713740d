"""The drop-folder scanner: files dropped in a local folder or an S3 prefix become videos once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import select

from pipeline.cli.progress import wait_for_job
from pipeline.db.models import SubtitleTrack, User, Video
from pipeline.dropfolder import Drop, DropScanner, DropStatus, ScanReport
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from tests import mediagen
from tests.conftest import Backend, embedded_env
from tests.harness import open_pipeline, report, with_runtime
from tests.s3server import S3Server

SETTLE_SECONDS = 2.0
TODAY = datetime.now(UTC).date().isoformat()


@dataclass
class Clock:
    """The scanner's clock: real time plus an offset a test moves forward instead of sleeping."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float = SETTLE_SECONDS + 1) -> None:
        self.offset += timedelta(seconds=seconds)


class DropLocation:
    """Puts files where a content team would drop them, and lists what is there."""

    def put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def listing(self) -> list[str]:
        raise NotImplementedError

    def get(self, name: str) -> bytes:
        raise NotImplementedError

    def put_file(self, name: str, source: Path) -> None:
        self.put(name, source.read_bytes())

    def pending(self) -> list[str]:
        return [key for key in self.listing() if key.split("/")[0] not in ("processed", "rejected", "duplicates")]


class FolderLocation(DropLocation):
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def append(self, name: str, data: bytes) -> None:
        with (self.root / name).open("ab") as handle:
            handle.write(data)

    def listing(self) -> list[str]:
        if not self.root.exists():
            return []
        found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(key for key in found if not key.startswith(".vidpipe-tmp/"))

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class BucketLocation(DropLocation):
    def __init__(self, endpoint_url: str, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
        )

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=data)

    def listing(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/")
        return sorted(item["Key"][len(self.prefix) + 1 :] for item in listing.get("Contents", []))

    def get(self, name: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}")["Body"].read())


@dataclass
class Setup:
    settings: Settings
    location: DropLocation


@pytest.fixture(params=["folder", "s3"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    """The embedded pipeline with its drop location in a local folder, then under an S3 prefix."""
    env = {**embedded_env(tmp_path), "VIDPIPE_INGEST_SETTLE_MS": str(int(SETTLE_SECONDS * 1000))}
    if request.param == "folder":
        settings = Settings.from_env(env).with_secret()
        return Setup(settings, FolderLocation(settings.data_dir / "incoming"))
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    env.update(
        VIDPIPE_INGEST_URL=f"s3://{bucket}/incoming",
        VIDPIPE_S3_ENDPOINT_URL=server.endpoint_url,
        VIDPIPE_S3_PATH_STYLE="true",
        VIDPIPE_S3_REGION="us-east-1",
    )
    return Setup(Settings.from_env(env).with_secret(), BucketLocation(server.endpoint_url, bucket, "incoming"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mediagen.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", duration=1.0)


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mediagen.make_video(tmp_path_factory.mktemp("media") / "other.mp4", duration=1.5)


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()


async def scan_once(runtime: Runtime, clock: Clock) -> ScanReport:
    scanner = DropScanner.from_runtime(runtime)
    scanner._clock = clock
    return await scanner.scan_once()


async def videos(runtime: Runtime) -> list[Video]:
    async with runtime.database.sessions() as session:
        return list(await session.scalars(select(Video).order_by(Video.created_at)))


async def drops(runtime: Runtime) -> list[Drop]:
    async with runtime.database.sessions() as session:
        return list(await session.scalars(select(Drop).order_by(Drop.first_seen_at)))


def counts(result: ScanReport) -> dict[str, int]:
    return {name: value for name, value in result.to_json().items() if name != "jobs" and value}


def run_scenario(settings: Settings, scenario: Any, *, workers: bool = False) -> Any:
    with open_pipeline(settings, start_workers=workers) as pipeline:
        return with_runtime(pipeline, scenario)


def test_a_new_file_settles_then_is_submitted_once_and_leaves_the_pending_area(
    setup: Setup, clock: Clock, clip: Path
) -> None:
    setup.location.put_file("lecture.mp4", clip)

    async def scenario(runtime: Runtime) -> tuple[list[ScanReport], list[Video]]:
        first = await scan_once(runtime, clock)
        clock.advance()
        second = await scan_once(runtime, clock)
        clock.advance()
        third = await scan_once(runtime, clock)
        return [first, second, third], await videos(runtime)

    (first, second, third), made = run_scenario(setup.settings, scenario)

    assert counts(first) == {"new": 1, "settling": 1}
    assert counts(second) == {"submitted": 1}
    assert counts(third) == {}
    assert [(v.title, v.source_filename) for v in made] == [("lecture", "lecture.mp4")]
    assert len(second.jobs) == 1
    assert setup.location.pending() == []
    assert setup.location.listing() == [f"processed/{TODAY}/lecture.mp4"]
    assert setup.location.get(f"processed/{TODAY}/lecture.mp4") == clip.read_bytes()


def test_a_growing_file_is_not_taken_until_it_stops_changing(tmp_path: Path, clock: Clock, clip: Path) -> None:
    env = {**embedded_env(tmp_path), "VIDPIPE_INGEST_SETTLE_MS": str(int(SETTLE_SECONDS * 1000))}
    settings = Settings.from_env(env).with_secret()
    location = FolderLocation(settings.data_dir / "incoming")
    data = clip.read_bytes()
    pieces = [data[i : i + len(data) // 4 + 1] for i in range(0, len(data), len(data) // 4 + 1)]

    async def scenario(runtime: Runtime) -> tuple[list[ScanReport], ScanReport, list[Video]]:
        location.put("lecture.mp4", pieces[0])
        while_growing = [await scan_once(runtime, clock)]
        for piece in pieces[1:]:
            location.append("lecture.mp4", piece)
            while_growing.append(await scan_once(runtime, clock))
        clock.advance()
        return while_growing, await scan_once(runtime, clock), await videos(runtime)

    while_growing, settled, made = run_scenario(settings, scenario)

    assert all(result.submitted == 0 and result.settling == 1 for result in while_growing)
    assert settled.submitted == 1
    assert [video.source_filename for video in made] == ["lecture.mp4"]
    assert location.get(f"processed/{TODAY}/lecture.mp4") == data


def test_sidecar_subtitles_and_metadata_attach_to_the_video(setup: Setup, clock: Clock, clip: Path) -> None:
    metadata = {
        "title": "선형대수 1강",
        "description": "Eigenvalues",
        "language": "ko",
        "owner": "kim",
        "poster_at": 0.5,
    }
    setup.location.put_file("course/lecture.mp4", clip)
    setup.location.put("course/lecture.json", json.dumps(metadata, ensure_ascii=False).encode())
    setup.location.put("course/lecture.ko.vtt", "WEBVTT\n\n00:00.000 --> 00:00.900\n고유값\n".encode())
    setup.location.put("course/lecture.en.srt", b"1\n00:00:00,000 --> 00:00:00,900\nEigenvalue\n")
    setup.location.put("course/unrelated.txt", b"left alone")

    async def scenario(runtime: Runtime) -> tuple[ScanReport, Video, list[SubtitleTrack], uuid.UUID]:
        async with runtime.database.sessions() as session:
            user = User(email="kim@example.org", username="kim", password_hash="x")
            session.add(user)
            await session.commit()
        await scan_once(runtime, clock)
        clock.advance()
        result = await scan_once(runtime, clock)
        (video,) = await videos(runtime)
        async with runtime.database.sessions() as session:
            tracks = list(await session.scalars(select(SubtitleTrack).where(SubtitleTrack.video_id == video.id)))
        return result, video, tracks, user.id

    result, video, tracks, user_id = run_scenario(setup.settings, scenario)

    assert counts(result) == {"submitted": 1}
    assert (video.title, video.description, video.language, video.poster_at) == (
        "선형대수 1강",
        "Eigenvalues",
        "ko",
        0.5,
    )
    assert video.owner_id == user_id
    assert video.ingest_notes is None
    assert sorted((track.language, track.filename) for track in tracks) == [
        ("en", "lecture.en.srt"),
        ("ko", "lecture.ko.vtt"),
    ]
    assert setup.location.pending() == ["course/unrelated.txt"]
    folder = f"processed/{TODAY}/course"
    assert set(setup.location.listing()) >= {f"{folder}/lecture.{ext}" for ext in ("mp4", "json", "ko.vtt", "en.srt")}


def test_an_unreadable_metadata_sidecar_is_noted_on_the_video_which_still_goes_through(
    setup: Setup, clock: Clock, clip: Path
) -> None:
    setup.location.put_file("lecture.mp4", clip)
    setup.location.put("lecture.json", b'{"title": "unterminated')
    setup.location.put("lecture.ko.srt", "1\n00:00:00,000 --> 00:00:01,000\n안녕\n".encode("utf-16-le"))

    async def scenario(runtime: Runtime) -> tuple[ScanReport, Video, list[SubtitleTrack]]:
        clock.advance()
        result = await scan_once(runtime, clock)
        (video,) = await videos(runtime)
        async with runtime.database.sessions() as session:
            tracks = list(await session.scalars(select(SubtitleTrack).where(SubtitleTrack.video_id == video.id)))
        return result, video, tracks

    result, video, tracks = run_scenario(setup.settings, scenario)

    assert result.submitted == 1 and result.sidecar_problems == 1
    assert video.title == "lecture"
    assert video.ingest_notes and "lecture.json is not valid JSON" in video.ingest_notes[0]
    # An odd subtitle file is handed on: the subtitles stage judges it and fails only that track.
    assert [(track.language, track.filename) for track in tracks] == [("ko", "lecture.ko.srt")]


def test_an_unknown_owner_and_a_bad_language_are_noted_and_ignored(setup: Setup, clock: Clock, clip: Path) -> None:
    setup.location.put_file("lecture.mp4", clip)
    setup.location.put("lecture.json", json.dumps({"owner": "nobody", "language": "not a tag!"}).encode())

    async def scenario(runtime: Runtime) -> Video:
        clock.advance()
        await scan_once(runtime, clock)
        (video,) = await videos(runtime)
        return video

    video = run_scenario(setup.settings, scenario)

    assert video.owner_id is None and video.language is None
    assert video.ingest_notes is not None and len(video.ingest_notes) == 2


def test_the_same_content_dropped_again_under_another_name_is_a_duplicate(
    setup: Setup, clock: Clock, clip: Path
) -> None:
    async def scenario(runtime: Runtime) -> tuple[ScanReport, list[Video], list[Drop]]:
        setup.location.put_file("monday.mp4", clip)
        clock.advance()
        await scan_once(runtime, clock)
        setup.location.put_file("tuesday.mp4", clip)
        clock.advance()
        result = await scan_once(runtime, clock)
        return result, await videos(runtime), await drops(runtime)

    result, made, seen = run_scenario(setup.settings, scenario)

    assert counts(result) == {"new": 1, "duplicates": 1}
    assert [video.source_filename for video in made] == ["monday.mp4"]
    assert [(drop.key, drop.status) for drop in seen] == [
        ("monday.mp4", DropStatus.SUBMITTED),
        ("tuesday.mp4", DropStatus.DUPLICATE),
    ]
    assert seen[1].video_id == made[0].id and seen[1].sha256 == seen[0].sha256 is not None
    assert setup.location.pending() == []
    assert f"duplicates/{TODAY}/tuesday.mp4" in setup.location.listing()
    assert b"already taken" in setup.location.get(f"duplicates/{TODAY}/tuesday.mp4.error.txt")


def test_two_names_with_the_same_content_in_one_pass_make_one_video(setup: Setup, clock: Clock, clip: Path) -> None:
    setup.location.put_file("a.mp4", clip)
    setup.location.put_file("b.mp4", clip)

    async def scenario(runtime: Runtime) -> tuple[ScanReport, list[Video]]:
        clock.advance()
        return await scan_once(runtime, clock), await videos(runtime)

    result, made = run_scenario(setup.settings, scenario)

    assert (result.submitted, result.duplicates) == (1, 1)
    assert len(made) == 1


def test_the_same_file_scanned_many_times_by_two_scanners_at_once_makes_one_video(
    setup: Setup, clock: Clock, clip: Path, other_clip: Path
) -> None:
    setup.location.put_file("lecture.mp4", clip)
    setup.location.put_file("seminar.mp4", other_clip)

    async def scenario(runtime: Runtime) -> tuple[list[ScanReport], list[Video]]:
        results: list[ScanReport] = []
        for _ in range(4):
            clock.advance()
            results.extend(await asyncio.gather(scan_once(runtime, clock), scan_once(runtime, clock)))
        return results, await videos(runtime)

    results, made = run_scenario(setup.settings, scenario)

    assert sum(result.submitted for result in results) == 2
    assert sum(result.errors for result in results) == 0
    assert sorted(video.source_filename for video in made) == ["lecture.mp4", "seminar.mp4"]


def test_an_empty_file_is_rejected_with_its_reason_beside_it(setup: Setup, clock: Clock) -> None:
    setup.location.put("empty.mp4", b"")

    async def scenario(runtime: Runtime) -> tuple[ScanReport, ScanReport, list[Video], list[Drop]]:
        clock.advance()
        first = await scan_once(runtime, clock)
        clock.advance()
        again = await scan_once(runtime, clock)
        return first, again, await videos(runtime), await drops(runtime)

    first, again, made, (drop,) = run_scenario(setup.settings, scenario)

    assert counts(first) == {"new": 1, "rejected": 1}
    assert counts(again) == {}
    assert made == []
    assert (drop.status, drop.error_code) == (DropStatus.REJECTED, "input.empty_file")
    assert drop.moved_to == f"rejected/{TODAY}/empty.mp4"
    assert setup.location.pending() == []
    assert b"empty (0 bytes)" in setup.location.get(f"rejected/{TODAY}/empty.mp4.error.txt")


def test_a_finished_drop_whose_filing_was_interrupted_is_filed_on_the_next_pass(
    setup: Setup, clock: Clock, clip: Path
) -> None:
    setup.location.put_file("lecture.mp4", clip)

    async def scenario(runtime: Runtime) -> tuple[ScanReport, list[Video]]:
        scanner = DropScanner.from_runtime(runtime)
        scanner._clock = clock

        async def crash(*args: object) -> None:
            raise RuntimeError("the scheduler was killed")

        scanner._file = crash  # type: ignore[method-assign]
        clock.advance()
        await scanner.scan_once()
        return await scan_once(runtime, clock), await videos(runtime)

    result, made = run_scenario(setup.settings, scenario)

    assert len(made) == 1
    assert counts(result) == {}
    assert setup.location.pending() == []
    assert f"processed/{TODAY}/lecture.mp4" in setup.location.listing()


def test_a_corrupt_drop_fails_its_job_once_with_its_reason_and_the_next_good_drop_succeeds(
    backend: Backend, tmp_path: Path, clock: Clock, clip: Path
) -> None:
    """The real pipeline runs the jobs: in process on the embedded backend, in a worker on the services one."""
    settings = replace(backend.settings(), ingest_settle_seconds=SETTLE_SECONDS)
    location = FolderLocation(settings.data_dir / "incoming")
    location.put_file("broken.mp4", mediagen.make_truncated(tmp_path / "broken.mp4", clip, fraction=0.3))

    async def scenario(runtime: Runtime) -> dict[str, Any]:
        clock.advance()
        first = await scan_once(runtime, clock)
        (broken_job,) = first.jobs
        await wait_for_job(runtime, broken_job, show=False, timeout=60)
        rescans = [await scan_once(runtime, clock) for _ in range(2)]
        location.put_file("good.mp4", clip)
        clock.advance()
        good = await scan_once(runtime, clock)
        (good_job,) = good.jobs
        await wait_for_job(runtime, good_job, show=False, timeout=120)
        return {
            "broken": await report(runtime, broken_job),
            "good": await report(runtime, good_job),
            "rescans": rescans,
            "videos": await videos(runtime),
        }

    outcome = run_scenario(settings, scenario, workers=True)

    broken = outcome["broken"]
    assert broken["job"]["status"] == "failed"
    assert broken["job"]["error_code"].startswith("media.")
    assert [s["attempts"] for s in broken["stages"] if s["name"] == "ingest"] == [1]
    assert all(result.submitted == 0 for result in outcome["rescans"])
    assert outcome["good"]["job"]["status"] == "succeeded"
    assert [video.source_filename for video in outcome["videos"]] == ["broken.mp4", "good.mp4"]
    assert location.pending() == []


def test_vidpipe_ingest_scan_once_processes_the_drop_and_waits_for_its_job(tmp_path: Path, clip: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    env = {**embedded_env(tmp_path), "VIDPIPE_INGEST_SETTLE_MS": "0"}
    location = FolderLocation(Path(env["VIDPIPE_DATA_DIR"]).absolute() / "incoming")
    location.put_file("lecture.mp4", clip)

    result = CliRunner().invoke(cli, ["ingest", "scan", "--once", "--json"], env=env, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["submitted"] == 1 and len(summary["jobs"]) == 1

    async def job_status(runtime: Runtime) -> str:
        return str((await report(runtime, uuid.UUID(summary["jobs"][0])))["job"]["status"])

    assert run_scenario(Settings.from_env(env).with_secret(), job_status) == "succeeded"


def test_a_drop_claimed_by_a_scanner_that_died_is_taken_over_after_the_lease(
    setup: Setup, clock: Clock, clip: Path
) -> None:
    from pipeline.dropfolder.scanner import CLAIM_LEASE

    setup.location.put_file("lecture.mp4", clip)

    async def scenario(runtime: Runtime) -> tuple[ScanReport, ScanReport, list[Video]]:
        await scan_once(runtime, clock)
        async with runtime.database.sessions() as session:
            (drop,) = await session.scalars(select(Drop))
            drop.status, drop.claimed_at = DropStatus.PENDING, clock()
            await session.commit()
        clock.advance()
        within_lease = await scan_once(runtime, clock)
        clock.advance(CLAIM_LEASE.total_seconds() + 1)
        return within_lease, await scan_once(runtime, clock), await videos(runtime)

    within_lease, after_lease, made = run_scenario(setup.settings, scenario)

    assert counts(within_lease) == {}
    assert counts(after_lease) == {"submitted": 1}
    assert len(made) == 1


def test_content_whose_video_was_deleted_can_be_dropped_again(setup: Setup, clock: Clock, clip: Path) -> None:
    async def scenario(runtime: Runtime) -> tuple[ScanReport, list[Video]]:
        setup.location.put_file("lecture.mp4", clip)
        clock.advance()
        await scan_once(runtime, clock)
        async with runtime.database.sessions() as session:
            for video in await session.scalars(select(Video)):
                await session.delete(video)
            await session.commit()
        setup.location.put_file("again.mp4", clip)
        clock.advance()
        return await scan_once(runtime, clock), await videos(runtime)

    result, made = run_scenario(setup.settings, scenario)

    assert counts(result) == {"new": 1, "submitted": 1}
    assert [video.source_filename for video in made] == ["again.mp4"]
