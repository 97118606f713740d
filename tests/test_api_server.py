"""``vidpipe api`` as a server process: its event loop and start-up, proxies, and several processes on one port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SERVICES_ONLY, Backend
from tests.services import stop_group, wait_until

FROZEN = "start-up objects out of the garbage collector's full passes"
"""What each API process logs once it has started (see api.app.freeze_after_start_up)."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, json.loads(answer.read())


def _call(url: str, body: dict[str, object] | None = None, headers: dict[str, str] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@contextmanager
def _serving(env: dict[str, str], log: Path, *options: str, processes: int = 1) -> Iterator[Server]:
    """A ``vidpipe api`` process group on a free port, once every process has started; stopped after."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "api", "--port", str(port), *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(process, f"http://127.0.0.1:{port}", log)
        try:
            assert wait_until(lambda: server.output().count(FROZEN) == processes, timeout=60), server.output()
            yield server
        finally:
            stop_group(process)


def test_one_api_process_serves_on_uvloop_with_start_up_frozen(backend: Backend, tmp_path: Path) -> None:
    """The single-process server runs uvicorn's own loop choice and freezes its start-up objects.

    Serving through our own coroutine once fell back to the pure-Python loop, and without the
    freeze the collector's full passes made the job route's p99 three times the bare route's
    (benchmarks/bench_api.py); both are easy to lose again without noticing.
    """
    with _serving(backend.process_env(), tmp_path / "api.log") as server:
        assert _get(f"{server.base}/health/live")[0] == 200
        maps = Path(f"/proc/{server.process.pid}/maps")
        if not maps.exists():
            pytest.skip("reading a process's loaded libraries needs Linux's /proc")
        assert "uvloop" in maps.read_text(), "the API process did not load uvloop"
    assert "Traceback" not in server.output()


def test_several_api_processes_need_a_redis_broker(backend: Backend) -> None:
    if backend.name != "embedded":
        pytest.skip("the refusal concerns the embedded default")
    result = backend.vidpipe("api", "--workers", "2", "--port", str(_free_port()), timeout=60)
    assert result.returncode == 1
    assert "--workers above 1 needs VIDPIPE_BROKER_URL=redis://" in result.stderr
    assert "Traceback" not in result.stderr


@SERVICES_ONLY
def test_two_api_processes_serve_one_port(backend: Backend, tmp_path: Path) -> None:
    with _serving(backend.process_env(), tmp_path / "api.log", "--workers", "2", processes=2) as server:
        assert wait_until(lambda: server.output().count("Application startup complete") == 2, timeout=30)
        status, body = _get(f"{server.base}/health/ready")
    assert status == 200 and body["status"] == "ok", body


@pytest.mark.parametrize(
    ("trusted", "recorded"),
    [("127.0.0.1", "203.0.113.7"), ("192.0.2.0/24", "127.0.0.1")],
    ids=["from-a-trusted-proxy", "from-an-untrusted-peer"],
)
def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    backend: Backend, tmp_path: Path, trusted: str, recorded: str
) -> None:
    """Rate limits and the login history see the client's address, and no client can choose its own."""
    env = {**backend.process_env(), "VIDPIPE_TRUSTED_PROXIES": trusted}
    with _serving(env, tmp_path / "api.log") as server:
        account = {"email": "ada@example.org", "username": "ada", "password": "Lecture-hall-42"}
        _call(f"{server.base}/api/v1/auth/register", account)
        tokens = _call(
            f"{server.base}/api/v1/auth/login",
            {"login": "ada", "password": account["password"]},
            {"X-Forwarded-For": "203.0.113.7"},
        )
        assert isinstance(tokens, dict)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        logins = _call(f"{server.base}/api/v1/users/me/logins", headers=bearer)
    assert isinstance(logins, list) and [entry["client_address"] for entry in logins] == [recorded]
