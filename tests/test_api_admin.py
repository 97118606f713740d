"""Roles and admin routes, disabled accounts, the ``vidpipe users`` commands, and attempt limits.

Every test runs on the embedded default (SQLite, in-memory rate limits) and on PostgreSQL with
Redis holding the rate limits, where two API apps stand for two API processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import func, select

from api.app import create_app
from pipeline.accounts import LoginEvent
from pipeline.cli.main import cli
from pipeline.settings import Settings
from tests.test_api_auth import PASSWORD, _bearer, _error_code, _login, _NoDispatch, _register
from tests.test_api_keys import Stack, db_session, open_stack


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with open_stack(request, tmp_path) as opened:
        yield opened


def _users(stack: Stack, headers: dict[str, str], query: str = "") -> Any:
    return stack.client.get(f"/api/v1/admin/users{query}", headers=headers)


def _change(stack: Stack, headers: dict[str, str], user_id: str, **change: Any) -> Any:
    return stack.client.patch(f"/api/v1/admin/users/{user_id}", json=change, headers=headers)


def test_members_and_service_accounts_get_403_on_admin_routes(stack: Stack) -> None:
    ada_id, ada = stack.user("ada")
    account = stack.client.post("/api/v1/service-accounts", json={"name": "recorder"}, headers=ada).json()
    key = stack.client.post(f"/api/v1/service-accounts/{account['id']}/keys", json={}, headers=ada).json()["key"]

    for headers in (ada, {"X-API-Key": key}):
        assert _error_code(_users(stack, headers), 403) == "auth.forbidden"
        assert _error_code(_users(stack, headers, f"/{ada_id}"), 403) == "auth.forbidden"
        assert _error_code(_change(stack, headers, ada_id, role="admin"), 403) == "auth.forbidden"
    assert _error_code(_users(stack, {}), 401) == "auth.token_missing"


def test_an_admin_lists_accounts_a_page_at_a_time(stack: Stack) -> None:
    _cyd, cyd = stack.user("cyd", admin=True)
    ada_id, ada = stack.user("ada")
    stack.user("bob")
    stack.client.post("/api/v1/service-accounts", json={"name": "recorder"}, headers=ada)

    first = _users(stack, cyd, "?per_page=2")
    second = _users(stack, cyd, "?per_page=2&page=2")
    admins = _users(stack, cyd, "?role=admin").json()
    services = _users(stack, cyd, "?kind=service").json()

    assert first.status_code == 200, first.text
    assert first.json()["total"] == 4 and first.json()["page"] == 1 and first.json()["per_page"] == 2
    names = [u["username"] for u in first.json()["items"] + second.json()["items"]]
    assert names == ["cyd", "ada", "bob", "recorder"]
    assert [u["username"] for u in admins["items"]] == ["cyd"] and admins["total"] == 1
    (service,) = services["items"]
    assert service["kind"] == "service" and service["owner_id"] == ada_id and service["email"] is None
    assert first.json()["items"][1]["email"] == "ada@example.org" and first.json()["items"][1]["disabled"] is False
    for query in ("?per_page=0", "?per_page=101", "?page=0", "?role=owner"):
        assert _error_code(_users(stack, cyd, query), 400) == "request.invalid", query
    assert _error_code(_users(stack, cyd, f"/{uuid.uuid4()}"), 404) == "user.not_found"


def test_a_disabled_account_loses_its_token_its_sessions_and_its_login(stack: Stack) -> None:
    _cyd, cyd = stack.user("cyd", admin=True)
    ada_id, _ = stack.user("ada")
    tokens = _login(stack.client, "ada").json()
    ada = _bearer(tokens["access_token"])
    assert stack.client.get("/api/v1/users/me", headers=ada).status_code == 200

    disabled = _change(stack, cyd, ada_id, disabled=True)

    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert _error_code(stack.client.get("/api/v1/users/me", headers=ada), 403) == "auth.account_disabled"
    refresh = stack.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert _error_code(refresh, 401) == "auth.refresh_invalid"
    assert _error_code(_login(stack.client, "ada"), 403) == "auth.account_disabled"
    assert _error_code(_login(stack.client, "ada", password="Wrong-password-1"), 401) == "auth.invalid_credentials"

    assert _change(stack, cyd, ada_id, disabled=False).json()["disabled"] is False
    again = _bearer(_login(stack.client, "ada").json()["access_token"])
    assert stack.client.get("/api/v1/users/me", headers=again).status_code == 200


def test_an_admin_changes_roles_but_never_removes_the_last_admin(stack: Stack) -> None:
    cyd_id, cyd = stack.user("cyd", admin=True)
    ada_id, ada = stack.user("ada")

    assert _error_code(_change(stack, cyd, cyd_id, role="member"), 409) == "admin.last_admin"
    assert _error_code(_change(stack, cyd, cyd_id, disabled=True), 409) == "admin.last_admin"
    assert _error_code(_change(stack, cyd, ada_id, role="owner"), 400) == "request.invalid"
    promoted = _change(stack, cyd, ada_id, role="admin")
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    # The role is read for every request, so the same token now reaches admin routes.
    assert _users(stack, ada).status_code == 200
    assert _change(stack, ada, cyd_id, role="member").json()["role"] == "member"
    assert _error_code(_users(stack, cyd), 403) == "auth.forbidden"


def _vidpipe(stack: Stack, *args: str, password: str | None = None) -> Any:
    given = f"{password}\n{password}\n" if password is not None else None
    return CliRunner().invoke(cli, list(args), input=given, env=stack.env, catch_exceptions=False)


def test_the_first_admin_comes_from_the_command_line(stack: Stack) -> None:
    created = _vidpipe(
        stack, "users", "create", "--email", "root@example.org", "--username", "root", "--admin", password=PASSWORD
    )
    weak = _vidpipe(stack, "users", "create", "--email", "w@example.org", "--username", "weak", password="short")

    assert created.exit_code == 0, created.output
    assert "Created admin root" in created.output and PASSWORD not in created.output
    assert weak.exit_code == 1 and "too weak" in weak.output
    root = _bearer(_login(stack.client, "root").json()["access_token"])
    assert _users(stack, root).json()["total"] == 1


def test_promote_gives_an_account_a_role_from_the_command_line(stack: Stack) -> None:
    stack.user("ada")
    _bob, bob = stack.user("bob")

    promoted = _vidpipe(stack, "users", "promote", "BOB")
    missing = _vidpipe(stack, "users", "promote", "nobody")
    demoted_last = _vidpipe(stack, "users", "promote", "bob@example.org", "--role", "member")

    assert promoted.exit_code == 0, promoted.output
    assert "bob" in promoted.output and "is now admin" in promoted.output
    assert _users(stack, bob).status_code == 200
    assert missing.exit_code == 1 and "no account 'nobody'" in missing.output
    assert demoted_last.exit_code == 1 and "only enabled admin" in demoted_last.output


def _failures(settings: Settings, user_id: str, count: int, *, at: datetime) -> None:
    """Failed logins of an account as if from other clients, at ``at`` and the milliseconds before it."""
    with db_session(settings) as session:
        for n in range(count):
            session.add(
                LoginEvent(
                    user_id=uuid.UUID(user_id),
                    success=False,
                    client_address="203.0.113.7",
                    occurred_at=at - timedelta(milliseconds=n),
                )
            )
        session.commit()


def _login_events(settings: Settings) -> int:
    with db_session(settings) as session:
        return int(session.scalar(select(func.count()).select_from(LoginEvent)) or 0)


def test_ten_failed_logins_lock_the_account_for_a_few_minutes(stack: Stack) -> None:
    ada_id, _ = stack.user("ada")
    for _ in range(3):
        assert _error_code(_login(stack.client, "ada", password="Wrong-password-1"), 401) == "auth.invalid_credentials"
    _failures(stack.settings, ada_id, 7, at=datetime.now(UTC))
    recorded = _login_events(stack.settings)

    locked = _login(stack.client, "ada")

    assert _error_code(locked, 429) == "auth.account_locked"
    assert 1 <= int(locked.headers["retry-after"]) <= 300
    assert locked.json()["error"]["details"]["retry_after"] == int(locked.headers["retry-after"])
    # Attempts during the lock are neither checked nor recorded.
    assert _login_events(stack.settings) == recorded
    assert _login(stack.client, "bob").status_code == 401


def test_the_lock_ends_after_its_time_and_a_success_resets_the_count(stack: Stack) -> None:
    ada_id, _ = stack.user("ada")
    now = datetime.now(UTC)
    _failures(stack.settings, ada_id, 10, at=now - timedelta(minutes=6))
    assert _login(stack.client, "ada").status_code == 200

    _failures(stack.settings, ada_id, 9, at=datetime.now(UTC))
    assert _login(stack.client, "ada").status_code == 200
    _failures(stack.settings, ada_id, 9, at=datetime.now(UTC))

    assert _login(stack.client, "ada").status_code == 200


def test_the_client_rate_limit_is_shared_by_api_processes_on_redis(stack: Stack) -> None:
    # A second app on the same settings stands for a second API process.
    with TestClient(create_app(stack.settings, _NoDispatch())) as other:
        for client in (stack.client, other) * 5:
            assert _error_code(_login(client, "nobody"), 401) == "auth.invalid_credentials"
        first = _login(stack.client, "nobody")
        second = _register(other, "late")

    if stack.name == "services":
        assert _error_code(first, 429) == "auth.rate_limited"
        assert 1 <= int(first.headers["retry-after"]) <= 60
    else:
        # In memory each process counts alone: five attempts here leave this one within its budget.
        assert _error_code(first, 401) == "auth.invalid_credentials"
    assert second.status_code == 201, "register counts apart from login"


def test_the_rate_limit_falls_back_to_memory_when_redis_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"VIDPIPE_DATA_DIR": str(tmp_path / "data"), "VIDPIPE_BROKER_URL": "redis://127.0.0.1:1/0"}
    settings = Settings.from_env(env).with_secret()

    with TestClient(create_app(settings, _NoDispatch())) as client:
        codes = [_login(client, "nobody").status_code for _ in range(10)]
        limited = _login(client, "nobody")

    assert set(codes) == {401}
    assert _error_code(limited, 429) == "auth.rate_limited"
    assert caplog.text.count("Redis did not answer") == 1
