"""End-to-end contract: ``vidpipe process`` on every backend, as a user runs it.

Each test runs the real command in a child process: on the embedded default the work runs
inside it; on the real services it enqueues on Redis and a separate ``dramatiq`` worker
process does the work against PostgreSQL and the S3 server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import mediagen
from tests.conftest import Backend

KOREAN_SRT = """1
00:00:00,200 --> 00:00:01,000
오늘은 고유값과 고유벡터를 배웁니다.

2
00:00:01,000 --> 00:00:01,900
행렬의 대각화
"""

ENGLISH_VTT = """WEBVTT

00:00.100 --> 00:00.900
Welcome to <b>linear algebra</b>.

00:00.900 --> 00:01.800
Eigenvalues and eigenvectors.
"""


def vidpipe(backend: Backend, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return backend.vidpipe(*args, cwd=cwd)


def process_json(backend: Backend, *args: str, cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    result = vidpipe(backend, "process", "--json", *args, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), f"no JSON on stdout; stderr: {result.stderr}"
    return result.returncode, json.loads(result.stdout)


def stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["name"]: stage for stage in report["stages"]}


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_a_video_with_embedded_and_file_subtitles_goes_through_all_four_stages(
    backend: Backend, tmp_path: Path, container: str
) -> None:
    video = mediagen.make_video_with_subtitles(tmp_path / f"lecture.{container}", [("kor", KOREAN_SRT)], duration=2.0)
    english = tmp_path / "lecture.en.vtt"
    english.write_text(ENGLISH_VTT, encoding="utf-8")
    korean_cp949 = tmp_path / "notes.srt"
    korean_cp949.write_bytes("1\n00:00:00,500 --> 00:00:01,500\n선형대수 복습\n".encode("cp949"))

    code, report = process_json(
        backend,
        str(video),
        "--subtitles",
        str(english),
        "--subtitles",
        f"{korean_cp949}:ko",
        "--title",
        "선형대수 1강",
    )

    assert code == 0, report
    assert report["job"]["status"] == "succeeded"
    assert {name: s["status"] for name, s in stages(report).items()} == dict.fromkeys(
        ("ingest", "thumbnails", "subtitles", "index"), "succeeded"
    )
    assert all(s["attempts"] == 1 for s in report["stages"])
    assert report["video"]["duration"] == pytest.approx(2.0, abs=0.15)
    assert (report["video"]["width"], report["video"]["height"]) == (160, 90)
    assert report["video"]["video_codec"] == "h264"
    kinds = [t["kind"] for t in report["thumbnails"]]
    assert kinds.count("poster") == 1 and kinds.count("candidate") >= 3
    assert "sprite" in kinds and "storyboard" in kinds
    tracks = {(t["source"], t["language"]): t for t in report["subtitle_tracks"]}
    assert tracks[("embedded", "ko")]["cues"] == 2, "the container's 'kor' tag becomes 'ko'"
    assert tracks[("file", "en")]["status"] == "ready" and tracks[("file", "en")]["cues"] == 2
    assert tracks[("file", "ko")]["cues"] == 1

    found = vidpipe(backend, "search", "고유값", "--json")
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert result["total"] == 1
    hit = result["hits"][0]
    assert hit["video"]["id"] == report["video"]["id"] and hit["video"]["title"] == "선형대수 1강"
    assert hit["cues"][0]["start"] == pytest.approx(0.2)
    assert "<mark>고유값</mark>" in hit["cues"][0]["highlight"]

    english_hit = json.loads(vidpipe(backend, "search", "eigenvectors", "--json").stdout)
    assert english_hit["total"] == 1


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("empty", "media.empty_file"),
        ("text", "media.unrecognised_format"),
        ("audio", "media.no_video_stream"),
        ("image", "media.still_image"),
        ("truncated", "media.truncated"),
    ],
)
def test_a_file_that_is_not_a_playable_video_fails_ingest_once_with_its_own_code(
    backend: Backend, tmp_path: Path, kind: str, code: str
) -> None:
    path = _bad_file(tmp_path, kind)

    exit_code, report = process_json(backend, str(path))

    assert exit_code == 1
    assert report["job"]["status"] == "failed"
    assert report["job"]["error_code"] == code
    ingest = stages(report)["ingest"]
    assert ingest["status"] == "failed" and ingest["error_code"] == code
    assert ingest["attempts"] == 1, "a permanent error must not be retried"
    assert ingest["error_message"] and "Traceback" not in ingest["error_message"]
    assert {stages(report)[s]["status"] for s in ("thumbnails", "subtitles", "index")} == {"skipped"}


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
        return path
    if kind == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("These are my lecture notes, not a video.\n" * 50)
        return path
    if kind == "audio":
        return mediagen.make_audio_only(tmp_path / "podcast.m4a", duration=1.0)
    if kind == "image":
        return mediagen.make_image(tmp_path / "slide.png")
    source = mediagen.make_video(tmp_path / "whole.mp4", duration=3.0, faststart=False)
    return mediagen.make_truncated(tmp_path / "cut.mp4", source, fraction=0.5)


def test_a_bad_subtitle_file_fails_its_track_but_the_video_becomes_ready_and_searchable(
    backend: Backend, tmp_path: Path
) -> None:
    video = mediagen.make_video(tmp_path / "talk.mp4", duration=1.0)
    good = tmp_path / "talk.en.srt"
    good.write_text("1\n00:00:00,000 --> 00:00:00,800\nThe spectral theorem\n", encoding="utf-8")
    bad = tmp_path / "talk.ko.vtt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

    code, report = process_json(backend, str(video), "--subtitles", str(good), "--subtitles", str(bad))

    assert code == 0, report
    assert report["job"]["status"] == "succeeded"
    tracks = {t["language"]: t for t in report["subtitle_tracks"]}
    assert tracks["en"]["status"] == "ready"
    assert tracks["ko"]["status"] == "failed"
    assert tracks["ko"]["error_code"].startswith("subtitles.")
    assert tracks["ko"]["error_message"]
    found = json.loads(vidpipe(backend, "search", "spectral", "--json").stdout)
    assert found["total"] == 1


def test_a_file_whose_name_starts_with_a_dash_is_processed_as_a_file(backend: Backend, tmp_path: Path) -> None:
    source = mediagen.make_video(tmp_path / "plain.mp4", duration=1.0)
    dashed = mediagen.copy_to(source, tmp_path / "-y -i lecture.mp4")

    code, report = process_json(backend, "--", dashed.name, cwd=tmp_path)

    assert code == 0, report
    assert report["video"]["duration"] == pytest.approx(1.0, abs=0.1)
    assert dashed.read_bytes() == source.read_bytes(), "the input must never be overwritten"


def test_a_half_second_clip_gets_a_poster_and_a_storyboard(backend: Backend, tmp_path: Path) -> None:
    video = mediagen.make_video(tmp_path / "blink.mp4", duration=0.5, audio=False)

    code, report = process_json(backend, str(video), "--poster-at", "30")

    assert code == 0, report
    poster = next(t for t in report["thumbnails"] if t["kind"] == "poster")
    assert 0 <= poster["time"] < 0.5
    assert report["video"]["audio_codec"] is None


def test_no_wait_prints_the_job_id_and_a_worker_finishes_it(backend: Backend, tmp_path: Path) -> None:
    if backend.name == "embedded":
        result = vidpipe(backend, "process", "--no-wait", str(mediagen.make_video(tmp_path / "a.mp4")))
        assert result.returncode == 1 and "Redis" in result.stderr and "Traceback" not in result.stderr
        return
    video = mediagen.make_video(tmp_path / "a.mp4", duration=1.0)
    code, report = process_json(backend, str(video), "--no-wait")
    assert code == 0 and report["job"]["status"] == "queued"
