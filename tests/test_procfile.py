"""The Procfile runs under honcho against PostgreSQL and Redis and processes a video end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import mediagen
from tests.conftest import SERVICES_ONLY, Backend

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_procfile_has_the_four_process_types() -> None:
    entries = dict(line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())

    assert set(entries) == {"release", "web", "worker", "scheduler"}
    assert entries["release"].strip() == "vidpipe migrate"
    assert entries["worker"].strip().startswith("vidpipe worker")


@SERVICES_ONLY
def test_honcho_runs_the_procfile_and_a_video_goes_through(backend: Backend, tmp_path: Path) -> None:
    assert backend.worker is not None
    backend.worker.stop()  # honcho starts its own
    backend.worker = None
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **backend.process_env(),
        "PORT": str(port),
        "WORKER_PROCESSES": "1",
        "WORKER_THREADS": "2",
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    release = subprocess.run(["vidpipe", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    log = (tmp_path / "honcho.log").open("wb")
    honcho = subprocess.Popen(
        [str(Path(bin_dir) / "honcho"), "start", "-f", str(REPO / "Procfile"), "web", "worker", "scheduler"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health/ready", honcho, tmp_path)
        video = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
        result = subprocess.run(
            ["vidpipe", "process", "--json", str(video)], env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr + (tmp_path / "honcho.log").read_text(errors="replace")[-3000:]
        assert json.loads(result.stdout)["job"]["status"] == "succeeded"
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
        log.close()


def _wait_ready(url: str, honcho: subprocess.Popen[bytes], tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert honcho.poll() is None, (tmp_path / "honcho.log").read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                body = json.loads(answer.read())
                if body["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail("the web process never became ready:\n" + (tmp_path / "honcho.log").read_text(errors="replace")[-3000:])
