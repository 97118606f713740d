"""What operators and autoscalers read about a running vidpipe: ``/metrics``, request ids, access lines.

``/metrics`` answers in Prometheus' text format; every series vidpipe defines starts with
``vidpipe_`` and is described in ``docs/metrics.md``. Where each number comes from:

- HTTP requests are counted and timed in the API process by Litestar's Prometheus middleware,
  labelled by route template (``/api/v1/jobs/{job_id:uuid}``), never by the raw path, so no id
  becomes a label value. Several API processes on one port (``vidpipe api --workers N``) add
  up their numbers through prometheus_client's multiprocess mode.
- Jobs by state, stage runs waiting and running, uploads in progress, the age of the oldest
  waiting stage and the failure counts are read from the database at scrape time, a handful
  of ``GROUP BY`` queries. The stage duration histogram is read from running totals that the
  stage runner keeps as stages succeed (:mod:`pipeline.stagetotals`), a few dozen rows.
- Queue depth comes from the broker, the one place that knows how many messages wait.
- The probes of ``/health/ready`` (database, storage, search) and the broker read are timed on
  each scrape.

Why stage durations and failures come from the database rather than from the workers: the
database is the truth about stages (the runner records every start and finish there), and
reading it works for every worker topology — in-process threads, ``vidpipe worker`` processes
on many hosts, containers that come and go — with no exporter port per worker, no
multiprocess files shared between hosts, and nothing lost when a worker is killed mid-stage.
Every API process answers alike, so a load balancer may send the scrape to any of them. The
duration totals only grow, as a Prometheus counter must; the failure counter describes the
failed runs the database holds *now*: retrying a job or deleting a video takes them away,
which Prometheus reads as a counter reset, and a transient failure that a retry later overcame
is not counted (the run keeps only its last outcome).

``/metrics`` is public, as usual inside a cluster whose network keeps it private, unless
``VIDPIPE_METRICS_TOKEN`` is set; then it needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import ASGIMiddleware, DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Unauthenticated
from pipeline.db.models import Job, StageRun, Video, utcnow
from pipeline.logs import log_context
from pipeline.runtime import Runtime
from pipeline.stagetotals import STAGE_BUCKETS, Durations, read_durations
from pipeline.states import JobStatus, Stage, StageStatus, VideoStatus

logger = logging.getLogger(__name__)

QueueDepths = Callable[[], Mapping[str, Mapping[str, int]]]
"""Reads the broker: messages waiting per queue (each stage, ``notifications``), ``ready`` and ``delayed``."""


# The classic text format (what every Prometheus reads); Litestar appends the charset itself.
_CONTENT_TYPE = "text/plain; version=0.0.4"
_CHECK_TIMEOUT = 5.0
_PROBE_PREFIXES = ("/health/", "/metrics")
_READS = ("GET", "HEAD")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# TODO(metrics): a request that matches no route (404, 405) is answered before any route
# middleware runs, so it is neither counted nor given an access line; catching those needs a
# wrapper around the whole ASGI application.
def http_metrics_middleware() -> DefineMiddleware:
    """Request counts, latencies and requests in flight by method, route template and status."""
    return PrometheusConfig(app_name="vidpipe", prefix="vidpipe_http", group_path=True).middleware


def metrics_route(queue_depths: QueueDepths | None) -> HTTPRouteHandler:
    """The ``/metrics`` handler; ``queue_depths`` reads the broker (without it, no queue depth series)."""

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Prometheus metrics of the API, the pipeline's jobs and stages, and the queues."""
        runtime: Runtime = request.app.state.runtime
        _require_token(request, runtime.settings.metrics_token)
        snapshot = await take_snapshot(runtime, queue_depths)
        body = generate_latest(_http_collector()) + generate_latest(snapshot)
        return Response(body, media_type=_CONTENT_TYPE)

    return metrics


def _require_token(request: Request[Any, Any, Any], token: str | None) -> None:
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthenticated(
            "Metrics need the token set in VIDPIPE_METRICS_TOKEN, sent as 'Authorization: Bearer <token>'.",
            code="metrics.unauthenticated",
        )


