"""Service accounts and their API keys, and the switches an admin turns on any account.

A service account is a ``users`` row of kind ``service`` that a person (its owner) creates for
an ingest tool. It has no password and never logs in: it authenticates with API keys only, and
acts with its own role, so what a tool uploads belongs to the service account. New service
accounts are members; only an admin can raise one to admin.

An API key reads ``vpk_<public id>_<secret>``. The public id (12 hex characters) finds the row
and names the key in listings and logs; the secret is 256 random bits. Only the SHA-256 of the
whole key is stored: the key is random, not chosen by a person, so a slow password hash would
add nothing but cost on every request, and a copy of the table cannot be used to call the API.

Disabling an account (``disabled_at``) refuses its passwords, tokens and keys and revokes its
refresh tokens; enabling it again lets its keys work again, since they were never revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Select, String, Uuid, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.accounts import RefreshToken
from pipeline.db.models import Base, User, utcnow
from pipeline.errors import Conflict, InvalidInput, NotFound

logger = logging.getLogger(__name__)

PERSON = "person"
SERVICE = "service"
# TODO(service-accounts): an owner does not see the videos their service accounts upload, because
# api/access.py compares owner ids only; sharing them needs that rule to include owned accounts.
MEMBER = "member"
ADMIN = "admin"
ROLES = (MEMBER, ADMIN)

KEY_PREFIX = "vpk_"
_KEY_SHAPE = re.compile(r"vpk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
# The placeholder address of a service account: the reserved .invalid domain receives no mail.
_SERVICE_EMAIL_DOMAIN = "service.invalid"

MAX_ACCOUNTS_PER_OWNER = 20
MAX_ACTIVE_KEYS = 10
MAX_KEY_NAME = 100
LAST_USED_RESOLUTION = timedelta(minutes=5)
"""``last_used_at`` is written at most this often per key, so a busy tool costs no write per request."""


class ApiKey(Base):
    """One API key of a service account; the key itself is shown once and never stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    """The service account the key authenticates as."""
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    """The part of the key after ``vpk_`` that is safe to show and log."""
    key_hash: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 of the whole key."""
    name: Mapped[str] = mapped_column(String(MAX_KEY_NAME))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    """When the key last authenticated a request, to within :data:`LAST_USED_RESOLUTION`."""
    revoked_at: Mapped[datetime | None] = mapped_column()

    @property
    def prefix(self) -> str:
        """How the key starts, so a person can recognise it: ``vpk_<public id>``."""
        return f"{KEY_PREFIX}{self.public_id}"


@dataclass(frozen=True)
class Page:
    """One page of accounts and how many there are in all."""

    items: list[User]
    total: int


def key_digest(key: str) -> str:
    """The digest stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def public_id_of(key: str) -> str | None:
    """The public id of a well-formed key; ``None`` when ``key`` does not have the shape of one."""
    match = _KEY_SHAPE.fullmatch(key)
    return match.group(1) if match else None


def new_key() -> tuple[str, str]:
    """A fresh ``(public id, key)`` pair."""
    public_id = secrets.token_hex(6)
    return public_id, f"{KEY_PREFIX}{public_id}_{secrets.token_urlsafe(32)}"


async def create_service_account(session: AsyncSession, owner: User, name: str) -> User:
    """Create a service account named ``name`` owned by ``owner`` (a person)."""
    if not _ACCOUNT_NAME.fullmatch(name):
        raise InvalidInput(
            "The name must be 3 to 32 letters, digits, dots, dashes or underscores.",
            code="service_account.invalid_name",
        )
    owned = await session.scalar(select(func.count()).select_from(User).where(User.owner_id == owner.id))
    if (owned or 0) >= MAX_ACCOUNTS_PER_OWNER:
        raise Conflict(
            f"An account may own at most {MAX_ACCOUNTS_PER_OWNER} service accounts; reuse one or ask an admin.",
            code="service_account.too_many",
        )
    await _check_name_free(session, name)

    account_id = uuid.uuid4()
    account = User(
        id=account_id,
        email=f"{account_id.hex}@{_SERVICE_EMAIL_DOMAIN}",
        username=name,
        password_hash="!",  # matches no password; login refuses service accounts before any check
        role=MEMBER,
        kind=SERVICE,
        owner_id=owner.id,
    )
    session.add(account)
    try:
        await session.commit()
    except IntegrityError as exc:
        # Another account took the name between the check and the insert.
        await session.rollback()
        raise _name_taken() from exc
    logger.info("User %s created service account %s.", owner.id, account.id)
    return account


async def list_service_accounts(session: AsyncSession, owner_id: uuid.UUID | None, page: int, per_page: int) -> Page:
    """Service accounts, oldest first: those of ``owner_id``, or every one when it is ``None``."""
    query = select(User).where(User.kind == SERVICE)
    if owner_id is not None:
        query = query.where(User.owner_id == owner_id)
    return await _page(session, query, page, per_page)


async def get_service_account(session: AsyncSession, account_id: uuid.UUID, owner_id: uuid.UUID | None) -> User:
    """The service account, or ``service_account.not_found`` when it is missing or owned by another
    account than ``owner_id`` (``None`` sees every account)."""
    account = await session.get(User, account_id)
    if account is None or account.kind != SERVICE or (owner_id is not None and account.owner_id != owner_id):
        raise NotFound(f"There is no service account {account_id}.", code="service_account.not_found")
    return account


