"""The ``vidpipe`` command as a person uses it: subtitle checks, search output, the demo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import mediagen
from tests.services import run_vidpipe


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_vidpipe({"VIDPIPE_DATA_DIR": str(tmp_path / "data")}, *args, timeout=300)


def test_subtitles_check_prints_format_encoding_cues_and_warnings_as_json(tmp_path: Path) -> None:
    path = tmp_path / "lecture.ko.srt"
    text = "1\n00:00:01,000 --> 00:00:02,500\n<i>고유값</i>과 고유벡터\n\n2\n00:00:xx --> broken\noops\n"
    path.write_bytes(text.encode("cp949"))

    result = run(tmp_path, "subtitles", "check", str(path), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "srt"
    assert report["encoding"] in ("cp949", "euc-kr")
    assert report["language"] == "ko"
    assert report["cues"] == [{"start": 1.0, "end": 2.5, "text": "고유값과 고유벡터"}]
    assert len(report["warnings"]) == 1


def test_subtitles_check_reads_sbv(tmp_path: Path) -> None:
    path = tmp_path / "talk.sbv"
    path.write_text("0:00:00.500,0:00:01.250\nHello there\n\n0:00:01.250,0:00:02.000\nSecond line\n")

    result = run(tmp_path, "subtitles", "check", str(path), "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "sbv"
    assert [c["start"] for c in json.loads(result.stdout)["cues"]] == [0.5, 1.25]


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "subtitles.empty"), (b"\x89PNG\r\n\x1a\n" + bytes(200), "subtitles.unrecognised_format")],
)
def test_subtitles_check_exits_1_with_a_clear_reason_for_an_unusable_file(
    tmp_path: Path, content: bytes, code: str
) -> None:
    path = tmp_path / "bad.vtt"
    path.write_bytes(content)

    as_json = run(tmp_path, "subtitles", "check", str(path), "--json")
    as_text = run(tmp_path, "subtitles", "check", str(path))

    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == code
    assert as_text.returncode == 1 and "not usable" in as_text.stderr and "Traceback" not in as_text.stderr


def test_search_on_an_empty_library_returns_the_api_shape(tmp_path: Path) -> None:
    result = run(tmp_path, "search", "고유값", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"total": 0, "hits": []}


def test_search_with_an_empty_query_says_why_without_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "search", "   ")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Error:" in result.stderr


def test_the_demo_processes_a_lecture_and_finds_korean_and_english_words(tmp_path: Path) -> None:
    result = run(tmp_path, "demo")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert "<mark>고유값</mark>" in result.stdout
    assert "<mark>eigenvector</mark>" in result.stdout
    assert list((tmp_path / "data" / "objects" / "videos").glob("*/storyboard/storyboard.vtt"))


def test_search_init_reindex_and_suggest_work_on_the_embedded_default(tmp_path: Path) -> None:
    video = tmp_path / "algebra.mp4"
    mediagen.make_video(video, duration=1.0)
    subs = tmp_path / "algebra.ko.vtt"
    subs.write_text("WEBVTT\n\n00:00.000 --> 00:00.900\n고유값과 고유벡터\n", encoding="utf-8")
    processed = run(tmp_path, "process", str(video), "--subtitles", str(subs), "--title", "Linear Algebra 고유값")
    assert processed.returncode == 0, processed.stderr

    assert run(tmp_path, "search", "init").returncode == 0
    reindexed = run(tmp_path, "search", "reindex", "--all")
    assert reindexed.returncode == 0, reindexed.stderr
    found = json.loads(run(tmp_path, "search", "고유벡터", "--json").stdout)
    assert found["total"] == 1 and found["hits"][0]["cues"][0]["start"] == 0.0

    suggested = run(tmp_path, "search", "suggest", "Lin", "--json")
    assert suggested.returncode == 0, suggested.stderr
    assert [s["text"] for s in json.loads(suggested.stdout)["suggestions"]] == ["Linear Algebra 고유값"]
