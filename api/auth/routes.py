"""The account routes under ``/api/v1``: public ones (register, login, refresh) and guarded ones.

Which router a controller is mounted on decides whether it is public; see :mod:`api.app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import service
from api.auth.guard import claims_of
from api.auth.ratelimit import RateLimiter
from api.auth.schemas import (
    LoginEventView,
    LoginRequest,
    RefreshRequest,
    RegisteredUser,
    RegisterRequest,
    TokenPair,
    UserProfile,
)
from pipeline.runtime import Runtime

AnyRequest = Request[Any, Any, Any]

# The body and dependency markers need Litestar 2.23 or later.


async def provide_session(state: State) -> AsyncIterator[AsyncSession]:
    """One database session per request."""
    runtime: Runtime = state.runtime
    async with runtime.database.sessions() as session:
        yield session


def _client(request: AnyRequest) -> service.Client:
    # TODO(proxies): behind a reverse proxy this is the proxy's address, so every client shares
    # one rate-limit budget; trusting X-Forwarded-For needs a configured list of trusted proxies.
    address = request.client.host if request.client else None
    return service.Client(address=address, user_agent=request.headers.get("user-agent"))


def _limit(request: AnyRequest, action: str) -> None:
    limiter: RateLimiter = request.app.state.auth_limiter
    limiter.hit(f"{action}:{_client(request).address or 'unknown'}")


class PublicAuthController(Controller):
    """Routes that create a session; they are public by construction."""

    path = "/auth"
    tags = ("auth",)

    @post("/register", status_code=201)
    async def register(
        self, request: AnyRequest, data: JSONBody[RegisterRequest], db: NamedDependency[AsyncSession]
    ) -> RegisteredUser:
        """Create a member account; at most 10 attempts per minute per client address (per API process)."""
        _limit(request, "register")
        user = await service.register(db, data.email, data.username, data.password)
        return RegisteredUser(id=user.id, email=user.email, username=user.username, is_verified=user.is_verified)

    @post("/login", status_code=200)
    async def login(
        self, request: AnyRequest, state: State, data: JSONBody[LoginRequest], db: NamedDependency[AsyncSession]
    ) -> TokenPair:
        """Exchange an email or username and a password for tokens; rate-limited like register."""
        _limit(request, "login")
        user = await service.authenticate(db, data.login, data.password, _client(request))
        runtime: Runtime = state.runtime
        return await service.issue_tokens(db, user.id, runtime.settings.secret_key)

    @post("/refresh", status_code=200)
    async def refresh(
        self, state: State, data: JSONBody[RefreshRequest], db: NamedDependency[AsyncSession]
    ) -> TokenPair:
        """Rotate a refresh token; presenting an already rotated one closes its whole session."""
        runtime: Runtime = state.runtime
        return await service.rotate(db, data.refresh_token, runtime.settings.secret_key)


class SessionController(Controller):
    """Routes that end a session; they need the access token of its owner."""

    path = "/auth"
    tags = ("auth",)

    @post("/logout", status_code=204)
    async def logout(
        self, request: AnyRequest, data: JSONBody[RefreshRequest], db: NamedDependency[AsyncSession]
    ) -> None:
        """Revoke the refresh token's family; access tokens already issued expire on their own."""
        await service.logout(db, claims_of(request).user_id, data.refresh_token)


class UsersController(Controller):
    """The caller's own account."""

    path = "/users/me"
    tags = ("users",)

    @get("/")
    async def me(self, request: AnyRequest, db: NamedDependency[AsyncSession]) -> UserProfile:
        """The caller's profile."""
        user = await service.get_user(db, claims_of(request).user_id)
        return UserProfile(
            id=user.id,
            email=user.email,
            username=user.username,
            is_verified=user.is_verified,
            role=user.role,
            created_at=user.created_at,
        )

    @get("/logins")
    async def logins(self, request: AnyRequest, db: NamedDependency[AsyncSession]) -> list[LoginEventView]:
        """The caller's 50 most recent login attempts, newest first."""
        events = await service.login_history(db, claims_of(request).user_id)
        return [
            LoginEventView(
                occurred_at=e.occurred_at, success=e.success, client_address=e.client_address, user_agent=e.user_agent
            )
            for e in events
        ]