async def issue_key(session: AsyncSession, account: User, name: str) -> tuple[ApiKey, str]:
    """Create a key for ``account``; returns the row and the key, which is never available again."""
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME:
        raise InvalidInput(f"The key name must have 1 to {MAX_KEY_NAME} characters.", code="api_key.invalid_name")
    active = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == account.id, ApiKey.revoked_at.is_(None))
    )
    if (active or 0) >= MAX_ACTIVE_KEYS:
        raise Conflict(
            f"A service account may have at most {MAX_ACTIVE_KEYS} active keys; revoke one first.",
            code="api_key.too_many",
        )

    public_id, key = new_key()
    row = ApiKey(user_id=account.id, public_id=public_id, key_hash=key_digest(key), name=name)
    session.add(row)
    await session.commit()
    logger.info("Issued API key %s for service account %s.", row.prefix, account.id)
    return row, key


async def list_keys(session: AsyncSession, account_id: uuid.UUID) -> list[ApiKey]:
    """The keys of a service account, revoked ones included, newest first."""
    result = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == account_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(result)


async def revoke_key(session: AsyncSession, account_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of the account; revoking a revoked key changes nothing."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.user_id != account_id:
        raise NotFound(f"There is no API key {key_id}.", code="api_key.not_found")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await session.commit()
        logger.info("Revoked API key %s of service account %s.", row.prefix, account_id)
    return row


async def find_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The row of ``key`` when the key is well formed and its secret matches; revoked rows included."""
    public_id = public_id_of(key)
    if public_id is None:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if row is None or not hmac.compare_digest(row.key_hash, key_digest(key)):
        return None
    return row


async def record_key_use(session: AsyncSession, row: ApiKey, now: datetime | None = None) -> None:
    """Note that ``row`` authenticated a request, unless that was noted less than a while ago."""
    now = now or datetime.now(UTC)
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so that of several processes seeing the same stale time only one writes.
    stale = ApiKey.last_used_at.is_(None) | (ApiKey.last_used_at < now - LAST_USED_RESOLUTION)
    await session.execute(update(ApiKey).where(ApiKey.id == row.id, stale).values(last_used_at=now))
    await session.commit()


async def list_accounts(
    session: AsyncSession, page: int, per_page: int, *, role: str | None = None, kind: str | None = None
) -> Page:
    """Every account, oldest first, optionally only those with ``role`` or of ``kind``."""
    query = select(User)
    if role is not None:
        query = query.where(User.role == role)
    if kind is not None:
        query = query.where(User.kind == kind)
    return await _page(session, query, page, per_page)


async def find_account(session: AsyncSession, login: str) -> User | None:
    """The account whose username or email is ``login`` (case does not matter)."""
    login = login.strip().lower()
    return await session.scalar(
        select(User).where((func.lower(User.username) == login) | (User.email == login)).limit(1)
    )


async def change_account(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    by: uuid.UUID | None = None,
) -> User:
    """Set an account's role and whether it is disabled; ``by`` is the admin (``None``: an operator).

    Raises:
        NotFound: ``user.not_found``.
        InvalidInput: ``user.invalid_role`` for a role other than member or admin.
        Conflict: ``admin.last_admin`` when the change would leave no enabled person as admin.
    """
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"There is no account {user_id}.", code="user.not_found")
    if role is not None and role not in ROLES:
        raise InvalidInput(f"The role must be one of: {', '.join(ROLES)}.", code="user.invalid_role")
    will_be_disabled = user.disabled_at is not None if disabled is None else disabled
    stays_admin = (role or user.role) == ADMIN and not will_be_disabled
    if _is_active_admin(user) and not stays_admin and await _other_active_admins(session, user.id) == 0:
        raise Conflict("This is the only enabled admin; make another account admin first.", code="admin.last_admin")

    now = datetime.now(UTC)
    if role is not None and role != user.role:
        logger.info("Role of user %s changed from %s to %s by %s.", user.id, user.role, role, _actor(by))
        user.role = role
    if disabled is True and user.disabled_at is None:
        user.disabled_at = now
        await _revoke_refresh_tokens(session, user.id, now)
        logger.info("User %s was disabled by %s; its refresh tokens are revoked.", user.id, _actor(by))
    elif disabled is False and user.disabled_at is not None:
        user.disabled_at = None
        logger.info("User %s was enabled again by %s.", user.id, _actor(by))
    await session.commit()
    return user


def _is_active_admin(user: User) -> bool:
    return user.role == ADMIN and user.kind == PERSON and user.disabled_at is None


async def _other_active_admins(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == ADMIN, User.kind == PERSON, User.disabled_at.is_(None), User.id != user_id)
    )
    return count or 0


async def _revoke_refresh_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def _check_name_free(session: AsyncSession, name: str) -> None:
    taken = await session.scalar(select(User.id).where(func.lower(User.username) == name.lower()))
    if taken is not None:
        raise _name_taken()


def _name_taken() -> Conflict:
    return Conflict("An account with this name already exists; choose another.", code="service_account.name_taken")


async def _page(session: AsyncSession, query: Select[User], page: int, per_page: int) -> Page:
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(User.created_at, User.id).offset((page - 1) * per_page).limit(per_page))
    return Page(items=list(rows), total=total or 0)


def _actor(by: uuid.UUID | None) -> str:
    return f"admin {by}" if by is not None else "an operator"
