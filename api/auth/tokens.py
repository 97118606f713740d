"""Access tokens (short-lived signed JWTs) and refresh tokens (opaque random strings).

Access tokens are HS256 JWTs signed with the settings' secret key. Decoding names the one
accepted algorithm, so a token claiming ``alg: none`` or another algorithm is refused
before its claims are read. Refresh tokens carry no meaning: the database row behind their
digest is the truth, which is what makes rotation and revocation possible.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from api.errors import Unauthenticated

ALGORITHM = "HS256"
ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=30)
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "jti", "type"]


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token."""

    user_id: uuid.UUID
    token_id: str
    expires_at: datetime
    issued_at: datetime


def issue_access_token(user_id: uuid.UUID, secret: str, *, now: datetime | None = None) -> str:
    """Sign an access token for ``user_id`` valid for :data:`ACCESS_TTL`."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        # To the microsecond (a NumericDate may have a fraction): a token issued just after a
        # password reset must compare later than the reset, even within the same second.
        "iat": issued.timestamp(),
        "exp": issued + ACCESS_TTL,
        "jti": uuid.uuid4().hex,
        "type": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(token: str, secret: str) -> AccessClaims:
    """Verify signature, expiry and type of ``token``.

    Raises:
        Unauthenticated: ``auth.token_expired`` for an expired token, ``auth.token_invalid``
            for anything else wrong with it.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": _REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("The access token has expired.", code="auth.token_expired") from exc
    except jwt.InvalidTokenError as exc:
        raise _invalid() from exc
    if claims.get("type") != "access":
        raise _invalid()
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise _invalid() from exc
    return AccessClaims(
        user_id=user_id,
        token_id=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        issued_at=datetime.fromtimestamp(float(claims["iat"]), UTC),
    )


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def refresh_token_digest(token: str) -> str:
    """The digest stored for ``token``; a plain hash suffices because the token is random, not chosen."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _invalid() -> Unauthenticated:
    return Unauthenticated("The access token is not valid.", code="auth.token_invalid")
