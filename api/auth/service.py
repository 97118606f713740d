"""What the account routes do, on a database session: register, authenticate, rotate, revoke.

Log lines name user ids and decisions only; emails, usernames and tokens never reach the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from msgspec import UNSET
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import passwords, tokens
from api.auth.guard import refuse_disabled
from api.auth.ratelimit import refuse_locked_account
from api.auth.schemas import ProfileUpdate, TokenPair
from api.errors import Unauthenticated
from pipeline import i18n
from pipeline.accounts import LoginEvent, RefreshToken
from pipeline.db.models import User
from pipeline.email import RESET_PASSWORD, VERIFY_EMAIL, Notifier, queue_email, read_token, still_binds
from pipeline.errors import Conflict, InvalidInput, PermanentError

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


async def register(
    session: AsyncSession, email: str, username: str, password: str, *, language: str = i18n.ENGLISH
) -> User:
    """Create a member account after checking its shape, the password policy and uniqueness."""
    email = email.strip().lower()
    _check_shape(email, username)
    passwords.check_policy(password, username=username, email=email)
    await _check_free(session, email, username)

    user = User(
        email=email,
        username=username,
        password_hash=await asyncio.to_thread(passwords.hash_password, password),
        language=language,
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
    if user is None or user.kind == "service":  # service accounts have API keys, never a password
        await asyncio.to_thread(passwords.burn_verification, password)
        await _record_login(session, None, client, success=False)
        logger.info("Refused a login that named no account with a password.")
        raise _bad_credentials()
    await refuse_locked_account(session, user.id)

    # Hashing takes tens of milliseconds of CPU; a thread keeps the event loop serving others.
    matched, new_hash = await asyncio.to_thread(passwords.verify_password, password, user.password_hash)
    if not matched:
        await _record_login(session, user.id, client, success=False)
        logger.info("Refused a login for user %s: wrong password.", user.id)
        raise _bad_credentials()
    refuse_disabled(user)
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


async def request_verification(session: AsyncSession, notifier: Notifier, user: User) -> None:
    """Queue an email with a link that confirms ``user``'s address."""
    await queue_email(session, notifier, user.id, VERIFY_EMAIL)


async def resend_verification(session: AsyncSession, notifier: Notifier, address: str) -> None:
    """Queue a new confirmation email when ``address`` names an unconfirmed account, else nothing.

    The route answers the same either way, so it cannot be used to learn which addresses have
    accounts or whether they are confirmed.
    """
    # TODO(enumeration): queueing costs a few milliseconds that a miss does not, which a patient
    # client could measure; queueing in the background after answering would close that gap.
    user = await _find_by_email(session, address)
    if user is None or user.is_verified or not _may_receive_email(user):
        logger.info("Queued no confirmation email: the address names no unconfirmed account.")
        return
    await queue_email(session, notifier, user.id, VERIFY_EMAIL)


async def verify_email(session: AsyncSession, secret: str, token: str) -> User:
    """Mark the account a confirmation token names as verified; confirming twice is harmless.

    Raises:
        PermanentError: ``auth.token_expired`` or ``auth.token_invalid`` (the token is altered,
            made for another purpose, or the account's address changed since it was sent).
    """
    claims = read_token(secret, VERIFY_EMAIL, token)
    user = await session.get(User, claims.user_id)
    if user is None or not still_binds(secret, VERIFY_EMAIL, claims, user):
        raise PermanentError(
            "The link was made for an address this account no longer has; ask for a new email.",
            code="auth.token_invalid",
        )
    if not user.is_verified:
        user.is_verified = True
        await session.commit()
        logger.info("User %s confirmed their email address.", user.id)
    return user


async def request_password_reset(session: AsyncSession, notifier: Notifier, address: str) -> None:
    """Queue a password reset email when ``address`` names an account with a password, else nothing."""
    user = await _find_by_email(session, address)
    if user is None or not _may_receive_email(user):
        logger.info("Queued no password reset email: the address names no account with a password.")
        return
    await queue_email(session, notifier, user.id, RESET_PASSWORD)


