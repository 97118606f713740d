"""The job routes under ``/api/v1/jobs``: read a job (with ETag and long-poll), retry, cancel, follow it.

Visibility: a member sees only the jobs of videos they own; an admin sees every job. A job the
caller may not see answers exactly like a missing one (404 ``job.not_found``), so job ids of
other accounts cannot be probed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import Viewer, viewer_of
from api.readcache import ReadCache
from pipeline.db.models import Job
from pipeline.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from pipeline.jobs import cancel_job, load_job, retry_job
from pipeline.reports import job_summary, read_job_view, stage_report
from pipeline.runtime import Runtime
from pipeline.states import JOB_TERMINAL, JobStatus, Stage

logger = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]

MAX_WAIT_SECONDS = 30.0
LONG_POLL_INTERVAL = 0.2
EVENTS_POLL_INTERVAL = 0.25


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True):
    stage: str | None = None
    """Run only this stage and what depends on it; every stage when absent."""


def job_view(job: Job) -> dict[str, Any]:
    """The job's summary with its stage runs, as the job routes answer it."""
    return {**job_summary(job), "stages": [stage_report(run) for run in job.stages]}


def etag_of(body: dict[str, Any]) -> str:
    """A strong ETag for a job view: a hash of its canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


async def visible_job(db: AsyncSession, viewer: Viewer, job_id: uuid.UUID) -> Job:
    """The job, or ``job.not_found`` when it is missing or belongs to someone else's video."""
    job = await load_job(db, job_id)
    if not viewer.may_see(job.video.owner_id):
        raise NotFound(f"There is no job {job_id}.", code="job.not_found")
    return job


async def _visible_view(db: AsyncSession, viewer: Viewer, job_id: uuid.UUID) -> dict[str, Any]:
    """The job view for a poller, read in one database round trip.

    This is the route clients poll, so it reads plain rows (the job, its stage runs and its
    video's owner together) instead of loading objects query by query.
    """
    read = await read_job_view(db, job_id)
    if read is None or not viewer.may_see(read.owner_id):
        raise NotFound(f"There is no job {job_id}.", code="job.not_found")
    return read.body


@dataclass(frozen=True)
class PolledView:
    """A job view as the polled route sends it: encoded and tagged once per read, not per request."""

    encoded: bytes
    etag: str


async def _polled_view(runtime: Runtime, viewer: Viewer, job_id: uuid.UUID) -> PolledView:
    async with runtime.database.sessions() as session:
        body = await _visible_view(session, viewer, job_id)
    return PolledView(encoded=msgspec.json.encode(body), etag=etag_of(body))


def forget_job_views(request: AnyRequest, job_id: uuid.UUID | None = None) -> None:
    """Drop this process's cached views of ``job_id`` (of every job when ``None``) after changing it.

    Every route that changes a job calls this, so the next poll through the same process reads
    the change; other API processes see it within the cache's freshness (see :mod:`api.readcache`).
    """
    _job_views(request).forget(lambda key: job_id is None or key[0] == job_id)


def _job_views(request: AnyRequest) -> ReadCache[tuple[uuid.UUID, uuid.UUID], PolledView]:
    """This process's cache of job views, made on first use."""
    state = request.app.state
    if "job_views" not in state:
        state["job_views"] = ReadCache[tuple[uuid.UUID, uuid.UUID], PolledView]()
    cache: ReadCache[tuple[uuid.UUID, uuid.UUID], PolledView] = state["job_views"]
    return cache


async def _fresh_view(runtime: Runtime, job_id: uuid.UUID) -> dict[str, Any]:
    # A new session per poll: a long-lived one could keep reading an old snapshot.
    async with runtime.database.sessions() as session:
        read = await read_job_view(session, job_id)
    if read is None:
        raise NotFound(f"There is no job {job_id}.", code="job.not_found")
    return read.body