def _http_collector() -> Collector:
    """This process's registry, or every API process's numbers in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


@dataclass
class Snapshot:
    """What one scrape read from the database, the broker and the backing services."""

    pipeline_read: bool = False
    """Whether the database answered every query below; if not, their series are left out."""
    jobs: dict[str, int] = field(default_factory=dict)
    stage_runs: dict[tuple[str, str], int] = field(default_factory=dict)
    """Waiting (``queued``) and ``running`` stage runs by (stage, state)."""
    oldest_waiting: dict[str, datetime] = field(default_factory=dict)
    """Per stage, since when its longest-waiting queued run could have been taken."""
    durations: dict[str, Durations] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    uploads_in_progress: int = 0
    queues: Mapping[str, Mapping[str, int]] | None = None
    checks: dict[str, tuple[bool, float]] = field(default_factory=dict)
    taken_at: datetime = field(default_factory=utcnow)

    def collect(self) -> Iterator[Metric]:
        """The snapshot as Prometheus metric families (a ``Collector``)."""
        if self.pipeline_read:
            yield from self._pipeline()
        if self.queues is not None:
            yield from _queues(self.queues)
        up = GaugeMetricFamily(
            "vidpipe_dependency_up", "1 when the service answered this scrape.", labels=["dependency"]
        )
        took = GaugeMetricFamily(
            "vidpipe_dependency_check_seconds", "How long the service took to answer.", labels=["dependency"]
        )
        for name, (ok, seconds) in self.checks.items():
            up.add_metric([name], 1.0 if ok else 0.0)
            took.add_metric([name], seconds)
        yield up
        yield took

    def _pipeline(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("vidpipe_jobs", "Jobs by state.", labels=["state"])
        for job_state in JobStatus:
            jobs.add_metric([job_state.value], self.jobs.get(job_state.value, 0))
        yield jobs

        runs = GaugeMetricFamily("vidpipe_stage_runs", "Stage runs waiting or running.", labels=["stage", "state"])
        age = GaugeMetricFamily(
            "vidpipe_queue_oldest_age_seconds",
            "How long the longest-waiting queued run of each stage has been waiting.",
            labels=["queue"],
        )
        for stage in Stage:
            for state in (StageStatus.QUEUED, StageStatus.RUNNING):
                runs.add_metric([stage.value, state.value], self.stage_runs.get((stage.value, state.value), 0))
            since = self.oldest_waiting.get(stage.value)
            age.add_metric([stage.value], max(0.0, (self.taken_at - since).total_seconds()) if since else 0.0)
        yield runs
        yield age

        durations = HistogramMetricFamily(
            "vidpipe_stage_duration_seconds", "Run time of succeeded stage runs.", labels=["stage"]
        )
        for stage in Stage:
            seen = self.durations.get(stage.value, Durations())
            buckets = [(_bound(b), float(n)) for b, n in zip(STAGE_BUCKETS, seen.buckets, strict=True)]
            durations.add_metric([stage.value], [*buckets, ("+Inf", float(seen.count))], seen.total)
        yield durations

        failures = CounterMetricFamily(
            "vidpipe_stage_failures", "Stage runs that failed, by error code.", labels=["stage", "error_code"]
        )
        for (stage_name, code), count in sorted(self.failures.items()):
            failures.add_metric([stage_name, code], count)
        yield failures

        yield GaugeMetricFamily(
            "vidpipe_uploads_in_progress", "Videos announced whose source has not arrived.", self.uploads_in_progress
        )


def _queues(queues: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
    depth = GaugeMetricFamily("vidpipe_queue_depth", "Messages ready in the broker's queue.", labels=["queue"])
    delayed = GaugeMetricFamily(
        "vidpipe_queue_delayed", "Messages in the broker waiting for their delay to pass.", labels=["queue"]
    )
    for queue, counts in queues.items():
        depth.add_metric([queue], counts.get("ready", 0))
        delayed.add_metric([queue], counts.get("delayed", 0))
    yield depth
    yield delayed


def _bound(seconds: float) -> str:
    return repr(float(seconds))


async def take_snapshot(runtime: Runtime, queue_depths: QueueDepths | None) -> Snapshot:
    """Probe the services, then read the pipeline from the database and the queues from the broker.

    A service that does not answer is reported as down and its series are left out; the
    scrape itself still succeeds, so the numbers that could be read are not lost.
    """
    snapshot = Snapshot()
    probes: dict[str, Callable[[], Awaitable[Any]]] = {
        "database": lambda: _read_database(runtime, snapshot),
        "storage": runtime.storage.check,
        "search": runtime.search.check,
    }
    if queue_depths is not None:
        probes["broker"] = lambda: _read_queues(queue_depths, snapshot)
    outcomes = await asyncio.gather(*(_timed(name, probe) for name, probe in probes.items()))
    snapshot.checks = dict(zip(probes, outcomes, strict=True))
    return snapshot


async def _timed(name: str, probe: Callable[[], Awaitable[Any]]) -> tuple[bool, float]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout=_CHECK_TIMEOUT)
    except Exception as exc:
        logger.warning("The metrics scrape could not read the %s: %s.", name, type(exc).__name__)
        return False, time.perf_counter() - started
    return True, time.perf_counter() - started


async def _read_queues(queue_depths: QueueDepths, snapshot: Snapshot) -> None:
    # The broker's client is synchronous (Redis); a thread keeps the event loop free meanwhile.
    snapshot.queues = await asyncio.to_thread(queue_depths)


async def _read_database(runtime: Runtime, snapshot: Snapshot) -> None:
    async with runtime.database.sessions() as session:
        await session.execute(text("SELECT 1"))
        snapshot.jobs = await _jobs_by_state(session)
        await _waiting_and_running(session, snapshot)
        snapshot.durations = await read_durations(session)
        snapshot.failures = await _failures(session)
        snapshot.uploads_in_progress = (
            await session.scalar(
                select(func.count()).select_from(Video).where(Video.status == VideoStatus.AWAITING_UPLOAD.value)
            )
            or 0
        )
    snapshot.pipeline_read = True


async def _jobs_by_state(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: count for status, count in rows}


async def _waiting_and_running(session: AsyncSession, snapshot: Snapshot) -> None:
    # A run re-queued after a transient failure waits for its backoff on purpose: it counts as
    # waiting from the moment it may be taken, not from the moment it was re-queued.
    ready_at = case((StageRun.next_attempt_at > StageRun.queued_at, StageRun.next_attempt_at), else_=StageRun.queued_at)
    rows = await session.execute(
        select(StageRun.stage, StageRun.status, func.count(), func.min(ready_at))
        .where(StageRun.status.in_([StageStatus.QUEUED.value, StageStatus.RUNNING.value]))
        .group_by(StageRun.stage, StageRun.status)
    )
    for stage, status, count, oldest in rows:
        snapshot.stage_runs[(stage, status)] = count
        if status == StageStatus.QUEUED and oldest is not None:
            snapshot.oldest_waiting[stage] = oldest


async def _failures(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = await session.execute(
        select(StageRun.stage, StageRun.error_code, func.count())
        .where(StageRun.status == StageStatus.FAILED.value)
        .group_by(StageRun.stage, StageRun.error_code)
    )
    return {(stage, code or "unknown"): count for stage, code, count in rows}


class RequestIdMiddleware(ASGIMiddleware):
    """Gives each request an id, puts it on every log line made while answering, and logs the answer.

    The id is the caller's ``X-Request-ID`` when it is a plain token of at most 64 characters,
    otherwise a new one; the answer carries it back in ``X-Request-ID``, so a client reporting
    a problem can name the request and an operator can find its lines.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_id = _request_id(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)["x-request-id"] = request_id
            await send(message)

        with log_context(request_id=request_id):
            try:
                await next_app(scope, receive, send_with_id)
            finally:
                _access_line(scope, status, time.perf_counter() - started)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


def _access_line(scope: Scope, status: int, seconds: float) -> None:
    path: str = scope.get("path", "")
    method = str(scope.get("method", "?"))
    # Health probes and scrapes come every few seconds, and pollers read jobs many times a
    # second: successful reads stay out of the log unless debugging (the request metrics count
    # them). Changes, refusals and failures are always logged.
    quiet = path.startswith(_PROBE_PREFIXES) or (method in _READS and (200 <= status < 300 or status == 304))
    if quiet and not logger.isEnabledFor(logging.DEBUG):
        return
    level = logging.DEBUG if quiet else logging.INFO
    logger.log(level, "Request %s %s answered %d in %.1f ms.", method, path, status, seconds * 1000)
