"""The access guard: every handler behind it needs a bearer access token or an API key.

Two credentials are accepted: an access JWT as ``Authorization: Bearer <token>``, and a service
account's API key as ``Authorization: Bearer vpk_…`` or ``X-API-Key: vpk_…``. Either way the
account is read from the database, so a deleted or disabled account stops working at once,
not when its token expires. The guard puts a :class:`Caller` on ``request.auth``, so handlers
read who is calling without checking the credential again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.tokens import decode_access_token
from api.errors import Forbidden, Unauthenticated
from pipeline import apikeys
from pipeline.db.models import User
from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

# TODO(openapi): operations list only the bearer requirement, which covers a key sent as a bearer
# token; listing {"apiKey": []} beside it would document X-API-Key per operation, and needs the
# OpenAPI test in tests/test_api_auth.py to expect both.
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
"""The OpenAPI security requirement of guarded routes."""

API_KEY_HEADER = "X-API-Key"


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
    async with runtime.database.sessions() as session:
        if credential.startswith(apikeys.KEY_PREFIX):
            caller = await _key_caller(session, credential)
        else:
            claims = decode_access_token(credential, runtime.settings.secret_key)
            caller = await _token_caller(session, claims.user_id)
    connection.scope["auth"] = caller


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
    return Caller(user_id=user.id, role=user.role, kind=user.kind)


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
    return Caller(user_id=account.id, role=account.role, kind=account.kind, api_key_id=row.id)


def _key_invalid() -> Unauthenticated:
    return Unauthenticated("The API key is not valid.", code="auth.api_key_invalid")