async def reset_password(session: AsyncSession, secret: str, token: str, password: str) -> User:
    """Set a new password with a reset token, and close every session of the account.

    The token is bound to the password hash it was issued against, so it works once: the new
    hash no longer matches it. Proving control of the mailbox also confirms the address.

    Raises:
        PermanentError: ``auth.token_expired``, ``auth.token_invalid``, or ``auth.token_used`` when
            the password changed since the token was issued (by this token or otherwise).
        InvalidInput: ``auth.weak_password``; the token stays usable for a better password.
    """
    claims = read_token(secret, RESET_PASSWORD, token)
    user = await session.get(User, claims.user_id)
    if user is None or user.kind == "service":
        raise PermanentError("The link is not valid; ask for a new email.", code="auth.token_invalid")
    if not still_binds(secret, RESET_PASSWORD, claims, user):
        raise _reset_link_used()
    refuse_disabled(user)
    passwords.check_policy(password, username=user.username, email=user.email)

    new_hash = await asyncio.to_thread(passwords.hash_password, password)
    # Conditional on the old hash: of two requests presenting the same token, one wins.
    claimed = await session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == user.password_hash)
        # Access tokens issued until now stop working too (the guard compares their iat).
        .values(password_hash=new_hash, is_verified=True, sessions_valid_after=datetime.now(UTC))
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        raise _reset_link_used()
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await session.commit()
    await session.refresh(user)
    logger.info("Reset the password of user %s and revoked all its refresh and access tokens.", user.id)
    return user


_PROFILE_NAME_MAX = 80
_PROFILE_DESCRIPTION_MAX = 2000
_EARLIEST_BIRTHDATE = date(1900, 1, 1)


async def update_profile(session: AsyncSession, user: User, changes: ProfileUpdate) -> User:
    """Apply the fields ``changes`` names to ``user``'s profile, after checking all of them."""
    values: dict[str, object] = {}
    if changes.display_name is not UNSET:
        values["display_name"] = _display_name(changes.display_name)
    if changes.description is not UNSET:
        values["description"] = _description(changes.description)
    if changes.birthdate is not UNSET:
        values["birthdate"] = _birthdate(changes.birthdate)
    if changes.language is not UNSET:
        values["language"] = _language(changes.language)

    for name, value in values.items():
        setattr(user, name, value)
    await session.commit()
    logger.info("User %s changed their profile: %s.", user.id, ", ".join(values) or "nothing")
    return user


def _display_name(value: str | None) -> str | None:
    text = unicodedata.normalize("NFC", value or "").strip()
    if not text:
        return None
    if len(text) > _PROFILE_NAME_MAX or any(unicodedata.category(char) == "Cc" for char in text):
        raise InvalidInput(
            f"The display name must be 1 to {_PROFILE_NAME_MAX} characters without control characters.",
            code="profile.invalid_display_name",
            details={"max_length": _PROFILE_NAME_MAX},
        )
    return text


def _description(value: str | None) -> str | None:
    text = unicodedata.normalize("NFC", value or "").strip()
    if not text:
        return None
    if len(text) > _PROFILE_DESCRIPTION_MAX:
        raise InvalidInput(
            f"The description has {len(text)} characters; use at most {_PROFILE_DESCRIPTION_MAX}.",
            code="profile.description_too_long",
            details={"max_length": _PROFILE_DESCRIPTION_MAX, "length": len(text)},
        )
    if any(unicodedata.category(char) == "Cc" and char not in "\n\t" for char in text):
        raise InvalidInput(
            "The description contains control characters; only line breaks and tabs are allowed.",
            code="profile.invalid_description",
        )
    return text


def _birthdate(value: date | None) -> date | None:
    if value is None:
        return None
    # The calendar date is already tomorrow in UTC+14 while it is today in UTC: a birthdate is
    # in the future only when it is after today everywhere.
    latest = (datetime.now(UTC) + timedelta(hours=14)).date()
    if value > latest:
        raise InvalidInput("The birthdate is in the future.", code="profile.birthdate_in_future")
    if value < _EARLIEST_BIRTHDATE:
        raise InvalidInput(
            f"The birthdate must be on or after {_EARLIEST_BIRTHDATE.isoformat()}.",
            code="profile.birthdate_too_early",
            details={"earliest": _EARLIEST_BIRTHDATE.isoformat()},
        )
    return value


def _language(value: str) -> str:
    language = i18n.supported(value)
    if language is None:
        raise InvalidInput(
            f"The language must be one of: {', '.join(i18n.LANGUAGES)}.",
            code="profile.invalid_language",
            details={"supported": list(i18n.LANGUAGES)},
        )
    return language


def _may_receive_email(user: User) -> bool:
    # Service accounts log in with API keys only, and a disabled account gets no account mail.
    return user.kind != "service" and user.disabled_at is None


async def _find_by_email(session: AsyncSession, address: str) -> User | None:
    return await session.scalar(select(User).where(User.email == address.strip().lower()))


def _reset_link_used() -> PermanentError:
    return PermanentError(
        "This reset link was already used, or the password changed after it was sent; ask for a new email.",
        code="auth.token_used",
    )


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