async def _wait_for_change(runtime: Runtime, job_id: uuid.UUID, seen: str, wait: float) -> dict[str, Any] | None:
    """Poll until the job's ETag differs from ``seen``; ``None`` when ``wait`` runs out first."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await asyncio.sleep(min(LONG_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        body = await _fresh_view(runtime, job_id)
        if etag_of(body) != seen:
            return body
    return None


def _answer(body: dict[str, Any] | None, etag: str, status: int = 200) -> Response[Any]:
    if body is None:
        return Response(content=b"", status_code=304, headers={"ETag": etag})
    return Response(content=body, status_code=status, headers={"ETag": etag_of(body)})


def _parse_stage(name: str | None) -> Stage | None:
    if name is None:
        return None
    try:
        return Stage(name)
    except ValueError:
        details = {"stages": [stage.value for stage in Stage]}
        raise InvalidInput(f"There is no stage {name!r}.", code="job.unknown_stage", details=details) from None


async def _job_events(runtime: Runtime, job_id: uuid.UUID) -> AsyncIterator[ServerSentEventMessage]:
    """One ``job`` event per change of the job, ending after the one that shows a terminal state."""
    last = ""
    while True:
        body = await _fresh_view(runtime, job_id)
        etag = etag_of(body)
        if etag != last:
            last = etag
            yield ServerSentEventMessage(data=json.dumps(body), event="job", id=etag.strip('"'))
        if JobStatus(body["status"]) in JOB_TERMINAL:
            return
        await asyncio.sleep(EVENTS_POLL_INTERVAL)


class JobsController(Controller):
    """Reading, following, retrying and cancelling one job."""

    path = "/jobs"
    tags = ("jobs",)

    @get("/{job_id:uuid}")
    async def read(
        self, request: AnyRequest, job_id: FromPath[uuid.UUID], wait: FromQuery[float] = 0.0
    ) -> Response[Any]:
        """The job and its stages, with an ETag.

        With ``If-None-Match`` the answer is 304 while the job is unchanged; adding ``wait``
        (seconds, at most 30) holds the request until the job changes or the time runs out.
        """
        viewer = viewer_of(request)
        runtime: Runtime = request.app.state.runtime
        views, key = _job_views(request), (job_id, viewer.user_id)
        view = await views.get(key, lambda: _polled_view(runtime, viewer, job_id))
        seen = request.headers.get("if-none-match")
        if seen is not None and seen != view.etag:
            # The client holds another version than the cached one: possibly a newer one, from a
            # long-poll or another API process. Read afresh, so no client ever steps back in time.
            views.forget(lambda cached: cached == key)
            view = await views.get(key, lambda: _polled_view(runtime, viewer, job_id))
        etag = view.etag
        if seen != etag:
            return Response(content=view.encoded, media_type=MediaType.JSON, headers={"ETag": etag})
        if wait <= 0:
            return _answer(None, etag)
        return _answer(await _wait_for_change(runtime, job_id, seen, min(wait, MAX_WAIT_SECONDS)), etag)

    @post("/{job_id:uuid}/retry", status_code=202)
    async def retry(
        self,
        request: AnyRequest,
        job_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        data: JSONBody[RetryRequest | None] = None,
    ) -> dict[str, Any]:
        """Run a finished job again: every stage, or ``stage`` and what depends on it."""
        viewer = viewer_of(request)
        await visible_job(db, viewer, job_id)
        stage = _parse_stage(data.stage if data else None)
        runtime: Runtime = request.app.state.runtime
        try:
            await retry_job(db, runtime.dispatcher, job_id, stage)
        except InvalidTransition:
            raise Conflict("The job has not ended, so it cannot be retried yet.", code="job.not_finished") from None
        forget_job_views(request, job_id)
        logger.info("Job %s was queued again by user %s.", job_id, viewer.user_id)
        return job_view(await load_job(db, job_id))

    @post("/{job_id:uuid}/cancel", status_code=202)
    async def cancel(
        self, request: AnyRequest, job_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> dict[str, Any]:
        """Cancel a job that has not ended; a running stage stops within a heartbeat."""
        await visible_job(db, viewer_of(request), job_id)
        if not await cancel_job(db, job_id):
            raise Conflict("The job has already ended.", code="job.already_finished")
        await db.commit()
        forget_job_views(request, job_id)
        return job_view(await load_job(db, job_id))

    @get("/{job_id:uuid}/events")
    async def events(
        self, request: AnyRequest, job_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> ServerSentEvent:
        """Server-Sent Events: a ``job`` event with the job on every change, until it ends."""
        await visible_job(db, viewer_of(request), job_id)
        await db.rollback()
        runtime: Runtime = request.app.state.runtime
        return ServerSentEvent(_job_events(runtime, job_id))
