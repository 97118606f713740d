"""The ``drops`` table: one row per file version seen in the drop location.

A row is keyed by the object's key and its fingerprint (the store's ETag, or size and
modification time), so a file is taken once however often it is scanned, and a new file
put under a used name is a new drop. Scanners running at once agree through this table:
the unique key decides who records a drop, conditional updates decide who takes it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db.models import Base, utcnow


class DropStatus(enum.StrEnum):
    """Where a drop is on its way from the folder to a job."""

    SETTLING = "settling"
    """Seen, but changed too recently to be taken."""
    PENDING = "pending"
    """Claimed by one scanner, which is hashing and submitting it."""
    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    """Its content was already taken (same SHA-256); no video was made."""
    REJECTED = "rejected"
    """It could not be submitted at all (an empty file); ``error_message`` says why."""


DROP_OPEN = frozenset({DropStatus.SETTLING, DropStatus.PENDING})
DROP_FINISHED = frozenset({DropStatus.SUBMITTED, DropStatus.DUPLICATE, DropStatus.REJECTED})

# Only one drop being taken may hold a given content: a second scanner that hashes the same
# bytes at the same moment loses on this index and records a duplicate, not a second video.
# Submitted drops are left out so that deleting a video lets its content be dropped again.
_TAKING_CONTENT = text("status = 'pending' AND sha256 IS NOT NULL")


class Drop(Base):
    __tablename__ = "drops"
    __table_args__ = (
        UniqueConstraint("key", "fingerprint", name="uq_drops_key_fingerprint"),
        Index("ix_drops_key_status", "key", "status"),
        Index(
            "ux_drops_pending_sha256",
            "sha256",
            unique=True,
            sqlite_where=_TAKING_CONTENT,
            postgresql_where=_TAKING_CONTENT,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(1024))
    """The object's key below the drop location's root."""
    fingerprint: Mapped[str] = mapped_column(String(200))
    """The ETag, or size and modification time; changes whenever the content does."""
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[datetime | None] = mapped_column()
    sha256: Mapped[str | None] = mapped_column(String(64))
    """Computed while the file is copied in, before any job runs."""
    status: Mapped[str] = mapped_column(String(16), default=DropStatus.SETTLING)
    video_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("videos.id", ondelete="SET NULL"))
    """The video made from this drop, or for a duplicate the video that already had its content."""
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    moved_to: Mapped[str | None] = mapped_column(String(1024))
    """Where the file went (``processed/…``, ``rejected/…``, ``duplicates/…``)."""
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When a scan last saw the fingerprint change; settling counts from here."""
    claimed_at: Mapped[datetime | None] = mapped_column()
    """When a scanner took the drop; an old claim is a scanner that died and may be taken over."""
    finished_at: Mapped[datetime | None] = mapped_column()
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
