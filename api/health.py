"""Liveness and readiness: what an orchestrator or a load balancer asks before sending traffic."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Response, get
from litestar.datastructures import State
from sqlalchemy import text

from pipeline.runtime import Runtime


class HealthController(Controller):
    path = "/health"

    @get("/live", sync_to_thread=False)
    def live(self) -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @get("/ready")
    async def ready(self, state: State) -> Response[dict[str, Any]]:
        """Each backing service answered, with how long it took; 503 when one did not."""
        runtime: Runtime = state.runtime
        checks = {
            "database": lambda: _database(runtime),
            "storage": runtime.storage.check,
            "search": runtime.search.check,
        }
        results = {name: await _timed(check) for name, check in checks.items()}
        healthy = all(r["status"] == "ok" for r in results.values())
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": results}, status_code=200 if healthy else 503
        )


async def _database(runtime: Runtime) -> None:
    async with runtime.database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _timed(check: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await check()
    except Exception as exc:
        return {"status": "unavailable", "error": type(exc).__name__, "ms": _ms(started)}
    return {"status": "ok", "ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
