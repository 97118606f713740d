"""The tables vidpipe keeps: users, videos, jobs, stage runs, thumbnails, subtitle tracks, cues.

Every row a client can name has a random UUID, so ids reveal neither counts nor order.
Cues are the exception: they are never addressed on their own, and an integer key keeps the
full-text tables small. All times are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from pipeline.states import JobStatus, StageStatus, VideoStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("vidpipe stores only timezone-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="member")
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    display_name: Mapped[str | None] = mapped_column(String(80))
    """The name shown for the account; ``None`` until the owner sets one."""
    description: Mapped[str | None] = mapped_column(String(2000))
    birthdate: Mapped[date | None] = mapped_column()
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    """``en`` or ``ko``: the language of the account's emails, and of its error messages when a
    request does not name one in ``Accept-Language``."""
    kind: Mapped[str] = mapped_column(String(16), default="person", server_default="person")
    """``person`` (logs in with a password) or ``service`` (an ingest tool; API keys only)."""
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    """The account that created this service account; ``None`` for people."""
    disabled_at: Mapped[datetime | None] = mapped_column()
    """When an admin disabled the account; a disabled account's passwords, tokens and keys are refused."""
    sessions_valid_after: Mapped[datetime | None] = mapped_column()
    """Access tokens issued before this are refused: set when the password is reset."""


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(35))
    status: Mapped[str] = mapped_column(String(16), default=VideoStatus.PENDING)
    source_key: Mapped[str] = mapped_column(String(1024))
    """Where the uploaded original lives in object storage."""
    source_filename: Mapped[str] = mapped_column(String(500))
    """The name the file had on the uploader's machine; never passed to a tool as a path."""
    poster_at: Mapped[float | None] = mapped_column(Float)
    """The poster time the uploader asked for, in seconds; ``None`` picks a sensible point."""
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    container: Mapped[str | None] = mapped_column(String(64))
    duration: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    display_width: Mapped[int | None] = mapped_column(Integer)
    """Width as a player shows it: rotation and pixel aspect ratio applied."""
    display_height: Mapped[int | None] = mapped_column(Integer)
    rotation: Mapped[int | None] = mapped_column(Integer)
    frame_rate: Mapped[float | None] = mapped_column(Float)
    video_codec: Mapped[str | None] = mapped_column(String(64))
    audio_codec: Mapped[str | None] = mapped_column(String(64))
    bit_rate: Mapped[int | None] = mapped_column(BigInteger)
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    ingest_notes: Mapped[list[Any] | None] = mapped_column(JSON)
    """Problems met while taking the video in (an unreadable sidecar file), as sentences."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="video", cascade="all, delete-orphan")
    thumbnails: Mapped[list[Thumbnail]] = relationship(
        cascade="all, delete-orphan", order_by="Thumbnail.kind, Thumbnail.position"
    )
    subtitle_tracks: Mapped[list[SubtitleTrack]] = relationship(
        cascade="all, delete-orphan", order_by="SubtitleTrack.created_at"
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    video: Mapped[Video] = relationship(back_populates="jobs")
    stages: Mapped[list[StageRun]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="StageRun.position"
    )


class StageRun(Base):
    __tablename__ = "stage_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "stage"),
        Index("ix_stage_runs_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    """The stage's place in the graph's order, for stable listings."""
    status: Mapped[str] = mapped_column(String(16), default=StageStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """0 to 100."""
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    """When a transient failure scheduled the next attempt."""

    job: Mapped[Job] = relationship(back_populates="stages")


class StageDurationTotal(Base):
    """How many succeeded stage runs took up to one of the histogram's bounds, and their seconds.

    Kept by the stage runner as stages succeed (see :mod:`pipeline.stagetotals`); never
    decremented, so the metrics read from it are true counters.
    """

    __tablename__ = "stage_duration_totals"

    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Position of the lowest bound the runs fit under in ``STAGE_BUCKETS``; its length beyond the last."""
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Thumbnail(Base):
    """An image (or the storyboard's WebVTT index) produced for a video."""

    __tablename__ = "thumbnails"
    __table_args__ = (UniqueConstraint("video_id", "kind", "position"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """``poster``, ``candidate``, ``sprite`` or ``storyboard`` (the WebVTT index)."""
    position: Mapped[int] = mapped_column(Integer, default=0)
    time: Mapped[float | None] = mapped_column(Float)
    key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)


class SubtitleTrack(Base):
    __tablename__ = "subtitle_tracks"
    __table_args__ = (UniqueConstraint("video_id", "source", "source_ref"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    """``file`` (given with the video) or ``embedded`` (a text stream of the container)."""
    source_ref: Mapped[str] = mapped_column(String(1024))
    """The object key of a given file, or ``stream:<index>`` of an embedded track."""
    filename: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str | None] = mapped_column(String(35))
    label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending``, ``ready`` or ``failed``; a failed track never fails the job."""
    format: Mapped[str | None] = mapped_column(String(16))
    encoding: Mapped[str | None] = mapped_column(String(32))
    vtt_key: Mapped[str | None] = mapped_column(String(1024))
    """The normalised WebVTT in object storage."""
    cue_count: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cues: Mapped[list[Cue]] = relationship(cascade="all, delete-orphan", order_by="Cue.position")


class Cue(Base):
    __tablename__ = "cues"
    __table_args__ = (UniqueConstraint("track_id", "position"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    track_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subtitle_tracks.id", ondelete="CASCADE"))
    video_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    """The payload with its markup, as written to the normalised WebVTT."""
    plain_text: Mapped[str] = mapped_column(Text)
    """Markup stripped: what search matches."""
