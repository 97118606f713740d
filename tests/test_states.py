"""The state model: the graph, and which moves the one transition check allows."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidTransition
from pipeline.states import (
    GRAPH,
    JobStatus,
    Stage,
    StageStatus,
    allowed_stage_sources,
    check_job_transition,
    check_stage_transition,
    dependents,
    downstream,
)


def test_the_graph_runs_ingest_then_thumbnails_and_subtitles_in_parallel_then_index() -> None:
    assert GRAPH[Stage.INGEST] == ()
    assert set(dependents(Stage.INGEST)) == {Stage.THUMBNAILS, Stage.SUBTITLES}
    assert set(GRAPH[Stage.INDEX]) == {Stage.THUMBNAILS, Stage.SUBTITLES}
    assert downstream(Stage.SUBTITLES) == (Stage.SUBTITLES, Stage.INDEX)
    assert downstream(Stage.INGEST) == tuple(Stage)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (StageStatus.PENDING, StageStatus.QUEUED),
        (StageStatus.QUEUED, StageStatus.RUNNING),
        (StageStatus.RUNNING, StageStatus.SUCCEEDED),
        (StageStatus.RUNNING, StageStatus.FAILED),
        (StageStatus.RUNNING, StageStatus.QUEUED),
        (StageStatus.PENDING, StageStatus.SKIPPED),
        (StageStatus.FAILED, StageStatus.PENDING),
    ],
)
def test_allowed_stage_moves_pass_the_check(current: StageStatus, target: StageStatus) -> None:
    check_stage_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (StageStatus.PENDING, StageStatus.RUNNING),
        (StageStatus.PENDING, StageStatus.SUCCEEDED),
        (StageStatus.SUCCEEDED, StageStatus.RUNNING),
        (StageStatus.SKIPPED, StageStatus.SUCCEEDED),
        (StageStatus.QUEUED, StageStatus.SUCCEEDED),
    ],
)
def test_forbidden_stage_moves_raise_invalid_transition(current: StageStatus, target: StageStatus) -> None:
    with pytest.raises(InvalidTransition):
        check_stage_transition(current, target)


def test_a_finished_job_can_only_be_queued_again() -> None:
    for done in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        check_job_transition(done, JobStatus.QUEUED)
        with pytest.raises(InvalidTransition):
            check_job_transition(done, JobStatus.RUNNING)


def test_only_a_queued_stage_can_be_claimed_for_running() -> None:
    assert allowed_stage_sources(StageStatus.RUNNING) == {StageStatus.QUEUED}
