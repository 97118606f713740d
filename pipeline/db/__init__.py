"""The database: SQLAlchemy 2 models, the async engine factory and migrations."""

from pipeline.db.engine import Database, open_database
from pipeline.db.models import (
    Base,
    Cue,
    Job,
    StageRun,
    SubtitleTrack,
    Thumbnail,
    User,
    Video,
)

__all__ = [
    "Base",
    "Cue",
    "Database",
    "Job",
    "StageRun",
    "SubtitleTrack",
    "Thumbnail",
    "User",
    "Video",
    "open_database",
]
