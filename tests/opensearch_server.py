"""Fixtures for an OpenSearch-compatible server (osmem-server), or a real OpenSearch by URL.

``opensearch_url`` is one server for the whole session: the cluster at
``VIDPIPE_TEST_OPENSEARCH_URL`` when that is set, otherwise an ``osmem-server`` process (the
binary the osmem-server wheel ships) on a free local port. ``opensearch_prefix`` gives each
test its own index prefix and deletes that test's indices afterwards, so tests never see
each other's documents.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests import services

OPENSEARCH_URL_VARIABLE = "VIDPIPE_TEST_OPENSEARCH_URL"
_START_TIMEOUT = 20.0


class OsmemProcess:
    """One ``osmem-server`` process on a fixed local port, which can be stopped and started again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers; raises RuntimeError when it does not."""
        from osmem_server import resolve_binary

        # --parent-pid makes the server exit with the test process even if a test is killed.
        command = [resolve_binary(), "--addr", f"127.0.0.1:{self.port}", "--parent-pid", str(os.getpid())]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        announced = _first_line(self._process, _START_TIMEOUT)
        if "url" not in announced or not wait_until_answering(self.url, _START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"osmem-server did not start on port {self.port}: {announced or 'no output'}")

    def stop(self) -> None:
        """Stop the server (closing its stdin asks it to exit) and wait for the port to be free."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_answering(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def _first_line(process: subprocess.Popen[str], timeout: float) -> dict[str, object]:
    """The server's start-up announcement (one JSON line with its URL), read without blocking forever."""
    found: dict[str, object] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                found.update(message)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found


def delete_indices(url: str, pattern: str) -> None:
    request = urllib.request.Request(f"{url}/{pattern}?ignore_unavailable=true", method="DELETE")
    # Cleanup is best effort: a server that has gone away has nothing left to delete.
    with contextlib.suppress(urllib.error.URLError, OSError):
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """A running OpenSearch-compatible server for the session."""
    configured = os.environ.get(OPENSEARCH_URL_VARIABLE)
    if configured:
        if not wait_until_answering(configured, 5):
            services.unavailable(f"OpenSearch at {OPENSEARCH_URL_VARIABLE}={configured} does not answer")
        yield configured.rstrip("/")
        return
    server = OsmemProcess()
    try:
        server.start()
    except Exception as exc:
        services.unavailable(f"osmem-server could not start, so the OpenSearch tests cannot run: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def opensearch_prefix(opensearch_url: str) -> Iterator[str]:
    """An index prefix of this test's own; its indices are deleted afterwards."""
    prefix = f"vidpipe-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_indices(opensearch_url, f"{prefix}-videos-v*")
