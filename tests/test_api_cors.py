"""CORS: browsers on the configured origins may call the API; no other origin, and none by default."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from pipeline.settings import Settings


class _NoDispatch:
    def send(self, job_id: uuid.UUID, stage: Any, *, delay_ms: int = 0) -> None:
        raise AssertionError("no jobs here")

    def notify(self, kind: str, ref: str, *, delay_ms: int = 0) -> None:
        raise AssertionError("no notifications here")


def _client(tmp_path: Path, origins: str | None) -> TestClient[Any]:
    env = {"VIDPIPE_DATA_DIR": str(tmp_path)}
    if origins is not None:
        env["VIDPIPE_CORS_ORIGINS"] = origins
    return TestClient(create_app(Settings.from_env(env).with_secret(), _NoDispatch()))


def _preflight(client: TestClient[Any], origin: str) -> Any:
    return client.options(
        "/api/v1/auth/login",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )


def test_a_configured_origin_passes_the_preflight_and_reads_the_etag(tmp_path: Path) -> None:
    with _client(tmp_path, "https://learn.example.org, https://admin.example.org") as client:
        answer = _preflight(client, "https://admin.example.org")
        assert answer.status_code in (200, 204), answer.text
        assert answer.headers["access-control-allow-origin"] == "https://admin.example.org"
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()

        plain = client.get("/health/live", headers={"Origin": "https://learn.example.org"})
        assert plain.headers["access-control-allow-origin"] == "https://learn.example.org"
        assert "etag" in plain.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("origins", [None, "https://learn.example.org"])
def test_other_origins_get_no_cors_headers(tmp_path: Path, origins: str | None) -> None:
    with _client(tmp_path, origins) as client:
        answer = client.get("/health/live", headers={"Origin": "https://evil.example.net"})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
        preflight = _preflight(client, "https://evil.example.net")
        assert "access-control-allow-origin" not in preflight.headers
