"""The service account routes under ``/api/v1/service-accounts``: accounts for ingest tools, and their keys.

A person creates a service account, issues keys for it and revokes them; the key is in the
answer to its creation and nowhere else afterwards. A member sees only the service accounts they
own (another's id answers 404, like a missing one); an admin sees and manages every one. A
service account itself cannot manage service accounts (403), so a leaked key cannot mint more.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.admin import PageNumber, PageSize
from api.auth.guard import Caller, claims_of
from api.errors import Forbidden, Unauthenticated
from pipeline import apikeys
from pipeline.db.models import User

AnyRequest = Request[Any, Any, Any]


class ServiceAccountRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=64)]
    """3 to 32 letters, digits, dots, dashes or underscores; unique among all account names."""


class ServiceAccountView(msgspec.Struct):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID | None
    role: str
    disabled: bool
    created_at: datetime


class ServiceAccountPage(msgspec.Struct):
    items: list[ServiceAccountView]
    total: int
    page: int
    per_page: int


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=apikeys.MAX_KEY_NAME)] = "key"
    """What the key is for, e.g. the machine that holds it."""


class KeyView(msgspec.Struct):
    id: uuid.UUID
    name: str
    prefix: str
    """How the key starts (``vpk_`` and its public id), to recognise it."""
    created_at: datetime
    last_used_at: datetime | None
    """To within five minutes."""
    revoked_at: datetime | None


class IssuedKey(msgspec.Struct):
    id: uuid.UUID
    name: str
    prefix: str
    key: str
    """The key itself. It is shown only in this answer: store it now."""
    created_at: datetime


def _account_view(account: User) -> ServiceAccountView:
    return ServiceAccountView(
        id=account.id,
        name=account.username,
        owner_id=account.owner_id,
        role=account.role,
        disabled=account.disabled_at is not None,
        created_at=account.created_at,
    )


def _key_view(row: apikeys.ApiKey) -> KeyView:
    return KeyView(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _person(request: AnyRequest) -> Caller:
    caller = claims_of(request)
    if caller.is_service:
        raise Forbidden("Service accounts cannot manage service accounts; use a person's login.", code="auth.forbidden")
    return caller


def _owner_filter(caller: Caller) -> uuid.UUID | None:
    """The owner whose accounts the caller may see; ``None`` lets an admin see all."""
    return None if caller.is_admin else caller.user_id


class ServiceAccountsController(Controller):
    """Service accounts and their API keys."""

    path = "/service-accounts"
    tags = ("service accounts",)

    @post("/", status_code=201)
    async def create_account(
        self, request: AnyRequest, data: JSONBody[ServiceAccountRequest], db: NamedDependency[AsyncSession]
    ) -> ServiceAccountView:
        """Create a service account owned by the caller; it starts as a member with no keys."""
        owner = await db.get(User, _person(request).user_id)
        if owner is None:  # deleted since the guard read it
            raise Unauthenticated("The access token is not valid.", code="auth.token_invalid")
        return _account_view(await apikeys.create_service_account(db, owner, data.name))

    @get("/")
    async def list_accounts(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], page: PageNumber = 1, per_page: PageSize = 50
    ) -> ServiceAccountPage:
        """The caller's service accounts (every one, for an admin), oldest first."""
        found = await apikeys.list_service_accounts(db, _owner_filter(_person(request)), page, per_page)
        return ServiceAccountPage(
            items=[_account_view(a) for a in found.items], total=found.total, page=page, per_page=per_page
        )

    @get("/{account_id:uuid}")
    async def read_account(
        self, request: AnyRequest, account_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> ServiceAccountView:
        """One service account."""
        account = await apikeys.get_service_account(db, account_id, _owner_filter(_person(request)))
        return _account_view(account)

    @post("/{account_id:uuid}/keys", status_code=201)
    async def issue_key(
        self,
        request: AnyRequest,
        account_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
        data: JSONBody[KeyRequest | None] = None,
    ) -> IssuedKey:
        """Issue an API key for the service account. The answer holds the key; it is never shown again.

        Send it as ``Authorization: Bearer vpk_…`` or ``X-API-Key: vpk_…``.
        """
        account = await apikeys.get_service_account(db, account_id, _owner_filter(_person(request)))
        row, key = await apikeys.issue_key(db, account, data.name if data else "key")
        return IssuedKey(id=row.id, name=row.name, prefix=row.prefix, key=key, created_at=row.created_at)

    @get("/{account_id:uuid}/keys")
    async def list_keys(
        self, request: AnyRequest, account_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]
    ) -> list[KeyView]:
        """The service account's keys, revoked ones included, newest first; never the keys themselves."""
        account = await apikeys.get_service_account(db, account_id, _owner_filter(_person(request)))
        return [_key_view(row) for row in await apikeys.list_keys(db, account.id)]

    @delete("/{account_id:uuid}/keys/{key_id:uuid}", status_code=204)
    async def revoke_key(
        self,
        request: AnyRequest,
        account_id: FromPath[uuid.UUID],
        key_id: FromPath[uuid.UUID],
        db: NamedDependency[AsyncSession],
    ) -> None:
        """Revoke a key: requests with it are refused from now on (401 ``auth.api_key_revoked``)."""
        account = await apikeys.get_service_account(db, account_id, _owner_filter(_person(request)))
        await apikeys.revoke_key(db, account.id, key_id)
