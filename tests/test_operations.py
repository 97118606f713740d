"""Operating vidpipe from the command line: the scheduler, and jobs list/show/retry/cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests import mediagen
from tests.conftest import SERVICES_ONLY, Backend


def vidpipe(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    return backend.vidpipe(*args)


def jobs_json(backend: Backend) -> dict[str, Any]:
    result = vidpipe(backend, "jobs", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@SERVICES_ONLY
def test_the_scheduler_takes_a_dropped_file_and_a_worker_processes_it(backend: Backend, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    backend.configure(VIDPIPE_INGEST_URL=incoming.as_uri(), VIDPIPE_INGEST_SETTLE_MS="0")
    mediagen.make_video(incoming / "week-1.mp4", duration=1.0)
    (incoming / "week-1.en.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:00.900\nOrthogonal projections\n")

    scheduled = vidpipe(backend, "scheduler", "--once")

    assert scheduled.returncode == 0, scheduled.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = jobs_json(backend)["jobs"]
        if listed and listed[0]["status"] == "succeeded":
            break
        time.sleep(0.3)
    assert [job["status"] for job in listed] == ["succeeded"]
    assert not list(incoming.glob("*.mp4")), "a taken drop leaves the pending area"
    found = json.loads(vidpipe(backend, "search", "orthogonal", "--json").stdout)
    assert found["total"] == 1
    queues = jobs_json(backend)["queues"]
    assert set(queues) == {"ingest", "thumbnails", "subtitles", "index", "notifications"}


def test_jobs_show_retry_and_cancel_from_the_command_line(backend: Backend, tmp_path: Path) -> None:
    good = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
    first = json.loads(vidpipe(backend, "process", "--json", str(good)).stdout)
    job_id = first["job"]["id"]

    shown = json.loads(vidpipe(backend, "jobs", "show", job_id, "--json").stdout)
    assert shown["job"]["id"] == job_id and [s["name"] for s in shown["stages"]] == [
        "ingest",
        "thumbnails",
        "subtitles",
        "index",
    ]
    assert all(s["duration"] is not None for s in shown["stages"])

    retried = vidpipe(backend, "jobs", "retry", job_id, "--stage", "subtitles", "--wait")
    assert retried.returncode == 0, retried.stderr
    after = json.loads(vidpipe(backend, "jobs", "show", job_id, "--json").stdout)
    attempts = {s["name"]: s["attempts"] for s in after["stages"]}
    assert attempts == {"ingest": 1, "thumbnails": 1, "subtitles": 1, "index": 1}
    assert after["job"]["status"] == "succeeded"
    assert after["stages"][2]["started_at"] > shown["stages"][2]["started_at"], "subtitles ran again"
    assert after["stages"][1]["started_at"] == shown["stages"][1]["started_at"], "thumbnails did not"

    ended = vidpipe(backend, "jobs", "cancel", job_id)
    assert ended.returncode == 0 and "already ended" in ended.stdout


def test_jobs_show_of_an_unknown_job_says_so_without_a_traceback(backend: Backend) -> None:
    result = vidpipe(backend, "jobs", "show", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 1
    assert "no job" in result.stderr and "Traceback" not in result.stderr


def test_the_worker_command_refuses_the_in_process_broker_with_a_reason(tmp_path: Path) -> None:
    env = {**os.environ, "VIDPIPE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "worker"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1 and "redis://" in result.stderr
