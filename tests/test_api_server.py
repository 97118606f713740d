"""``vidpipe api`` as a server process: its event loop and start-up, and several API processes on one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SERVICES_ONLY, Backend
from tests.services import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, json.loads(answer.read())


def _stop(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_one_api_process_serves_on_uvloop_with_start_up_frozen(backend: Backend, tmp_path: Path) -> None:
    """The single-process server runs uvicorn's own loop choice and freezes its start-up objects.

    Serving through our own coroutine once fell back to the pure-Python loop, and without the
    freeze the collector's full passes made the job route's p99 three times the bare route's
    (benchmarks/bench_api.py); both are easy to lose again without noticing.
    """
    port, log_path = _free_port(), tmp_path / "api.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port)],
            env=backend.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def frozen() -> bool:
                return "start-up objects out of the garbage collector's full passes" in log_path.read_text()

            assert wait_until(frozen, timeout=60), log_path.read_text()
            assert _get(f"http://127.0.0.1:{port}/health/live")[0] == 200
            maps = Path(f"/proc/{server.pid}/maps")
            if not maps.exists():
                pytest.skip("reading a process's loaded libraries needs Linux's /proc")
            assert "uvloop" in maps.read_text(), "the API process did not load uvloop"
        finally:
            _stop(server)
    assert "Traceback" not in log_path.read_text()


def test_several_api_processes_need_a_redis_broker(backend: Backend) -> None:
    if backend.name != "embedded":
        pytest.skip("the refusal concerns the embedded default")
    result = backend.vidpipe("api", "--workers", "2", "--port", str(_free_port()), timeout=60)
    assert result.returncode == 1
    assert "--workers above 1 needs VIDPIPE_BROKER_URL=redis://" in result.stderr
    assert "Traceback" not in result.stderr


@SERVICES_ONLY
def test_two_api_processes_serve_one_port(backend: Backend, tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "api.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port), "--workers", "2"],
        env=backend.process_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def ready() -> bool:
            try:
                return _get(f"http://127.0.0.1:{port}/health/ready")[0] == 200
            except OSError:
                return False

        assert wait_until(ready, timeout=60), (tmp_path / "api.log").read_text()

        def both_started() -> bool:
            return (tmp_path / "api.log").read_text().count("Application startup complete") == 2

        assert wait_until(both_started, timeout=30), (tmp_path / "api.log").read_text()
        status, body = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 200 and body["status"] == "ok", body
        assert (tmp_path / "api.log").read_text().count("garbage collector's full passes") == 2
    finally:
        _stop(server)
        log.close()


def _call(url: str, body: dict[str, object] | None = None, headers: dict[str, str] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize(
    ("trusted", "recorded"),
    [("127.0.0.1", "203.0.113.7"), ("192.0.2.0/24", "127.0.0.1")],
    ids=["from-a-trusted-proxy", "from-an-untrusted-peer"],
)
def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    backend: Backend, tmp_path: Path, trusted: str, recorded: str
) -> None:
    """Rate limits and the login history see the client's address, and no client can choose its own."""
    port, log_path = _free_port(), tmp_path / "api.log"
    env = {**backend.process_env(), "VIDPIPE_TRUSTED_PROXIES": trusted}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def live() -> bool:
                try:
                    return _get(f"{base}/health/live")[0] == 200
                except OSError:
                    return False

            assert wait_until(live, timeout=60), log_path.read_text()
            account = {"email": "ada@example.org", "username": "ada", "password": "Lecture-hall-42"}
            _call(f"{base}/api/v1/auth/register", account)
            tokens = _call(
                f"{base}/api/v1/auth/login",
                {"login": "ada", "password": account["password"]},
                {"X-Forwarded-For": "203.0.113.7"},
            )
            assert isinstance(tokens, dict)
            logins = _call(
                f"{base}/api/v1/users/me/logins", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
        finally:
            _stop(server)
    assert isinstance(logins, list) and [entry["client_address"] for entry in logins] == [recorded]
