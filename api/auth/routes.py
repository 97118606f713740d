"""The account routes under ``/api/v1``: public ones (register, login, refresh, email links) and guarded ones.

Which router a controller is mounted on decides whether it is public; see :mod:`api.app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import service
from api.auth.guard import CallerCache, claims_of
from api.auth.ratelimit import RateLimiter
from api.auth.schemas import (
    EmailRequest,
    LoginEventView,
    LoginRequest,
    ProfileUpdate,
    RefreshRequest,
    RegisteredUser,
    RegisterRequest,
    ResetPasswordRequest,
    TokenPair,
    UserProfile,
    VerifyEmailRequest,
)
from api.errors import remember_language
from pipeline import i18n
from pipeline.db.models import User
from pipeline.runtime import Runtime

AnyRequest = Request[Any, Any, Any]

# The body and dependency markers need Litestar 2.23 or later.


async def provide_session(state: State) -> AsyncIterator[AsyncSession]:
    """One database session per request."""
    runtime: Runtime = state.runtime
    async with runtime.database.sessions() as session:
        yield session


def _client(request: AnyRequest) -> service.Client:
    # Behind a reverse proxy listed in VIDPIPE_TRUSTED_PROXIES, uvicorn has already put the
    # client's own address (from X-Forwarded-For) here; otherwise it is the peer's.
    address = request.client.host if request.client else None
    return service.Client(address=address, user_agent=request.headers.get("user-agent"))


async def _limit(request: AnyRequest, action: str) -> None:
    limiter: RateLimiter = request.app.state.auth_limiter
    await limiter.hit(f"{action}:{_client(request).address or 'unknown'}")


class PublicAuthController(Controller):
    """Routes that create a session; they are public by construction."""

    path = "/auth"
    tags = ("auth",)

    @post("/register", status_code=201)
    async def register(
        self, request: AnyRequest, state: State, data: JSONBody[RegisterRequest], db: NamedDependency[AsyncSession]
    ) -> RegisteredUser:
        """Create a member account and email it a link that confirms the address.

        The account's language (``en`` or ``ko``, for its emails) is taken from ``Accept-Language``
        and can be changed later. At most 10 attempts per minute per client address (per API process).
        """
        await _limit(request, "register")
        language = i18n.from_accept_language(request.headers.get("accept-language")) or i18n.ENGLISH
        user = await service.register(db, data.email, data.username, data.password, language=language)
        runtime: Runtime = state.runtime
        await service.request_verification(db, runtime.dispatcher, user)
        return _account(user)

    @post("/login", status_code=200)
    async def login(
        self, request: AnyRequest, state: State, data: JSONBody[LoginRequest], db: NamedDependency[AsyncSession]
    ) -> TokenPair:
        """Exchange an email or username and a password for tokens; rate-limited like register."""
        await _limit(request, "login")
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

    @post("/verify-email", status_code=200)
    async def verify_email(
        self, state: State, data: JSONBody[VerifyEmailRequest], db: NamedDependency[AsyncSession]
    ) -> RegisteredUser:
        """Confirm the account's email address with the token of the link in the verification email."""
        runtime: Runtime = state.runtime
        return _account(await service.verify_email(db, runtime.settings.secret_key, data.token))

    @get("/verify-email")
    async def verify_email_link(
        self, state: State, token: FromQuery[str], db: NamedDependency[AsyncSession]
    ) -> RegisteredUser:
        """What the link in the verification email opens: the same as ``POST /auth/verify-email``.

        Confirming is idempotent and only proves the mailbox received the link, so answering a
        plain GET is safe, and a person can confirm by clicking without any client.
        """
        runtime: Runtime = state.runtime
        return _account(await service.verify_email(db, runtime.settings.secret_key, token))

    @post("/resend-verification", status_code=202, media_type=MediaType.TEXT)
    async def resend_verification(
        self, request: AnyRequest, state: State, data: JSONBody[EmailRequest], db: NamedDependency[AsyncSession]
    ) -> None:
        """Send a new verification email if the address belongs to an unconfirmed account.

        The answer is 202 whatever the address, so it tells nothing about which accounts exist.
        At most one email per account per minute; rate-limited per client address like login.
        """
        await _limit(request, "resend-verification")
        runtime: Runtime = state.runtime
        await service.resend_verification(db, runtime.dispatcher, data.email)

    @post("/forgot-password", status_code=202, media_type=MediaType.TEXT)
    async def forgot_password(
        self, request: AnyRequest, state: State, data: JSONBody[EmailRequest], db: NamedDependency[AsyncSession]
    ) -> None:
        """Email a password reset link if the address belongs to an account.

        The answer is 202 whatever the address, so it tells nothing about which accounts exist.
        The link works once, for an hour. At most one email per account per minute; rate-limited
        per client address like login.
        """
        await _limit(request, "forgot-password")
        runtime: Runtime = state.runtime
        await service.request_password_reset(db, runtime.dispatcher, data.email)

    @post("/reset-password", status_code=200)
    async def reset_password(
        self,
        request: AnyRequest,
        state: State,
        data: JSONBody[ResetPasswordRequest],
        db: NamedDependency[AsyncSession],
    ) -> RegisteredUser:
        """Choose a new password with the token of the link in the reset email.

        The password policy of registration applies. Every session of the account is closed (its
        refresh tokens are revoked and its access tokens refused), and the link stops working.
        Rate-limited like login.
        """
        await _limit(request, "reset-password")
        runtime: Runtime = state.runtime
        user = await service.reset_password(db, runtime.settings.secret_key, data.token, data.password)
        callers: CallerCache = request.app.state.callers
        callers.forget(user.id)  # this process refuses the old access tokens at once, not a second later
        return _account(user)


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
        remember_language(request, user.language)
        return _profile(user)

    @patch("/")
    async def update_me(
        self, request: AnyRequest, data: JSONBody[ProfileUpdate], db: NamedDependency[AsyncSession]
    ) -> UserProfile:
        """Change the caller's display name, description, birthdate or language.

        Fields left out stay as they are; ``null`` clears a display name, description or birthdate.
        The language (``en`` or ``ko``) is that of the account's emails, and of error messages
        when a request sends no ``Accept-Language``.
        """
        user = await service.get_user(db, claims_of(request).user_id)
        remember_language(request, user.language)
        user = await service.update_profile(db, user, data)
        # The guard's cached caller carries the language: read it afresh on the next request.
        callers: CallerCache = request.app.state.callers
        callers.forget(user.id)
        return _profile(user)

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


def _account(user: User) -> RegisteredUser:
    return RegisteredUser(id=user.id, email=user.email, username=user.username, is_verified=user.is_verified)


def _profile(user: User) -> UserProfile:
    return UserProfile(
        id=user.id,
        email=user.email,
        username=user.username,
        is_verified=user.is_verified,
        role=user.role,
        created_at=user.created_at,
        display_name=user.display_name,
        description=user.description,
        birthdate=user.birthdate,
        language=user.language,
    )
