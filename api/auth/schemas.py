"""Request and response bodies of the account routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

# Upper bounds only: the shape rules (email form, username alphabet, password policy) are
# checked by the service so that each failure gets its own stable error code.
_Short = Annotated[str, msgspec.Meta(max_length=320)]
_Secret = Annotated[str, msgspec.Meta(max_length=1024)]


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: _Short
    username: _Short
    password: _Secret


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    login: _Short
    """The email address or the username."""
    password: _Secret


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: _Secret


class UserProfile(msgspec.Struct):
    id: uuid.UUID
    email: str
    username: str
    is_verified: bool
    role: str
    created_at: datetime


class RegisteredUser(msgspec.Struct):
    id: uuid.UUID
    email: str
    username: str
    is_verified: bool


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    """Seconds until the access token expires."""
    token_type: Literal["bearer"] = "bearer"


class LoginEventView(msgspec.Struct):
    occurred_at: datetime
    success: bool
    client_address: str | None
    user_agent: str | None
