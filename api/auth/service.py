"""What the account routes do, on a database session: register, authenticate, rotate, revoke.

Log lines name user ids and decisions only; emails, usernames and tokens never reach the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import passwords, tokens
from api.auth.schemas import TokenPair
from api.errors import Unauthenticated
from pipeline.accounts import LoginEvent, RefreshToken
from pipeline.db.models import User
from pipeline.errors import Conflict, InvalidInput

logger = logging.getLogger(__name__)

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
# Deliberately loose: one @, a non-empty local part, a dotted domain, no spaces. Whether the
# address really receives mail is for email verification to find out.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


@dataclass(frozen=True)
class Client:
    """Where a request came from, as recorded with login events."""

    address: str | None
    user_agent: str | None


async def register(session: AsyncSession, email: str, username: str, password: str) -> User:
    """Create a member account after checking its shape, the password policy and uniqueness."""
    email = email.strip().lower()
    _check_shape(email, username)
    passwords.check_policy(password, username=username, email=email)
    await _check_free(session, email, username)

    user = User(
        email=email, username=username, password_hash=await asyncio.to_thread(passwords.hash_password, password)
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        # Another registration took the name between the check and the insert.
        await session.rollback()
        await _check_free(session, email, username)
        raise Conflict("The account already exists.", code="auth.email_taken") from exc
    logger.info("Registered user %s.", user.id)
    return user


async def authenticate(session: AsyncSession, login: str, password: str, client: Client) -> User:
    """Return the user that ``login`` (email or username) and ``password`` name; record the attempt."""
    user = await _find_by_login(session, login)
    if user is None:
        await asyncio.to_thread(passwords.burn_verification, password)
        await _record_login(session, None, client, success=False)
        logger.info("Refused a login that named no account.")
        raise _bad_credentials()

    # Hashing takes tens of milliseconds of CPU; a thread keeps the event loop serving others.
    matched, new_hash = await asyncio.to_thread(passwords.verify_password, password, user.password_hash)
    if not matched:
        await _record_login(session, user.id, client, success=False)
        logger.info("Refused a login for user %s: wrong password.", user.id)
        raise _bad_credentials()
    if new_hash is not None:
        user.password_hash = new_hash
        logger.info("Upgraded the password hash of user %s.", user.id)
    await _record_login(session, user.id, client, success=True)
    return user


async def issue_tokens(
    session: AsyncSession, user_id: uuid.UUID, secret: str, family_id: uuid.UUID | None = None
) -> TokenPair:
    """Sign an access token and store a new refresh token (in ``family_id``, or a new family)."""
    refresh = tokens.new_refresh_token()
    now = datetime.now(UTC)
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=tokens.refresh_token_digest(refresh),
            created_at=now,
            expires_at=now + tokens.REFRESH_TTL,
        )
    )
    await session.commit()
    access = tokens.issue_access_token(user_id, secret, now=now)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=int(tokens.ACCESS_TTL.total_seconds()))


async def rotate(session: AsyncSession, refresh: str, secret: str) -> TokenPair:
    """Exchange ``refresh`` for a new pair in the same family.

    Raises:
        Unauthenticated: ``auth.refresh_reused`` (and the family is revoked) when the token
            was already exchanged; ``auth.refresh_invalid`` when it is unknown, expired or revoked.
    """
    row = await _find_refresh(session, refresh)
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise _refresh_invalid()
    # The conditional update is the claim: of two requests presenting the same token at once,
    # exactly one marks it used, and the other is treated as reuse.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke(session, row.family_id, now)
        logger.warning(
            "Revoked token family %s of user %s: a rotated refresh token was reused.", row.family_id, row.user_id
        )
        raise Unauthenticated("The refresh token was already used; the session is closed.", code="auth.refresh_reused")
    return await issue_tokens(session, row.user_id, secret, family_id=row.family_id)


async def logout(session: AsyncSession, user_id: uuid.UUID, refresh: str) -> None:
    """Revoke the family of ``refresh``; a token unknown or belonging to someone else is refused."""
    row = await _find_refresh(session, refresh)
    if row is None or row.user_id != user_id:
        raise _refresh_invalid()
    await _revoke(session, row.family_id, datetime.now(UTC))
    logger.info("User %s logged out of token family %s.", row.user_id, row.family_id)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user an access token names; a deleted account makes the token useless."""
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("The access token is not valid.", code="auth.token_invalid")
    return user


async def login_history(session: AsyncSession, user_id: uuid.UUID, limit: int = 50) -> list[LoginEvent]:
    """The user's most recent login attempts, newest first."""
    result = await session.scalars(
        select(LoginEvent)
        .where(LoginEvent.user_id == user_id)
        .order_by(LoginEvent.occurred_at.desc(), LoginEvent.id)
        .limit(limit)
    )
    return list(result)


def _check_shape(email: str, username: str) -> None:
    if not _EMAIL.fullmatch(email) or len(email) > 320:
        raise InvalidInput("The email address is not valid.", code="auth.invalid_email")
    if not _USERNAME.fullmatch(username):
        raise InvalidInput(
            "The username must be 3 to 32 letters, digits, dots, dashes or underscores.", code="auth.invalid_username"
        )


async def _check_free(session: AsyncSession, email: str, username: str) -> None:
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("An account with this email address already exists.", code="auth.email_taken")
    taken = await session.scalar(select(User.id).where(func.lower(User.username) == username.lower()))
    if taken is not None:
        raise Conflict("This username is taken.", code="auth.username_taken")


async def _find_by_login(session: AsyncSession, login: str) -> User | None:
    login = login.strip()
    return await session.scalar(
        select(User).where(or_(User.email == login.lower(), func.lower(User.username) == login.lower())).limit(1)
    )


async def _find_refresh(session: AsyncSession, refresh: str) -> RefreshToken | None:
    digest = tokens.refresh_token_digest(refresh)
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))


async def _revoke(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.commit()


async def _record_login(session: AsyncSession, user_id: uuid.UUID | None, client: Client, *, success: bool) -> None:
    session.add(
        LoginEvent(
            user_id=user_id,
            client_address=(client.address or "")[:64] or None,
            user_agent=(client.user_agent or "")[:512] or None,
            success=success,
        )
    )
    await session.commit()


def _bad_credentials() -> Unauthenticated:
    return Unauthenticated("The login or the password is wrong.", code="auth.invalid_credentials")


def _refresh_invalid() -> Unauthenticated:
    return Unauthenticated("The refresh token is not valid.", code="auth.refresh_invalid")
