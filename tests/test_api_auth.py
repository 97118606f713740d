"""Accounts, tokens, the error shape and the OpenAPI document of the HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.auth.tokens import issue_access_token
from pipeline.accounts import LoginEvent
from pipeline.db.migrate import sync_url
from pipeline.db.models import User
from pipeline.settings import Settings

PASSWORD = "Lecture-hall-42"


class _NoDispatch:
    def send(self, job_id: uuid.UUID, stage: Any, *, delay_ms: int = 0) -> None:
        raise AssertionError("the account routes start no jobs")

    def notify(self, kind: str, ref: str, *, delay_ms: int = 0) -> None:
        """Emails are queued as notifications; these tests read the outbox rows, not the mail."""


def _settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    env = {"VIDPIPE_DATA_DIR": str(tmp_path)}
    if database_url:
        env["VIDPIPE_DATABASE_URL"] = database_url
    return Settings.from_env(env).with_secret()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings, _NoDispatch())) as test_client:
        yield test_client


def _register(client: TestClient[Any], name: str = "ada", password: str = PASSWORD) -> Any:
    return client.post(
        "/api/v1/auth/register", json={"email": f"{name}@example.org", "username": name, "password": password}
    )


def _login(client: TestClient[Any], login: str = "ada", password: str = PASSWORD) -> Any:
    return client.post("/api/v1/auth/login", json={"login": login, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def test_register_login_and_read_the_profile(client: TestClient[Any]) -> None:
    registered = _register(client)
    assert registered.status_code == 201, registered.text
    assert registered.json()["username"] == "ada" and registered.json()["is_verified"] is False
    assert "password" not in registered.text and "hash" not in registered.text

    tokens = _login(client, "ada@example.org").json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900

    me = client.get("/api/v1/users/me", headers=_bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == registered.json()["id"] and me.json()["email"] == "ada@example.org"


def test_passwords_are_stored_as_argon2id_hashes(client: TestClient[Any], settings: Settings) -> None:
    _register(client)

    with _sync_session(settings.database_url) as session:
        stored = session.scalar(select(User.password_hash))
    assert stored is not None and stored.startswith("$argon2id$")


def test_a_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id(client: TestClient[Any], settings: Settings) -> None:
    _register(client)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    with _sync_session(settings.database_url) as session:
        session.execute(update(User).values(password_hash=legacy))
        session.commit()

    assert _login(client).status_code == 200

    with _sync_session(settings.database_url) as session:
        assert (session.scalar(select(User.password_hash)) or "").startswith("$argon2id$")


def test_duplicate_email_and_username_are_conflicts(client: TestClient[Any]) -> None:
    _register(client)

    same_email = client.post(
        "/api/v1/auth/register", json={"email": "ADA@example.org", "username": "other", "password": PASSWORD}
    )
    same_name = client.post(
        "/api/v1/auth/register", json={"email": "b@example.org", "username": "Ada", "password": PASSWORD}
    )

    assert _error_code(same_email, 409) == "auth.email_taken"
    assert _error_code(same_name, 409) == "auth.username_taken"


@pytest.mark.parametrize(
    "password",
    ["Short-1", "alllowercaseletters", "1234567890123", "ada@example.org", "adalovelace"],
    ids=["too-short", "one-class-letters", "one-class-digits", "equals-email", "one-class-name"],
)
def test_weak_passwords_are_refused(client: TestClient[Any], password: str) -> None:
    assert _error_code(_register(client, password=password), 422) == "auth.weak_password"


def test_a_password_equal_to_the_username_is_refused(client: TestClient[Any]) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={"email": "x@example.org", "username": "Ada_Lovelace1", "password": "ada_lovelace1"},
    )
    assert _error_code(response, 422) == "auth.weak_password"


@pytest.mark.parametrize(
    ("email", "username", "code"),
    [("not-an-email", "ada", "auth.invalid_email"), ("a@example.org", "a!", "auth.invalid_username")],
)
def test_malformed_email_or_username_is_refused(client: TestClient[Any], email: str, username: str, code: str) -> None:
    response = client.post("/api/v1/auth/register", json={"email": email, "username": username, "password": PASSWORD})
    assert _error_code(response, 422) == code


def test_a_wrong_password_is_refused_and_recorded(client: TestClient[Any], settings: Settings) -> None:
    _register(client)

    assert _error_code(_login(client, password="Wrong-password-1"), 401) == "auth.invalid_credentials"
    assert _error_code(_login(client, login="nobody"), 401) == "auth.invalid_credentials"
    tokens = _login(client).json()

    history = client.get("/api/v1/users/me/logins", headers=_bearer(tokens["access_token"])).json()
    assert [event["success"] for event in history] == [True, False]
    assert history[0]["client_address"] == "testclient"
    with _sync_session(settings.database_url) as session:
        unknown = session.scalars(select(LoginEvent).where(LoginEvent.user_id.is_(None))).all()
    assert len(unknown) == 1 and unknown[0].success is False


def test_refresh_rotates_the_token(client: TestClient[Any]) -> None:
    _register(client)
    first = _login(client).json()

    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/users/me", headers=_bearer(second.json()["access_token"])).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_family(client: TestClient[Any]) -> None:
    _register(client)
    first = _login(client).json()["refresh_token"]
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first}).json()["refresh_token"]

    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": second})

    assert _error_code(reused, 401) == "auth.refresh_reused"
    assert _error_code(after, 401) == "auth.refresh_invalid"


def test_logout_revokes_the_family_but_not_other_sessions(client: TestClient[Any]) -> None:
    _register(client)
    laptop = _login(client).json()
    phone = _login(client).json()

    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": laptop["refresh_token"]}, headers=_bearer(laptop["access_token"])
    )

    assert response.status_code == 204, response.text
    refused = client.post("/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert _error_code(refused, 401) == "auth.refresh_invalid"
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}).status_code == 200


def test_logout_needs_an_access_token(client: TestClient[Any]) -> None:
    _register(client)
    tokens = _login(client).json()

    response = client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    assert _error_code(response, 401) == "auth.token_missing"


def _abusive_tokens(settings: Settings, user_id: str, refresh: str) -> dict[str, tuple[str, str]]:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=5), "jti": "x", "type": "access"}
    return {
        "forged": (jwt.encode(claims, "another-secret-" * 3, algorithm="HS256"), "auth.token_invalid"),
        "alg-none": (jwt.encode(claims, None, algorithm="none"), "auth.token_invalid"),
        "expired": (
            issue_access_token(uuid.UUID(user_id), settings.secret_key, now=now - timedelta(hours=1)),
            "auth.token_expired",
        ),
        "wrong-type": (
            jwt.encode({**claims, "type": "refresh"}, settings.secret_key, algorithm="HS256"),
            "auth.token_invalid",
        ),
        "refresh-as-access": (refresh, "auth.token_invalid"),
        "garbage": ("not.a.token", "auth.token_invalid"),
    }


def test_abused_tokens_are_refused_with_their_codes(client: TestClient[Any], settings: Settings) -> None:
    user_id = _register(client).json()["id"]
    refresh = _login(client).json()["refresh_token"]

    for name, (token, code) in _abusive_tokens(settings, user_id, refresh).items():
        response = client.get("/api/v1/users/me", headers=_bearer(token))
        assert _error_code(response, 401) == code, name
        assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_route_and_invalid_body_use_the_error_shape(client: TestClient[Any]) -> None:
    assert _error_code(client.get("/api/v1/no-such-thing"), 404) == "not_found"

    invalid = client.post("/api/v1/auth/register", json={"email": "a@example.org"})

    assert _error_code(invalid, 400) == "request.invalid"
    assert invalid.json()["error"]["details"]


def test_an_unexpected_error_is_a_500_without_a_traceback(settings: Settings) -> None:
    app = create_app(settings, _NoDispatch())
    with TestClient(app) as test_client:
        # A broken database session factory stands in for any bug below the routes.
        app.state.runtime.database.sessions = None
        response = _register(test_client)

    assert _error_code(response, 500) == "internal.error"
    assert "Traceback" not in response.text and "NoneType" not in response.text


def test_the_openapi_document_lists_the_routes_and_the_bearer_scheme(client: TestClient[Any]) -> None:
    document = client.get("/api/v1/openapi.json").json()

    assert document["openapi"].startswith("3.1")
    assert {
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/users/me/logins",
    } <= set(document["paths"])
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    api_key = document["components"]["securitySchemes"]["apiKey"]
    assert {key: api_key[key] for key in ("type", "name", "in")} == {
        "type": "apiKey",
        "name": "X-API-Key",
        "in": "header",
    }
    assert document["paths"]["/api/v1/users/me"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in document["paths"]["/api/v1/auth/login"]["post"]
    assert client.get("/api/v1/docs").status_code == 200


def test_every_operation_is_described_with_its_errors_in_the_one_error_shape(client: TestClient[Any]) -> None:
    document = client.get("/api/v1/openapi.json").json()
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}

    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description"), f"{where} has no description"
            responses = operation["responses"]
            assert responses["400"]["content"] == error, f"{where} documents another 400 shape"
            assert responses["500"]["content"] == error, where
            if operation.get("security"):
                assert {"401", "403", "404"} <= set(responses), f"{where} omits the guard's errors"


def test_too_many_login_attempts_are_rate_limited(client: TestClient[Any]) -> None:
    codes = [_login(client, login="nobody").status_code for _ in range(10)]
    limited = _login(client, login="nobody")

    assert set(codes) == {401}
    assert _error_code(limited, 429) == "auth.rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


@pytest.mark.services
def test_accounts_work_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    with TestClient(create_app(_settings(tmp_path, pg_database), _NoDispatch())) as pg_client:
        assert _register(pg_client).status_code == 201
        assert _error_code(_register(pg_client), 409) == "auth.email_taken"
        first = _login(pg_client).json()
        rotated = pg_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        reused = pg_client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        me = pg_client.get("/api/v1/users/me", headers=_bearer(rotated.json()["access_token"]))

    assert rotated.status_code == 200 and me.json()["username"] == "ada"
    assert _error_code(reused, 401) == "auth.refresh_reused"


def _sync_session(database_url: str) -> Session:
    return Session(create_engine(sync_url(database_url)))
