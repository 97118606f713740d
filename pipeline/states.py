"""Job and stage-run states, the job graph, and the one function that checks a transition.

The graph is data: each stage names the stages it waits for. Every state write in vidpipe
goes through :func:`check_transition` (the database layer calls it before it writes), so a
state can only move along the arrows declared here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pipeline.errors import InvalidTransition


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class Stage(enum.StrEnum):
    INGEST = "ingest"
    THUMBNAILS = "thumbnails"
    SUBTITLES = "subtitles"
    INDEX = "index"


class VideoStatus(enum.StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    """Created through the API; its source has not arrived yet, so it has no job."""
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


JOB_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
STAGE_TERMINAL = frozenset({StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.CANCELLED})

GRAPH: Mapping[Stage, tuple[Stage, ...]] = {
    Stage.INGEST: (),
    Stage.THUMBNAILS: (Stage.INGEST,),
    Stage.SUBTITLES: (Stage.INGEST,),
    Stage.INDEX: (Stage.THUMBNAILS, Stage.SUBTITLES),
}
"""Each stage and the stages it waits for: ingest -> thumbnails ∥ subtitles -> index."""

STAGE_ORDER: tuple[Stage, ...] = tuple(GRAPH)


def dependents(stage: Stage) -> tuple[Stage, ...]:
    """The stages that wait for ``stage``."""
    return tuple(s for s, needs in GRAPH.items() if stage in needs)


def downstream(stage: Stage) -> tuple[Stage, ...]:
    """``stage`` and everything that depends on it, directly or not, in graph order."""
    found = {stage}
    for candidate in STAGE_ORDER:
        if any(need in found for need in GRAPH[candidate]):
            found.add(candidate)
    return tuple(s for s in STAGE_ORDER if s in found)


_JOB_MOVES: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    # A retry moves a finished job back to queued; nothing else leaves a terminal state.
    JobStatus.SUCCEEDED: frozenset({JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}

_STAGE_MOVES: Mapping[StageStatus, frozenset[StageStatus]] = {
    StageStatus.PENDING: frozenset({StageStatus.QUEUED, StageStatus.SKIPPED, StageStatus.CANCELLED}),
    StageStatus.QUEUED: frozenset(
        {StageStatus.RUNNING, StageStatus.SKIPPED, StageStatus.CANCELLED, StageStatus.FAILED}
    ),
    # Running goes back to queued when a transient failure schedules another attempt,
    # or when the reconciler hands back the work of a dead worker.
    StageStatus.RUNNING: frozenset(
        {StageStatus.QUEUED, StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.CANCELLED}
    ),
    StageStatus.SUCCEEDED: frozenset({StageStatus.PENDING, StageStatus.QUEUED}),
    StageStatus.FAILED: frozenset({StageStatus.PENDING, StageStatus.QUEUED}),
    StageStatus.SKIPPED: frozenset({StageStatus.PENDING, StageStatus.QUEUED}),
    StageStatus.CANCELLED: frozenset({StageStatus.PENDING, StageStatus.QUEUED}),
}


def check_job_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`InvalidTransition` unless a job may move from ``current`` to ``target``."""
    if target not in _JOB_MOVES[current]:
        raise InvalidTransition(f"A job cannot move from {current} to {target}.")


def check_stage_transition(current: StageStatus, target: StageStatus) -> None:
    """Raise :class:`InvalidTransition` unless a stage run may move from ``current`` to ``target``."""
    if target not in _STAGE_MOVES[current]:
        raise InvalidTransition(f"A stage run cannot move from {current} to {target}.")


def allowed_stage_sources(target: StageStatus) -> frozenset[StageStatus]:
    """The states a stage run may be in for a move to ``target``: the guard of a conditional update."""
    return frozenset(s for s, moves in _STAGE_MOVES.items() if target in moves)


def allowed_job_sources(target: JobStatus) -> frozenset[JobStatus]:
    """The states a job may be in for a move to ``target``."""
    return frozenset(s for s, moves in _JOB_MOVES.items() if target in moves)
