"""The caller's profile: reading and editing display name, description, birthdate and language.

Every test runs on SQLite and on PostgreSQL (a fresh migrated database each time), with the
in-process broker taking the registration emails.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from pipeline.cli.app import open_pipeline
from pipeline.settings import Settings
from tests.test_api_auth import _bearer, _error_code, _login, _register
from workers.broker import DramatiqDispatcher

ME = "/api/v1/users/me"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient[Any]]:
    """A client holding the access token of a fresh account ``ada``."""
    env = {"VIDPIPE_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        env["VIDPIPE_DATABASE_URL"] = request.getfixturevalue("pg_database")
    settings = Settings.from_env(env).with_secret()
    with (
        open_pipeline(settings) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as test_client,
    ):
        assert _register(test_client).status_code == 201
        test_client.headers.update(_bearer(_login(test_client).json()["access_token"]))
        yield test_client


def _patch(client: TestClient[Any], headers: dict[str, str] | None = None, **fields: Any) -> Any:
    return client.patch(ME, json=fields, headers=headers)


def test_a_new_profile_has_empty_fields_and_english(client: TestClient[Any]) -> None:
    me = client.get(ME).json()

    assert {key: me[key] for key in ("display_name", "description", "birthdate", "language")} == {
        "display_name": None,
        "description": None,
        "birthdate": None,
        "language": "en",
    }
    assert {"id", "email", "username", "is_verified", "role", "created_at"} <= set(me)


def test_the_profile_is_edited_field_by_field(client: TestClient[Any]) -> None:
    first = _patch(
        client, display_name="  Ada Lovelace ", description="Counts\nwaves.", birthdate="1990-12-10", language="ko"
    )
    assert first.status_code == 200, first.text

    second = _patch(client, display_name="에이다")
    cleared = _patch(client, description=None, birthdate=None)

    assert first.json()["display_name"] == "Ada Lovelace" and first.json()["description"] == "Counts\nwaves."
    assert second.json()["birthdate"] == "1990-12-10" and second.json()["language"] == "ko"
    assert second.json()["display_name"] == "에이다"
    me = client.get(ME).json()
    assert cleared.json() == me
    assert (me["display_name"], me["description"], me["birthdate"], me["language"]) == ("에이다", None, None, "ko")


def test_korean_text_is_stored_in_its_composed_form(client: TestClient[Any]) -> None:
    decomposed = "\u1100\u1161\u11a8"  # 각, as macOS keyboards may send it

    response = _patch(client, display_name=decomposed)

    assert response.json()["display_name"] == "각"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"display_name": "x" * 81}, 422, "profile.invalid_display_name"),
        ({"display_name": "tab\there"}, 422, "profile.invalid_display_name"),
        ({"description": "y" * 2001}, 422, "profile.description_too_long"),
        ({"description": "bell\a"}, 422, "profile.invalid_description"),
        ({"birthdate": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()}, 422, "profile.birthdate_in_future"),
        ({"birthdate": "1899-12-31"}, 422, "profile.birthdate_too_early"),
        ({"birthdate": "2001-02-30"}, 400, "request.invalid"),
        ({"birthdate": "yesterday"}, 400, "request.invalid"),
        ({"language": "fr"}, 422, "profile.invalid_language"),
        ({"language": None}, 400, "request.invalid"),
        ({"role": "admin"}, 400, "request.invalid"),
        ({"display_name": 7}, 400, "request.invalid"),
    ],
    ids=[
        "name-too-long",
        "name-control-character",
        "description-too-long",
        "description-control-character",
        "birthdate-future",
        "birthdate-too-early",
        "birthdate-impossible",
        "birthdate-not-a-date",
        "language-unsupported",
        "language-null",
        "unknown-field",
        "name-not-text",
    ],
)
def test_invalid_profile_fields_are_refused_and_change_nothing(
    client: TestClient[Any], fields: dict[str, Any], status: int, code: str
) -> None:
    before = client.get(ME).json()

    response = client.patch(ME, json={"display_name": "Changed", **fields} if "display_name" not in fields else fields)

    assert _error_code(response, status) == code
    assert client.get(ME).json() == before


def test_limits_themselves_are_accepted(client: TestClient[Any]) -> None:
    today = datetime.now(UTC).date().isoformat()

    response = _patch(client, display_name="x" * 80, description="y" * 2000, birthdate=today, language="ko-KR")

    assert response.status_code == 200, response.text
    assert response.json()["birthdate"] == today and response.json()["language"] == "ko"
    assert _patch(client, birthdate=date(1900, 1, 1).isoformat()).status_code == 200


def test_profile_errors_speak_the_requested_or_the_accounts_language(client: TestClient[Any]) -> None:
    future = {"birthdate": "2999-01-01"}

    asked_korean = _patch(client, headers={"Accept-Language": "ko"}, **future)
    assert _patch(client, language="ko").status_code == 200
    account_korean = _patch(client, **future)
    asked_english = _patch(client, headers={"Accept-Language": "en-US"}, **future)

    assert asked_korean.json()["error"]["message"] == "생년월일은 미래 날짜일 수 없습니다."
    assert account_korean.json()["error"]["message"] == "생년월일은 미래 날짜일 수 없습니다."
    assert account_korean.headers["content-language"] == "ko"
    assert asked_english.json()["error"]["message"] == "The birthdate is in the future."


def test_the_profile_needs_an_access_token(client: TestClient[Any]) -> None:
    del client.headers["Authorization"]

    assert _error_code(client.patch(ME, json={"display_name": "x"}), 401) == "auth.token_missing"
    assert _error_code(client.get(ME), 401) == "auth.token_missing"


def test_every_guarded_route_answers_in_the_accounts_language_when_the_request_names_none(
    client: TestClient[Any],
) -> None:
    missing_job = "/api/v1/jobs/00000000-0000-4000-8000-000000000000"
    before = client.get(missing_job)
    assert _patch(client, language="ko").status_code == 200

    account_korean = client.get(missing_job)
    asked_english = client.get(missing_job, headers={"Accept-Language": "en"})

    assert _error_code(before, 404) == "job.not_found"
    assert before.json()["error"]["message"].startswith("There is no job")
    assert _error_code(account_korean, 404) == "job.not_found"
    assert account_korean.json()["error"]["message"] == "작업을 찾을 수 없습니다."
    assert account_korean.headers["content-language"] == "ko"
    assert asked_english.json()["error"]["message"].startswith("There is no job")
