"""The four stages of a job, each a module named for what it produces."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.stages import index, ingest, subtitles, thumbnails
from pipeline.stages.runner import StageContext, StageFunction, run_stage
from pipeline.states import Stage

STAGE_FUNCTIONS: Mapping[Stage, StageFunction] = {
    Stage.INGEST: ingest.run,
    Stage.THUMBNAILS: thumbnails.run,
    Stage.SUBTITLES: subtitles.run,
    Stage.INDEX: index.run,
}

__all__ = ["STAGE_FUNCTIONS", "StageContext", "run_stage"]
