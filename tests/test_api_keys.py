"""Service accounts and API keys: issued once, stored hashed, accepted by the guard, revoked.

Every test runs on the embedded default (SQLite, in-memory rate limits) and on PostgreSQL with
Redis holding the rate limits.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from api.auth.passwords import hash_password
from pipeline.apikeys import ApiKey
from pipeline.db.migrate import sync_url
from pipeline.db.models import Job, User, Video
from pipeline.settings import Settings
from tests import services
from tests.test_api_auth import PASSWORD, _bearer, _error_code, _login, _NoDispatch, _register


@dataclass
class Stack:
    """One API app on one set of backends, and the environment it was built from."""

    name: str
    env: dict[str, str]
    settings: Settings
    client: TestClient[Any]

    def user(self, name: str, *, admin: bool = False) -> tuple[str, dict[str, str]]:
        """Register ``name`` (made admin in the database when asked); its id and bearer headers."""
        registered = _register(self.client, name)
        assert registered.status_code == 201, registered.text
        if admin:
            with db_session(self.settings) as session:
                session.execute(update(User).where(User.username == name).values(role="admin"))
                session.commit()
        return registered.json()["id"], _bearer(_login(self.client, name).json()["access_token"])


def stack_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The embedded default, or PostgreSQL with a Redis broker under a namespace of its own."""
    env = {"VIDPIPE_DATA_DIR": str(tmp_path / "data")}
    if request.param == "services":
        env["VIDPIPE_DATABASE_URL"] = request.getfixturevalue("pg_database")
        env["VIDPIPE_BROKER_URL"] = request.getfixturevalue("redis_url")
        env["VIDPIPE_BROKER_NAMESPACE"] = services.unique("vidpipe")
    return env


@contextlib.contextmanager
def open_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(request, tmp_path)
    settings = Settings.from_env(env).with_secret()
    try:
        with TestClient(create_app(settings, _NoDispatch())) as client:
            yield Stack(request.param, env, settings, client)
    finally:
        if "VIDPIPE_BROKER_NAMESPACE" in env:
            services.delete_redis_namespace(env["VIDPIPE_BROKER_NAMESPACE"])


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with open_stack(request, tmp_path) as opened:
        yield opened


