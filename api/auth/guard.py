"""The access guard: every handler behind it needs a valid bearer access token.

The guard puts the verified :class:`~api.auth.tokens.AccessClaims` on ``request.auth``, so a
handler reads who is calling without decoding the token again.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from api.auth.tokens import AccessClaims, decode_access_token
from api.errors import Unauthenticated
from pipeline.runtime import Runtime

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
"""The OpenAPI security requirement of guarded routes."""


async def require_access_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Accept only a valid, unexpired ``type: access`` token from the ``Authorization`` header."""
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("This route needs a bearer access token.", code="auth.token_missing")
    runtime: Runtime = connection.app.state.runtime
    connection.scope["auth"] = decode_access_token(token.strip(), runtime.settings.secret_key)


def claims_of(connection: ASGIConnection[Any, Any, Any, Any]) -> AccessClaims:
    """The claims the guard verified for this request."""
    claims: AccessClaims = connection.scope["auth"]
    return claims
