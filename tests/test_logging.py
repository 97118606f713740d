"""One log format for the API, the workers and the scheduler: JSON lines, the stage context, redaction.

The processes are real: ``vidpipe process`` with its in-process workers on the embedded default,
a ``python -m workers.entry`` worker process on Redis and PostgreSQL, ``vidpipe scheduler`` and
``vidpipe api``; their standard error is parsed line by line.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from pipeline.logs import bind_log_context, configure_logging, log_context, redact
from pipeline.settings import Settings
from tests import mediagen
from tests.conftest import Backend
from tests.harness import open_pipeline, process, with_runtime
from tests.services import REPO, wait_until
from workers.broker import DramatiqDispatcher

STAGES = ("ingest", "thumbnails", "subtitles", "index")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """vidpipe's log set-up writing to a buffer; the test process's own set-up comes back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("opensearch", "urllib3", "botocore", "httpx")}
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, chatty_level in chatty.items():
            logging.getLogger(name).setLevel(chatty_level)
        logging.captureWarnings(False)


def _entries(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object; a line that is not one fails the test with it."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        datetime.fromisoformat(entry["time"])
        entries.append(entry)
    return entries


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGci", "Authorization:"),
        ("headers {'authorization': 'Basic YWRhOmh1bnRlcjI='}", "YWRhOmh1bnRlcjI", "authorization"),
        ("GET /api/v1/auth/verify?token=Zx81-qq.w&next=/home", "Zx81-qq.w", "next=/home"),
        ("PUT https://s3/v?X-Amz-Credential=AKIA1&X-Amz-Signature=deadbeef", "deadbeef", "s3/v"),
        ("Registered ada.lovelace+vid@example.org as ada", "ada.lovelace+vid@example.org", "as ada"),
        ("password=hunter2 and 'new_password': 'hunter3'", "hunter", "password="),
        ("SMTP at smtp://mailer:s3cr3t@mail.example.com:587", "s3cr3t", "mail.example.com"),
        ("refresh token rt_8f2a sent as refresh_token=rt_8f2a", "rt_8f2a sent as refresh_token=rt_8f2a", "refresh"),
        ("key vpk_0123456789ab_" + "A" * 43 + " used", "A" * 43, "vpk_0123456789ab_"),
    ],
)
def test_redaction_removes_the_obvious_shapes_of_secrets(line: str, secret: str, kept: str) -> None:
    cleaned = redact(line)

    assert secret not in cleaned and kept in cleaned, cleaned


def test_redaction_leaves_ordinary_lines_alone() -> None:
    line = "Stage thumbnails of job 9f1c succeeded in 1.25 s; 3 tokens of 4 used; sender vidpipe <no-reply@localhost>."

    assert redact(line) == line


def test_the_redacting_filter_cleans_messages_arguments_and_tracebacks(captured: io.StringIO) -> None:
    configure_logging("json", stream=captured)
    log = logging.getLogger("tests.logging")

    log.warning("Login of %s failed with Authorization: Bearer %s", "ada@example.org", "tok-123")
    try:
        raise ValueError("GET https://cdn.example.org/v.mp4?token=sekrit-abc failed")
    except ValueError:
        log.exception("Download of %s failed.", "https://cdn.example.org/v.mp4?token=sekrit-abc")

    text = captured.getvalue()
    assert "ada@example.org" not in text and "tok-123" not in text and "sekrit-abc" not in text
    first, second = _entries(text)
    assert first["message"] == "Login of [email] failed with Authorization: [redacted]"
    assert first["level"] == "WARNING" and first["logger"] == "tests.logging"
    assert "token=[redacted]" in second["exception"] and "ValueError" in second["exception"]


def test_json_lines_carry_the_context_of_the_work_they_belong_to(captured: io.StringIO) -> None:
    configure_logging("json", stream=captured)
    log = logging.getLogger("tests.logging")
    job, video = uuid.uuid4(), uuid.uuid4()

    async def inside_a_task() -> None:
        await asyncio.to_thread(log.info, "from a thread the task started")

    log.info("before")
    with log_context(job_id=job, stage="thumbnails"):
        bind_log_context(video_id=video)
        log.info("during")
        asyncio.run(inside_a_task())
    log.info("after")

    before, during, threaded, after = _entries(captured.getvalue())
    context = {"job_id": str(job), "video_id": str(video), "stage": "thumbnails"}
    assert context.items() <= during.items() and context.items() <= threaded.items()
    assert not set(context) & (set(before) | set(after))


def test_text_lines_name_the_context_after_the_message(captured: io.StringIO) -> None:
    configure_logging("text", stream=captured)

    with log_context(job_id="j-1", video_id="v-1", stage="index"):
        logging.getLogger("tests.logging").warning("Indexed.")

    line = captured.getvalue().strip()
    assert line.endswith("WARNING tests.logging: Indexed. [job_id=j-1 video_id=v-1 stage=index]"), line


