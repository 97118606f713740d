"""The account tables beside ``users``: refresh tokens and login events.

A refresh token is stored only as its SHA-256 digest, so a copy of the database cannot be
replayed against the API. Tokens issued from one login share a ``family_id``: rotation adds a
row to the family, and presenting a row that was already rotated revokes the whole family,
because either the client or a thief holds a stale copy and the two cannot be told apart.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db.models import Base, utcnow


class RefreshToken(Base):
    """One opaque refresh token; a row is never reused once ``used_at`` or ``revoked_at`` is set."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    """Shared by every token descended from one login; revocation works on the family."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """Hex SHA-256 of the token; the token itself is shown to the client once and never stored."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    """When it was exchanged for its successor."""
    revoked_at: Mapped[datetime | None] = mapped_column()
    """When its family was revoked by logout or by reuse of a rotated token."""


class LoginEvent(Base):
    """One login attempt, successful or not, for the account owner to review."""

    __tablename__ = "login_events"
    __table_args__ = (Index("ix_login_events_user_id_occurred_at", "user_id", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    """``None`` when the login named no known account."""
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    success: Mapped[bool] = mapped_column(Boolean)
