"""Real services for tests: PostgreSQL databases, Redis, the S3 server and worker processes.

A service that does not answer skips its tests on a developer's machine and fails them in
CI (where ``CI`` is set), so a green CI always means the real-service tests ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("VIDPIPE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("VIDPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a missing service must never pass silently there."""
    if in_ci():
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def postgres_available() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_URL} does not answer: {exc}"
    return None


def redis_available() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} does not answer: {exc}"
    return None


def delete_redis_namespace(namespace: str) -> None:
    """Remove a test's broker keys, so the shared Redis database does not fill up run after run."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}:*", count=500))
    if keys:
        client.delete(*keys)


def pg_url(database: str, *, driver: str = "postgresql+psycopg") -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    return f"{driver}://{base}/{database}"


def create_database(name: str, template: str | None = None) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _end_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies without its teardown."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class WorkerProcess:
    """A real ``dramatiq workers.entry`` process with the given environment."""

    def __init__(self, env: Mapping[str, str], *, threads: int = 2, log: Path) -> None:
        self.log = log
        self._handle = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "workers.entry",
                "--processes",
                "1",
                "--threads",
                str(threads),
            ],
            env={**os.environ, "dramatiq_worker_timeout": "100", **env},
            cwd=REPO,
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_end_with_parent,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            # Dramatiq's main process forwards SIGTERM to its worker processes and waits for them;
            # signalling the whole group at once makes the children treat it as a second, hard stop.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def run_vidpipe(
    env: Mapping[str, str], *args: str, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``vidpipe`` command in a child process, as a person runs it, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children; SIGKILL if they linger."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