def test_each_request_gets_an_id_that_its_answer_and_its_log_lines_carry(captured: io.StringIO, tmp_path: Path) -> None:
    settings = Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)}).with_secret()
    configure_logging("json", stream=captured)

    with (
        open_pipeline(settings) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
    ):
        given = client.post("/api/v1/auth/login", json={}, headers={"X-Request-ID": "trace-42"})
        odd = client.get("/api/v1/openapi.json", headers={"X-Request-ID": "not a plain id " + "x" * 80})
        missing = client.get("/api/v1/users/me")
        logging.getLogger("api.metrics").setLevel(logging.DEBUG)
        read = client.get("/api/v1/openapi.json", headers={"X-Request-ID": "read-7"})
        logging.getLogger("api.metrics").setLevel(logging.NOTSET)

    assert given.headers["x-request-id"] == "trace-42"
    assert odd.headers["x-request-id"] != "trace-42" and len(odd.headers["x-request-id"]) == 32
    assert missing.status_code == 401 and len(missing.headers["x-request-id"]) == 32
    access = {e.get("request_id"): e for e in _entries(captured.getvalue()) if e["logger"] == "api.metrics"}
    assert access["trace-42"]["message"].startswith("Request POST /api/v1/auth/login answered 400 in ")
    assert access[missing.headers["x-request-id"]]["message"].startswith("Request GET /api/v1/users/me answered 401")
    # A successful read is logged only when debugging: pollers would flood the log.
    assert odd.headers["x-request-id"] not in access
    assert read.status_code == 200 and access["read-7"]["level"] == "DEBUG"


def _check_stage_lines(entries: list[dict[str, Any]], job_id: str, video_id: str) -> None:
    stage_work = [e for e in entries if e["logger"].startswith("pipeline.stages")]
    assert stage_work, "no line of stage work was logged"
    for entry in stage_work:
        assert entry.get("job_id") == job_id and entry.get("video_id") == video_id, entry
        assert entry.get("stage") in STAGES, entry
    for stage in STAGES:
        assert any(e["stage"] == stage and "succeeded" in e["message"] for e in stage_work), stage


def test_a_stage_s_log_lines_are_json_with_its_job_video_and_stage(backend: Backend, tmp_path: Path) -> None:
    clip = mediagen.make_video(tmp_path / "lecture.mp4", duration=1.0)
    if backend.name == "embedded":
        backend.configure(VIDPIPE_LOG_FORMAT="json")
        result = backend.vidpipe("-v", "process", str(clip), "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        text = result.stderr
    else:
        report, text = _process_with_a_json_worker(backend, tmp_path, clip)

    entries = _entries(text)
    _check_stage_lines(entries, report["job"]["id"], report["video"]["id"])
    if backend.name != "embedded":
        # The launcher logs Dramatiq's supervising process in the same format as its workers.
        assert any(e["logger"] == "dramatiq.MainProcess" and "booting up" in e["message"] for e in entries)


def _process_with_a_json_worker(backend: Backend, tmp_path: Path, clip: Path) -> tuple[dict[str, Any], str]:
    """Process ``clip`` with a ``python -m workers.entry`` process logging JSON; its report and its stderr."""
    if backend.worker is not None:
        backend.worker.stop()
        backend.worker = None
    log_path = tmp_path / "worker.stderr"
    env = {**backend.process_env(), "VIDPIPE_LOG_FORMAT": "json", "dramatiq_worker_timeout": "100"}
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.entry", "--processes", "1", "--threads", "2"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        with open_pipeline(backend.settings()) as pipeline:
            report = with_runtime(pipeline, lambda rt: process(rt, clip, title="Lecture"))
        assert report["job"]["status"] == "succeeded", report
    finally:
        _stop(worker)
    return report, log_path.read_text()


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_the_scheduler_logs_json_lines(tmp_path: Path) -> None:
    env = {"VIDPIPE_DATA_DIR": str(tmp_path / "data"), "VIDPIPE_LOG_FORMAT": "json"}
    backend = Backend("embedded", env, tmp_path / "data")

    result = backend.vidpipe("scheduler", "--once")

    assert result.returncode == 0, result.stderr
    entries = _entries(result.stderr)
    assert any(
        e["logger"] == "pipeline.cli.scheduler" and e["message"].startswith("Scheduler started") for e in entries
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_api_server_logs_json_lines_with_request_ids_and_uvicorn_s_own(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "VIDPIPE_DATA_DIR": str(tmp_path / "data"), "VIDPIPE_LOG_FORMAT": "json"}
    log_path = tmp_path / "api.stderr"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:

        def answers() -> bool:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/users/me", headers={"X-Request-ID": "probe-7"}
                )
                urllib.request.urlopen(request, timeout=5)
            except urllib.error.HTTPError as refused:  # a refusal is logged at INFO; a read only when debugging
                return bool(refused.code == 401 and refused.headers["X-Request-ID"] == "probe-7")
            except OSError:
                return False
            return False

        assert wait_until(answers, timeout=60), log_path.read_text()
    finally:
        _stop(server)

    entries = _entries(log_path.read_text())
    assert any(e["logger"] == "uvicorn.error" and "startup complete" in e["message"] for e in entries)
    assert any(e["logger"] == "api.metrics" and e.get("request_id") == "probe-7" for e in entries)
