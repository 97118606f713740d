"""Request and response bodies of the account routes."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

# Upper bounds only: the shape rules (email form, username alphabet, password policy) are
# checked by the service so that each failure gets its own stable error code.
_Short = Annotated[str, msgspec.Meta(max_length=320)]
_Secret = Annotated[str, msgspec.Meta(max_length=1024)]
_Text = Annotated[str, msgspec.Meta(max_length=10_000)]


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
    display_name: str | None
    description: str | None
    birthdate: date | None
    language: str
    """``en`` or ``ko``: emails, and error messages when a request sends no ``Accept-Language``."""


class ProfileUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The profile fields to change; a field left out stays as it is, ``null`` clears it."""

    display_name: _Text | UnsetType | None = UNSET
    """1 to 80 characters."""
    description: _Text | UnsetType | None = UNSET
    """At most 2000 characters."""
    birthdate: date | UnsetType | None = UNSET
    """``YYYY-MM-DD``, not in the future and not before 1900."""
    language: _Short | UnsetType = UNSET
    """``en`` or ``ko``."""


class EmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: _Short


class VerifyEmailRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: _Secret
    """The ``token`` parameter of the link in the verification email."""


class ResetPasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: _Secret
    """The ``token`` parameter of the link in the password reset email."""
    password: _Secret
    """The new password; the same policy as at registration applies."""


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
