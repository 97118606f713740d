"""``vidpipe users``: create accounts and change roles from the command line.

This is where the first admin comes from: the HTTP API only lets an admin make admins. The
commands talk to the database alone, so they need neither the broker nor a running API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from pipeline import apikeys
from pipeline.cli.app import load_settings, user_errors
from pipeline.db import open_database
from pipeline.db.models import User
from pipeline.runtime import prepare_database

T = TypeVar("T")


def _with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings = load_settings()

    async def go() -> T:
        database = open_database(settings)
        try:
            async with database.sessions() as session:
                return await work(session)
        finally:
            await database.dispose()

    with user_errors():
        prepare_database(settings)
        return asyncio.run(go())


@click.group()
def users() -> None:
    """Create accounts and change their roles."""


@users.command("create")
@click.option("--email", required=True, help="The account's email address.")
@click.option("--username", required=True, help="3 to 32 letters, digits, dots, dashes or underscores.")
@click.option("--admin", is_flag=True, help="Make the account an admin.")
@click.password_option(help="The password; asked for (twice, hidden) when not given.")
def create(email: str, username: str, admin: bool, password: str) -> None:
    """Create a person's account, as registration would; with --admin, an admin."""
    from api.auth import service

    async def work(session: AsyncSession) -> User:
        user = await service.register(session, email, username, password)
        if admin:
            user = await apikeys.change_account(session, user.id, role=apikeys.ADMIN)
        return user

    user = _with_session(work)
    click.echo(f"Created {user.role} {user.username} ({user.id}).")


@users.command("promote")
@click.argument("login")
@click.option("--role", type=click.Choice(apikeys.ROLES), default=apikeys.ADMIN, show_default=True)
def promote(login: str, role: str) -> None:
    """Give the account named LOGIN (username or email) a role."""

    async def work(session: AsyncSession) -> User:
        user = await apikeys.find_account(session, login)
        if user is None:
            raise click.ClickException(f"There is no account {login!r}.")
        return await apikeys.change_account(session, user.id, role=role)

    user = _with_session(work)
    click.echo(f"{user.username} ({user.id}) is now {user.role}.")