@contextlib.contextmanager
def db_session(settings: Settings) -> Iterator[Session]:
    engine = create_engine(sync_url(settings.database_url))
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _service_account(stack: Stack, headers: dict[str, str], name: str = "recorder-3") -> str:
    created = stack.client.post("/api/v1/service-accounts", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _issue(stack: Stack, headers: dict[str, str], account_id: str, name: str = "room 3") -> dict[str, Any]:
    issued = stack.client.post(f"/api/v1/service-accounts/{account_id}/keys", json={"name": name}, headers=headers)
    assert issued.status_code == 201, issued.text
    body: dict[str, Any] = issued.json()
    return body


def _job_of(settings: Settings, owner_id: str) -> str:
    """A video and its job owned by ``owner_id``, written straight to the database."""
    with db_session(settings) as session:
        video = Video(
            owner_id=uuid.UUID(owner_id), title="Lecture", source_key="sources/x.mp4", source_filename="x.mp4"
        )
        job = Job(video=video)
        session.add_all([video, job])
        session.commit()
        return str(job.id)


def test_a_key_is_shown_once_and_stored_only_as_its_hash(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    account_id = _service_account(stack, ada)

    issued = _issue(stack, ada, account_id)
    listed = stack.client.get(f"/api/v1/service-accounts/{account_id}/keys", headers=ada)

    key = issued["key"]
    assert key.startswith(issued["prefix"] + "_") and issued["prefix"].startswith("vpk_")
    assert len(key) > 50 and issued["name"] == "room 3"
    assert listed.status_code == 200 and key not in listed.text and "key_hash" not in listed.text
    assert [(k["id"], k["prefix"], k["revoked_at"]) for k in listed.json()] == [(issued["id"], issued["prefix"], None)]
    with db_session(stack.settings) as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (row.key_hash, row.public_id, row.name)


def test_a_key_authenticates_as_its_service_account_in_either_header(stack: Stack) -> None:
    ada_id, ada = stack.user("ada")
    account_id = _service_account(stack, ada)
    key = _issue(stack, ada, account_id)["key"]
    job_id = _job_of(stack.settings, account_id)

    as_bearer = stack.client.get(f"/api/v1/jobs/{job_id}", headers=_bearer(key))
    as_header = stack.client.get(f"/api/v1/jobs/{job_id}", headers={"X-API-Key": key})
    me = stack.client.get("/api/v1/users/me", headers={"X-API-Key": key})

    assert as_bearer.status_code == 200, as_bearer.text
    assert as_header.status_code == 200 and as_header.json()["id"] == job_id
    assert me.status_code == 200, me.text
    assert me.json()["id"] == account_id and me.json()["role"] == "member"
    # The account acts for itself: what it owns is not its owner's.
    assert _error_code(stack.client.get(f"/api/v1/jobs/{job_id}", headers=ada), 404) == "job.not_found"
    assert ada_id != account_id


def test_a_revoked_key_is_refused(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    account_id = _service_account(stack, ada)
    issued = _issue(stack, ada, account_id)
    kept = _issue(stack, ada, account_id, name="spare")
    job_id = _job_of(stack.settings, account_id)

    revoked = stack.client.delete(f"/api/v1/service-accounts/{account_id}/keys/{issued['id']}", headers=ada)

    assert revoked.status_code == 204, revoked.text
    refused = stack.client.get(f"/api/v1/jobs/{job_id}", headers=_bearer(issued["key"]))
    assert _error_code(refused, 401) == "auth.api_key_revoked"
    assert refused.headers["www-authenticate"] == "Bearer"
    assert stack.client.get(f"/api/v1/jobs/{job_id}", headers=_bearer(kept["key"])).status_code == 200
    listed = {k["id"]: k for k in stack.client.get(f"/api/v1/service-accounts/{account_id}/keys", headers=ada).json()}
    assert listed[issued["id"]]["revoked_at"] is not None and listed[kept["id"]]["revoked_at"] is None


def test_malformed_unknown_and_doubled_keys_are_refused_with_the_error_shape(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    account_id = _service_account(stack, ada)
    key = _issue(stack, ada, account_id)["key"]
    public, secret = key[len("vpk_") :].split("_", 1)
    wrong_secret = f"vpk_{public}_{'A' * len(secret)}"
    unknown_id = f"vpk_{'0' * 12}_{secret}"

    cases = {
        "truncated": (_bearer(key[:-1]), "auth.api_key_invalid"),
        "garbage after the prefix": (_bearer("vpk_not-a-key"), "auth.api_key_invalid"),
        "wrong secret": (_bearer(wrong_secret), "auth.api_key_invalid"),
        "unknown public id": ({"X-API-Key": unknown_id}, "auth.api_key_invalid"),
        "header without the prefix": ({"X-API-Key": "secret-from-elsewhere"}, "auth.api_key_invalid"),
        "empty header": ({"X-API-Key": ""}, "auth.api_key_invalid"),
        "both headers": ({**_bearer(key), "X-API-Key": key}, "auth.credentials_ambiguous"),
    }
    for name, (headers, code) in cases.items():
        response = stack.client.get("/api/v1/users/me", headers=headers)
        assert _error_code(response, 401) == code, name
        assert key not in response.text, name


def test_a_service_account_cannot_log_in_with_a_password(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    _service_account(stack, ada, name="recorder-3")

    refused = _login(stack.client, "recorder-3", password=PASSWORD)
    # Even with a usable password hash (say, set by a reset), a service account never logs in.
    with db_session(stack.settings) as session:
        session.execute(update(User).where(User.username == "recorder-3").values(password_hash=hash_password(PASSWORD)))
        session.commit()
    still_refused = _login(stack.client, "recorder-3", password=PASSWORD)

    assert _error_code(refused, 401) == "auth.invalid_credentials"
    assert _error_code(still_refused, 401) == "auth.invalid_credentials"


def test_a_service_account_cannot_manage_service_accounts(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    account_id = _service_account(stack, ada)
    key = _bearer(_issue(stack, ada, account_id)["key"])

    create = stack.client.post("/api/v1/service-accounts", json={"name": "minted"}, headers=key)
    more_keys = stack.client.post(f"/api/v1/service-accounts/{account_id}/keys", json={"name": "x"}, headers=key)

    assert _error_code(create, 403) == "auth.forbidden"
    assert _error_code(more_keys, 403) == "auth.forbidden"
    assert len(stack.client.get(f"/api/v1/service-accounts/{account_id}/keys", headers=ada).json()) == 1


def test_members_see_only_their_own_service_accounts_and_admins_see_all(stack: Stack) -> None:
    ada_id, ada = stack.user("ada")
    _bob, bob = stack.user("bob")
    _cyd, cyd = stack.user("cyd", admin=True)
    adas = _service_account(stack, ada, name="ada-recorder")
    bobs = _service_account(stack, bob, name="bob-recorder")
    key_id = _issue(stack, ada, adas)["id"]

    def names(headers: dict[str, str]) -> list[str]:
        page = stack.client.get("/api/v1/service-accounts", headers=headers).json()
        return [a["name"] for a in page["items"]]

    assert names(ada) == ["ada-recorder"] and names(bob) == ["bob-recorder"]
    assert names(cyd) == ["ada-recorder", "bob-recorder"]
    for path in (f"/{adas}", f"/{adas}/keys"):
        assert _error_code(stack.client.get(f"/api/v1/service-accounts{path}", headers=bob), 404) == (
            "service_account.not_found"
        )
    revoke = stack.client.delete(f"/api/v1/service-accounts/{adas}/keys/{key_id}", headers=bob)
    assert _error_code(revoke, 404) == "service_account.not_found"
    wrong_account = stack.client.delete(f"/api/v1/service-accounts/{bobs}/keys/{key_id}", headers=bob)
    assert _error_code(wrong_account, 404) == "api_key.not_found"
    assert stack.client.get(f"/api/v1/service-accounts/{adas}", headers=cyd).json()["owner_id"] == ada_id
    assert _issue(stack, cyd, bobs, name="issued by an admin")["key"].startswith("vpk_")


def test_service_account_names_are_checked(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    _service_account(stack, ada, name="recorder-3")

    bad = stack.client.post("/api/v1/service-accounts", json={"name": "a b"}, headers=ada)
    taken = stack.client.post("/api/v1/service-accounts", json={"name": "Recorder-3"}, headers=ada)
    person = stack.client.post("/api/v1/service-accounts", json={"name": "ADA"}, headers=ada)

    assert _error_code(bad, 422) == "service_account.invalid_name"
    assert _error_code(taken, 409) == "service_account.name_taken"
    assert _error_code(person, 409) == "service_account.name_taken"


def _last_used(settings: Settings, key_id: str) -> datetime | None:
    with db_session(settings) as session:
        row = session.get(ApiKey, uuid.UUID(key_id))
        assert row is not None
        return row.last_used_at


def test_last_use_is_written_at_most_once_in_five_minutes(stack: Stack) -> None:
    _ada, ada = stack.user("ada")
    account_id = _service_account(stack, ada)
    issued = _issue(stack, ada, account_id)
    job = f"/api/v1/jobs/{_job_of(stack.settings, account_id)}"
    key = _bearer(issued["key"])
    assert _last_used(stack.settings, issued["id"]) is None

    assert stack.client.get(job, headers=key).status_code == 200
    first = _last_used(stack.settings, issued["id"])
    assert stack.client.get(job, headers=key).status_code == 200
    unchanged = _last_used(stack.settings, issued["id"])
    long_ago = datetime.now(UTC) - timedelta(minutes=6)
    with db_session(stack.settings) as session:
        session.execute(update(ApiKey).values(last_used_at=long_ago))
        session.commit()
    assert stack.client.get(job, headers=key).status_code == 200
    refreshed = _last_used(stack.settings, issued["id"])

    assert first is not None and unchanged == first
    assert refreshed is not None and refreshed > long_ago + timedelta(minutes=5)


def test_disabling_the_service_account_or_its_owner_stops_its_keys(stack: Stack) -> None:
    ada_id, ada = stack.user("ada")
    _cyd, cyd = stack.user("cyd", admin=True)
    account_id = _service_account(stack, ada)
    key = _bearer(_issue(stack, ada, account_id)["key"])
    job_id = _job_of(stack.settings, account_id)

    def as_key() -> Any:
        return stack.client.get(f"/api/v1/jobs/{job_id}", headers=key)

    def disable(user_id: str, disabled: bool) -> None:
        changed = stack.client.patch(f"/api/v1/admin/users/{user_id}", json={"disabled": disabled}, headers=cyd)
        assert changed.status_code == 200, changed.text

    disable(account_id, True)
    assert _error_code(as_key(), 403) == "auth.account_disabled"
    disable(account_id, False)
    assert as_key().status_code == 200
    disable(ada_id, True)
    assert _error_code(as_key(), 403) == "auth.account_disabled"
    disable(ada_id, False)
    assert as_key().status_code == 200


def test_the_openapi_document_names_both_credentials(stack: Stack) -> None:
    document = stack.client.get("/api/v1/openapi.json").json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "apiKey"
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    assert schemes["bearer"]["scheme"] == "bearer"
    assert {"/api/v1/service-accounts", "/api/v1/service-accounts/{account_id}/keys"} <= set(document["paths"])
    # Either credential satisfies a guarded operation; the route itself refuses service accounts (403).
    assert document["paths"]["/api/v1/service-accounts"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
