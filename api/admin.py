"""The admin routes under ``/api/v1/admin``: list accounts, change their role, disable them.

These are routes for a role, not objects of an owner, so a member gets 403 ``auth.forbidden``
(not the 404 that hides other accounts' videos). The first admin comes from the command line:
``vidpipe users create --admin`` or ``vidpipe users promote LOGIN --role admin``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.guard import CallerCache, claims_of, require_admin
from pipeline import apikeys
from pipeline.db.models import User
from pipeline.errors import NotFound

AnyRequest = Request[Any, Any, Any]

PageNumber = FromQuery[Annotated[int, Parameter(ge=1, description="The page, from 1.")]]
PageSize = FromQuery[Annotated[int, Parameter(ge=1, le=100, description="Items per page, at most 100.")]]


class AccountView(msgspec.Struct):
    id: uuid.UUID
    username: str
    email: str | None
    """``None`` for service accounts, which have no address."""
    role: str
    kind: str
    """``person`` or ``service``."""
    owner_id: uuid.UUID | None
    """The account that created a service account."""
    is_verified: bool
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime


class AccountPage(msgspec.Struct):
    items: list[AccountView]
    total: int
    page: int
    per_page: int


class AccountChange(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["member", "admin"] | None = None
    """The new role; unchanged when absent."""
    disabled: bool | None = None
    """``true`` refuses the account's passwords, tokens and keys; ``false`` enables it again."""


def account_view(user: User) -> AccountView:
    """How the admin routes show an account."""
    return AccountView(
        id=user.id,
        username=user.username,
        email=None if user.kind == apikeys.SERVICE else user.email,
        role=user.role,
        kind=user.kind,
        owner_id=user.owner_id,
        is_verified=user.is_verified,
        disabled=user.disabled_at is not None,
        disabled_at=user.disabled_at,
        created_at=user.created_at,
    )


class AdminUsersController(Controller):
    """Every account, for admins."""

    path = "/admin/users"
    tags = ("admin",)
    guards = (require_admin,)

    @get("/")
    async def list_users(
        self,
        db: NamedDependency[AsyncSession],
        page: PageNumber = 1,
        per_page: PageSize = 50,
        role: FromQuery[Literal["member", "admin"] | None] = None,
        kind: FromQuery[Literal["person", "service"] | None] = None,
    ) -> AccountPage:
        """Accounts, oldest first, a page at a time; ``role`` and ``kind`` narrow the list."""
        found = await apikeys.list_accounts(db, page, per_page, role=role, kind=kind)
        return AccountPage(
            items=[account_view(user) for user in found.items], total=found.total, page=page, per_page=per_page
        )

    @get("/{user_id:uuid}")
    async def read_user(self, user_id: FromPath[uuid.UUID], db: NamedDependency[AsyncSession]) -> AccountView:
        """One account."""
        user = await db.get(User, user_id)
        if user is None:
            raise NotFound(f"There is no account {user_id}.", code="user.not_found")
        return account_view(user)

    @patch("/{user_id:uuid}")
    async def change_user(
        self,
        request: AnyRequest,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[AccountChange],
        db: NamedDependency[AsyncSession],
    ) -> AccountView:
        """Change an account's role or disable it (which also ends its sessions) or enable it again.

        The last enabled admin cannot be demoted or disabled (409 ``admin.last_admin``).
        """
        user = await apikeys.change_account(
            db, user_id, role=data.role, disabled=data.disabled, by=claims_of(request).user_id
        )
        callers: CallerCache = request.app.state.callers
        callers.forget(user_id)
        return account_view(user)
