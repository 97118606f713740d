"""The access guard: every handler behind it needs a bearer access token or an API key.

Two credentials are accepted: an access JWT as ``Authorization: Bearer <token>``, and a service
account's API key as ``Authorization: Bearer vpk_…`` or ``X-API-Key: vpk_…``. Either way the
account is read from the database, so a deleted or disabled account stops working within
:data:`ACCOUNT_FRESH_SECONDS`, not when its token expires. The guard puts a :class:`Caller` on
``request.auth``, so handlers read who is calling without checking the credential again.

Polling clients send the same token many times a second, so each API process remembers the
tokens it verified (until they expire) and the accounts it read (for
:data:`ACCOUNT_FRESH_SECONDS`) in a :class:`CallerCache`. The process that disables or demotes
an account forgets it at once; every other process reads it again within that time.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.tokens import AccessClaims, decode_access_token
from api.errors import Forbidden, Unauthenticated, remember_language
from api.readcache import ReadCache
from pipeline import apikeys
from pipeline.db.models import User
from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
"""The OpenAPI security requirement of guarded routes: a bearer access token, or an API key in
``X-API-Key`` (either alternative satisfies it)."""

API_KEY_HEADER = "X-API-Key"

ACCOUNT_FRESH_SECONDS = 1.0
"""How long an API process trusts an account it read for an access token."""


@dataclass(frozen=True)
class Caller:
    """Who a guarded request comes from, as the guard verified it."""

    user_id: uuid.UUID
    role: str
    """The role read from the database for this request: ``member`` or ``admin``."""
    kind: str
    """``person`` or ``service``."""
    api_key_id: uuid.UUID | None = None
    """The key that authenticated the request; ``None`` for an access token."""
    language: str = "en"
    """The account's language: error messages are in it when a request names none."""
    sessions_valid_after: datetime | None = None
    """Access tokens issued before this are refused (the password was reset then)."""

    @property
    def is_admin(self) -> bool:
        return self.role == apikeys.ADMIN

    @property
    def is_service(self) -> bool:
        return self.kind == apikeys.SERVICE


async def require_access_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Accept a valid access token or API key of an enabled account; refuse everything else."""
    credential = _credential(connection)
    runtime: Runtime = connection.app.state.runtime
    if credential.startswith(apikeys.KEY_PREFIX):
        async with runtime.database.sessions() as session:
            caller = await _key_caller(session, credential)
    else:
        callers: CallerCache = connection.app.state.callers
        claims = callers.verified(credential, runtime.settings.secret_key)
        caller = await callers.accounts.get(claims.user_id, lambda: _read_caller(runtime, claims.user_id))
        if caller.sessions_valid_after is not None and claims.issued_at < caller.sessions_valid_after:
            raise Unauthenticated(
                "This access token was issued before the account's password was reset; sign in again.",
                code="auth.token_revoked",
            )
    connection.scope["auth"] = caller
    remember_language(connection, caller.language)


class CallerCache:
    """The access tokens this process verified, and the accounts it read for them."""

    def __init__(self, fresh_seconds: float = ACCOUNT_FRESH_SECONDS, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._tokens: OrderedDict[str, tuple[AccessClaims, float]] = OrderedDict()
        self.accounts: ReadCache[uuid.UUID, Caller] = ReadCache(fresh_seconds, max_entries)
        """Callers by account; a refusal (deleted or disabled account) is kept as long as a caller."""

    def verified(self, token: str, secret: str) -> AccessClaims:
        """The claims of ``token``, verified once and then remembered until it expires.

        Raises:
            Unauthenticated: as :func:`decode_access_token` does; refusals are not remembered.
        """
        known = self._tokens.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        claims = decode_access_token(token, secret)
        self._tokens[token] = (claims, claims.expires_at.timestamp())
        if len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)
        return claims

    def forget(self, user_id: uuid.UUID) -> None:
        """Read ``user_id``'s account again on its next request (after its role or state changed)."""
        self.accounts.forget(lambda key: key == user_id)


async def _read_caller(runtime: Runtime, user_id: uuid.UUID) -> Caller:
    # Its own session: the read is shared by every request waiting on it and may outlive the first.
    async with runtime.database.sessions() as session:
        return await _token_caller(session, user_id)


def claims_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The caller the guard verified for this request."""
    caller: Caller = connection.scope["auth"]
    return caller


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Let only admins through; runs after :func:`require_access_token`."""
    caller = claims_of(connection)
    if not caller.is_admin:
        logger.info("Refused user %s an admin route: the role is %s.", caller.user_id, caller.role)
        raise Forbidden("This route is for administrators only.", code="auth.forbidden")


def refuse_disabled(user: User) -> None:
    """Raise ``auth.account_disabled`` (403) for a disabled account, whatever its credential."""
    if user.disabled_at is not None:
        raise Forbidden("This account is disabled; an administrator can enable it again.", code="auth.account_disabled")


def _credential(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    authorization = connection.headers.get("authorization")
    api_key = connection.headers.get(API_KEY_HEADER.lower())
    if authorization is not None and api_key is not None:
        raise Unauthenticated(
            f"Send one credential: either an Authorization header or an {API_KEY_HEADER} header, not both.",
            code="auth.credentials_ambiguous",
        )
    if api_key is not None:
        if not api_key.strip().startswith(apikeys.KEY_PREFIX):
            raise _key_invalid()
        return api_key.strip()
    scheme, _sep, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("This route needs a bearer access token or an API key.", code="auth.token_missing")
    return token.strip()


async def _token_caller(session: AsyncSession, user_id: uuid.UUID) -> Caller:
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("The access token is not valid.", code="auth.token_invalid")
    refuse_disabled(user)
    return Caller(
        user_id=user.id,
        role=user.role,
        kind=user.kind,
        language=user.language,
        sessions_valid_after=user.sessions_valid_after,
    )


async def _key_caller(session: AsyncSession, key: str) -> Caller:
    row = await apikeys.find_key(session, key)
    if row is None:
        raise _key_invalid()
    if row.revoked_at is not None:
        logger.info("Refused revoked API key %s.", row.prefix)
        raise Unauthenticated(
            "This API key was revoked; ask the account's owner for a new one.", code="auth.api_key_revoked"
        )
    account = await session.get(User, row.user_id)
    if account is None:
        raise _key_invalid()
    refuse_disabled(account)
    owner = await session.get(User, account.owner_id) if account.owner_id is not None else None
    if owner is not None and owner.disabled_at is not None:
        logger.info("Refused API key %s: the owner of service account %s is disabled.", row.prefix, account.id)
        raise Forbidden(
            "The owner of this service account is disabled; an administrator can enable it again.",
            code="auth.account_disabled",
        )
    await apikeys.record_key_use(session, row)
    return Caller(
        user_id=account.id, role=account.role, kind=account.kind, api_key_id=row.id, language=account.language
    )


def _key_invalid() -> Unauthenticated:
    return Unauthenticated("The API key is not valid.", code="auth.api_key_invalid")
