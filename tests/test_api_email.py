"""Account emails: confirming the address, resetting the password, the outbox, SMTP, and languages.

The flows run through the HTTP API and the real notification actor: on the embedded default
(SQLite, in-process broker and worker threads, ``.eml`` files in the data folder) and on the
real services (PostgreSQL, Redis, and a separate ``dramatiq workers.entry`` process that
writes the files). The SMTP tests speak to a real SMTP server on 127.0.0.1 (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import re
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from litestar.testing import TestClient
from sqlalchemy import select, update

from api.app import create_app
from pipeline import i18n
from pipeline.cli.app import Pipeline, open_pipeline
from pipeline.db.models import User
from pipeline.email import RESET_PASSWORD, VERIFY_EMAIL, EmailStatus, OutboxEmail, deliver, issue_token
from pipeline.errors import TransientError
from pipeline.runtime import Runtime, prepare_database
from pipeline.settings import Settings
from tests import services
from tests.conftest import Backend
from tests.test_api_auth import PASSWORD, _bearer, _error_code, _login, _register, _sync_session
from workers.broker import DramatiqDispatcher, build_broker

NEW_PASSWORD = "Harbour-lights-7"


@dataclass
class Api:
    client: TestClient[Any]
    settings: Settings
    pipeline: Pipeline

    @property
    def outbox(self) -> Path:
        return self.settings.data_dir / "outbox"


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[Api]:
    """The API with the broker of ``settings``; in-process workers when it is the embedded one."""
    with (
        open_pipeline(settings) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
    ):
        yield Api(client, settings, pipeline)


@pytest.fixture
def api(backend: Backend) -> Iterator[Api]:
    """The API on the embedded default, then on PostgreSQL and Redis with a worker process."""
    with _serve(backend.settings()) as served:
        yield served


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Api]:
    with _serve(Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path / "data")}).with_secret()) as served:
        yield served


def _emails(outbox: Path, count: int, timeout: float = 60) -> list[EmailMessage]:
    """Wait until the outbox folder holds ``count`` emails; return them, oldest first."""
    found = lambda: sorted(outbox.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)  # noqa: E731
    assert services.wait_until(lambda: len(found()) >= count, timeout), f"expected {count} emails in {outbox}"
    messages = []
    for path in found():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def _link(message: EmailMessage) -> tuple[str, str]:
    """The path of the link in ``message`` and its ``token`` parameter."""
    body = message.get_body(("plain",))
    assert body is not None
    links = re.findall(r"https?://\S+", body.get_content())
    assert len(links) == 1, links
    parts = urlsplit(links[0])
    return parts.path, parse_qs(parts.query)["token"][0]


def _outbox_rows(settings: Settings) -> list[OutboxEmail]:
    with _sync_session(settings.database_url) as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at)))


def _user(settings: Settings, username: str = "ada") -> User:
    with _sync_session(settings.database_url) as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)
        return user


def _age_outbox(settings: Settings, by: timedelta) -> None:
    """Date every outbox row ``by`` earlier, as if the emails had been queued that long ago."""
    with _sync_session(settings.database_url) as session:
        for row in session.scalars(select(OutboxEmail)):
            row.created_at = row.created_at - by
        session.commit()


# --- Confirming the address -----------------------------------------------------------------


def test_registering_emails_a_link_that_verifies_the_account(api: Api) -> None:
    registered = _register(api.client)
    assert registered.status_code == 201, registered.text
    assert registered.json()["is_verified"] is False

    [message] = _emails(api.outbox, 1)
    path, token = _link(message)
    assert message["To"].addresses[0].addr_spec == "ada@example.org"
    assert message["Subject"] == "Confirm your email address for vidpipe"
    assert message["Content-Language"] == "en"
    assert path == "/api/v1/auth/verify-email"
    assert api.settings.public_url + path in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    verified = api.client.post("/api/v1/auth/verify-email", json={"token": token})

    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True
    access = _login(api.client).json()["access_token"]
    assert api.client.get("/api/v1/users/me", headers=_bearer(access)).json()["is_verified"] is True
    [row] = _outbox_rows(api.settings)
    assert row.status == EmailStatus.SENT and row.purpose == VERIFY_EMAIL and row.attempts == 1


def test_an_email_whose_message_was_lost_is_sent_by_the_reconciler_once(api: Api) -> None:
    from pipeline.reconciler import reconcile
    from tests.harness import with_runtime

    assert _register(api.client).status_code == 201
    _emails(api.outbox, 1)
    ada = _user(api.settings)
    # A reset email whose message never reached a worker (Redis restarted empty), queued 5 minutes ago.
    queued = datetime.now(UTC) - timedelta(minutes=5)
    with _sync_session(api.settings.database_url) as session:
        lost = OutboxEmail(user_id=ada.id, purpose=RESET_PASSWORD, created_at=queued, announced_at=queued)
        stale = OutboxEmail(user_id=ada.id, purpose=RESET_PASSWORD, created_at=queued - timedelta(hours=2))
        session.add_all([lost, stale])
        session.commit()
        lost_id = lost.id

    # The API's own pipeline: a second one in the process would start a second Dramatiq event
    # loop thread, and stopping it stops only the newest, leaving the other to outlive pytest.
    first, second = with_runtime(api.pipeline, lambda runtime: _reconcile_twice(runtime, reconcile))

    assert (first.resent_emails, second.resent_emails) == (1, 0)
    subjects = [message["Subject"] for message in _emails(api.outbox, 2)]
    assert subjects == ["Confirm your email address for vidpipe", "Reset your vidpipe password"], subjects
    status = lambda: {row.id: (row.status, row.attempts) for row in _outbox_rows(api.settings)}  # noqa: E731
    assert services.wait_until(lambda: status()[lost_id] == (EmailStatus.SENT, 1), 10), status()
    assert [state for state, _ in status().values()].count(EmailStatus.PENDING) == 1, "the two-hour-old one waits"


async def _reconcile_twice(runtime: Runtime, reconcile: Any) -> tuple[Any, Any]:
    return await reconcile(runtime), await reconcile(runtime)


def test_the_link_itself_verifies_when_opened_and_confirming_twice_is_harmless(embedded: Api) -> None:
    _register(embedded.client)
    _path, token = _link(_emails(embedded.outbox, 1)[0])

    opened = embedded.client.get("/api/v1/auth/verify-email", params={"token": token})
    again = embedded.client.post("/api/v1/auth/verify-email", json={"token": token})

    assert opened.status_code == 200 and opened.json()["is_verified"] is True
    assert again.status_code == 200 and again.json()["is_verified"] is True


def test_resending_the_verification_answers_the_same_for_every_address(embedded: Api) -> None:
    _register(embedded.client, "ada")
    _register(embedded.client, "bob")
    _emails(embedded.outbox, 2)
    _, bob_token = _link(_emails(embedded.outbox, 2)[1])
    assert embedded.client.post("/api/v1/auth/verify-email", json={"token": bob_token}).status_code == 200

    too_soon = embedded.client.post("/api/v1/auth/resend-verification", json={"email": "ada@example.org"})
    assert too_soon.status_code == 202 and too_soon.content == b""
    assert len(_outbox_rows(embedded.settings)) == 2, "a second email within the minute is not queued"

    _age_outbox(embedded.settings, timedelta(minutes=2))
    answers = [
        embedded.client.post("/api/v1/auth/resend-verification", json={"email": address})
        for address in ("ADA@example.org", "bob@example.org", "nobody@example.org")
    ]

    assert [(answer.status_code, answer.content) for answer in answers] == [(202, b"")] * 3
    messages = _emails(embedded.outbox, 3)
    assert len(messages) == 3 and messages[2]["To"].addresses[0].addr_spec == "ada@example.org"
    _, token = _link(messages[2])
    assert embedded.client.post("/api/v1/auth/verify-email", json={"token": token}).json()["is_verified"] is True


# --- Resetting the password -----------------------------------------------------------------


def test_a_password_reset_works_once_and_closes_every_session(api: Api) -> None:
    _register(api.client)
    before = _login(api.client).json()
    _emails(api.outbox, 1)

    asked = api.client.post("/api/v1/auth/forgot-password", json={"email": "ada@example.org"})
    assert asked.status_code == 202, asked.text
    message = _emails(api.outbox, 2)[1]
    path, token = _link(message)
    assert path == "/api/v1/auth/reset-password" and message["Subject"] == "Reset your vidpipe password"

    reset = api.client.post("/api/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD})

    assert reset.status_code == 200, reset.text
    assert reset.json()["is_verified"] is True, "the reset link proves the mailbox as well"
    assert _error_code(_login(api.client), 401) == "auth.invalid_credentials"
    after = _login(api.client, password=NEW_PASSWORD)
    assert after.status_code == 200
    stale = api.client.post("/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]})
    assert _error_code(stale, 401) == "auth.refresh_invalid"
    # The access token from before the reset is refused at once, not when it expires; the new one works.
    old_access = api.client.get("/api/v1/users/me", headers=_bearer(before["access_token"]))
    assert _error_code(old_access, 401) == "auth.token_revoked"
    assert api.client.get("/api/v1/users/me", headers=_bearer(after.json()["access_token"])).status_code == 200
    reused = api.client.post("/api/v1/auth/reset-password", json={"token": token, "password": "Another-pass-99"})
    assert _error_code(reused, 400) == "auth.token_used"
    assert _login(api.client, password=NEW_PASSWORD).status_code == 200


def test_a_weak_new_password_is_refused_and_the_link_still_works(embedded: Api) -> None:
    _register(embedded.client)
    embedded.client.post("/api/v1/auth/forgot-password", json={"email": "ada@example.org"})
    _, token = _link(_emails(embedded.outbox, 2)[1])

    weak = embedded.client.post("/api/v1/auth/reset-password", json={"token": token, "password": "short"})
    strong = embedded.client.post("/api/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD})

    assert _error_code(weak, 422) == "auth.weak_password"
    assert strong.status_code == 200, strong.text


def test_forgot_password_answers_202_whether_or_not_the_account_exists(embedded: Api) -> None:
    _register(embedded.client)
    _emails(embedded.outbox, 1)

    unknown = embedded.client.post("/api/v1/auth/forgot-password", json={"email": "nobody@example.org"})
    known = embedded.client.post("/api/v1/auth/forgot-password", json={"email": "ada@example.org"})

    assert (unknown.status_code, unknown.content) == (known.status_code, known.content) == (202, b"")
    _emails(embedded.outbox, 2)
    assert [row.purpose for row in _outbox_rows(embedded.settings)] == [VERIFY_EMAIL, RESET_PASSWORD]


def test_forgot_password_is_rate_limited_per_client(embedded: Api) -> None:
    codes = [
        embedded.client.post("/api/v1/auth/forgot-password", json={"email": f"n{i}@example.org"}).status_code
        for i in range(10)
    ]
    limited = embedded.client.post("/api/v1/auth/forgot-password", json={"email": "n@example.org"})

    assert set(codes) == {202}
    assert _error_code(limited, 429) == "auth.rate_limited"


# --- Tokens -----------------------------------------------------------------------------------


def test_expired_altered_and_misused_tokens_are_refused_with_their_codes(embedded: Api) -> None:
    _register(embedded.client)
    _, verify_token = _link(_emails(embedded.outbox, 1)[0])
    user = _user(embedded.settings)
    secret = embedded.settings.secret_key
    long_ago = datetime.now(UTC) - timedelta(days=3)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)

    cases = {
        "expired verification": ("verify-email", issue_token(secret, VERIFY_EMAIL, user, issued_at=long_ago)),
        "expired reset": ("reset-password", issue_token(secret, RESET_PASSWORD, user, issued_at=two_hours_ago)),
        "altered": ("verify-email", verify_token[:-2] + ("AA" if not verify_token.endswith("AA") else "BB")),
        "another purpose": ("reset-password", verify_token),
        "another secret": ("verify-email", issue_token("x" * 48, VERIFY_EMAIL, user)),
        "garbage": ("verify-email", "not-a-token"),
    }
    expected = {"expired verification": "auth.token_expired", "expired reset": "auth.token_expired"}

    for name, (route, token) in cases.items():
        body: dict[str, str] = {"token": token}
        if route == "reset-password":
            body["password"] = NEW_PASSWORD
        response = embedded.client.post(f"/api/v1/auth/{route}", json=body)
        assert _error_code(response, 400) == expected.get(name, "auth.token_invalid"), name

    assert _login(embedded.client).status_code == 200, "no refused token changed the password"
    me = embedded.client.get("/api/v1/users/me", headers=_bearer(_login(embedded.client).json()["access_token"]))
    assert me.json()["is_verified"] is False


def test_a_verification_link_stops_working_when_the_address_changes(embedded: Api) -> None:
    _register(embedded.client)
    _, token = _link(_emails(embedded.outbox, 1)[0])
    with _sync_session(embedded.settings.database_url) as session:
        session.execute(update(User).values(email="ada.new@example.org"))
        session.commit()

    response = embedded.client.post("/api/v1/auth/verify-email", json={"token": token})

    assert _error_code(response, 400) == "auth.token_invalid"


# --- Languages --------------------------------------------------------------------------------


def test_an_account_registered_in_korean_gets_korean_emails(embedded: Api) -> None:
    response = embedded.client.post(
        "/api/v1/auth/register",
        json={"email": "min@example.org", "username": "min", "password": PASSWORD},
        headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"},
    )
    assert response.status_code == 201, response.text

    [message] = _emails(embedded.outbox, 1)

    assert message["Subject"] == "vidpipe 이메일 주소를 확인해 주세요"
    assert message["Content-Language"] == "ko"
    assert "48시간 동안 유효합니다" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    _path, token = _link(message)
    assert embedded.client.post("/api/v1/auth/verify-email", json={"token": token}).status_code == 200


def test_error_messages_follow_accept_language(embedded: Api) -> None:
    embedded.client.headers["Accept-Language"] = "ko"
    try:
        korean = _login(embedded.client, login="nobody")
        missing = embedded.client.get("/api/v1/no-such-route")
    finally:
        del embedded.client.headers["Accept-Language"]
    english = _login(embedded.client, login="nobody")

    assert _error_code(korean, 401) == "auth.invalid_credentials"
    assert korean.json()["error"]["message"] == "로그인 정보 또는 비밀번호가 올바르지 않습니다."
    assert korean.headers["content-language"] == "ko" and "accept-language" in korean.headers["vary"].lower()
    assert missing.json()["error"]["message"] == "이 주소에는 아무것도 없습니다."
    assert english.json()["error"]["message"] == "The login or the password is wrong."
    assert english.headers["content-language"] == "en"


def test_expired_links_are_explained_in_korean(embedded: Api) -> None:
    _register(embedded.client)
    token = issue_token(
        embedded.settings.secret_key,
        VERIFY_EMAIL,
        _user(embedded.settings),
        issued_at=datetime.now(UTC) - timedelta(days=3),
    )

    response = embedded.client.post(
        "/api/v1/auth/verify-email", json={"token": token}, headers={"Accept-Language": "ko"}
    )

    assert _error_code(response, 400) == "auth.token_expired"
    assert response.json()["error"]["message"].startswith("토큰이 만료되었습니다")


def test_every_error_code_of_the_account_job_and_search_routes_has_a_korean_message() -> None:
    codes = {
        *("auth.token_missing", "auth.token_expired", "auth.token_invalid", "auth.token_used", "auth.token_revoked"),
        *("auth.invalid_credentials", "auth.email_taken", "auth.username_taken", "auth.invalid_email"),
        *("auth.invalid_username", "auth.weak_password", "auth.refresh_invalid", "auth.refresh_reused"),
        *("auth.rate_limited", "auth.unauthenticated", "auth.forbidden", "request.invalid"),
        *("request.method_not_allowed", "not_found", "internal.error", "job.not_found", "job.unknown_stage"),
        *("job.not_finished", "job.already_finished", "video.not_found", "search.empty_query"),
        *("search.query_too_long", "search.invalid_page", "search.invalid_per_page", "search.page_too_deep"),
        *("search.invalid_cues_per_video", "search.unavailable", "upload.too_large"),
    }
    assert {code for code in codes if not i18n.has_translation(code)} == set()
    assert i18n.error_message("no.such_code", "ko", "An English sentence.") == "An English sentence."
    assert i18n.error_message("job.not_found", "en", "There is no job 7.") == "There is no job 7."


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("fr-FR, ko;q=0.5, en;q=0.4", "ko"),
        ("ko;q=0, en", "en"),
        ("fr", None),
        ("*", None),
        ("", None),
        (None, None),
    ],
)
def test_accept_language_picks_the_best_supported_language(header: str | None, chosen: str | None) -> None:
    assert i18n.from_accept_language(header) == chosen


# --- The handler and the mail server -------------------------------------------------------------


@dataclass
class _Inbox:
    """An aiosmtpd handler that keeps what it receives and can refuse chosen recipients."""

    refuse: set[str] = field(default_factory=set)
    received: list[Envelope] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _smtp_server(inbox: _Inbox, **options: Any) -> Iterator[int]:
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path / "data"), **env}).with_secret()


def _queued_email(settings: Settings, purpose: str = VERIFY_EMAIL, address: str = "ada@example.org") -> uuid.UUID:
    """An account and one pending outbox row for it, written straight to the database."""
    prepare_database(settings)
    with _sync_session(settings.database_url) as session:
        user = User(email=address, username="ada", password_hash="x", language="en")
        session.add(user)
        session.flush()
        row = OutboxEmail(user_id=user.id, purpose=purpose)
        session.add(row)
        session.commit()
        return row.id


def _deliver(settings: Settings, email_id: uuid.UUID) -> None:
    """Run the ``email`` handler once, as the notification actor would."""

    async def run() -> None:
        runtime = Runtime.build(settings, DramatiqDispatcher(build_broker(settings)))
        try:
            await deliver(runtime, str(email_id))
        finally:
            await runtime.close()

    asyncio.run(run())


def _row(settings: Settings, email_id: uuid.UUID) -> OutboxEmail:
    with _sync_session(settings.database_url) as session:
        row = session.get(OutboxEmail, email_id)
        assert row is not None
        session.expunge(row)
        return row


def test_registering_sends_the_email_through_an_smtp_server(tmp_path: Path) -> None:
    inbox = _Inbox()
    with _smtp_server(inbox) as port, _serve(_settings(tmp_path, VIDPIPE_SMTP_URL=f"smtp://127.0.0.1:{port}")) as api:
        assert _register(api.client).status_code == 201
        assert services.wait_until(lambda: len(inbox.received) == 1, 30), "the SMTP server received nothing"

    [envelope] = inbox.received
    assert envelope.rcpt_tos == ["ada@example.org"]
    assert envelope.mail_from == "no-reply@localhost"
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert _link(message)[0] == "/api/v1/auth/verify-email"
    assert not api.outbox.exists(), "with a mail server, nothing is written to the outbox folder"
    [row] = _outbox_rows(api.settings)
    assert row.status == EmailStatus.SENT


def test_an_unreachable_mail_server_is_retried_then_given_up(tmp_path: Path) -> None:
    settings = _settings(tmp_path, VIDPIPE_SMTP_URL=f"smtp://127.0.0.1:{_free_port()}", VIDPIPE_MAX_ATTEMPTS="2")
    email_id = _queued_email(settings)

    with pytest.raises(TransientError) as first:
        _deliver(settings, email_id)
    after_first = _row(settings, email_id)
    _deliver(settings, email_id)
    after_last = _row(settings, email_id)

    assert first.value.code == "email.smtp_unavailable"
    assert (after_first.status, after_first.attempts, after_first.error_code) == (
        EmailStatus.PENDING,
        1,
        "email.smtp_unavailable",
    )
    assert (after_last.status, after_last.attempts) == (EmailStatus.FAILED, 2)


def test_a_refused_recipient_fails_the_email_for_good(tmp_path: Path) -> None:
    inbox = _Inbox(refuse={"ada@example.org"})
    with _smtp_server(inbox) as port:
        settings = _settings(tmp_path, VIDPIPE_SMTP_URL=f"smtp://127.0.0.1:{port}")
        email_id = _queued_email(settings)
        _deliver(settings, email_id)
        _deliver(settings, email_id)  # a second delivery of the message is a no-op

    row = _row(settings, email_id)
    assert (row.status, row.error_code, row.attempts) == (EmailStatus.FAILED, "email.recipient_refused", 1)
    assert inbox.received == []


def test_credentials_travel_only_after_starttls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the client trusts the test authority
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret pass")

    inbox = _Inbox()
    with _smtp_server(inbox, tls_context=server_context, require_starttls=True, authenticator=authenticate) as port:
        settings = _settings(tmp_path, VIDPIPE_SMTP_URL=f"smtp://mailer:s3cret%20pass@127.0.0.1:{port}")
        _deliver(settings, _queued_email(settings))

    assert logins == [(b"mailer", b"s3cret pass")]
    assert len(inbox.received) == 1


def test_a_password_is_never_sent_to_a_server_without_starttls(tmp_path: Path) -> None:
    inbox = _Inbox()
    with _smtp_server(inbox) as port:
        settings = _settings(tmp_path, VIDPIPE_SMTP_URL=f"smtp://mailer:secret@127.0.0.1:{port}")
        email_id = _queued_email(settings)
        _deliver(settings, email_id)

    row = _row(settings, email_id)
    assert (row.status, row.error_code) == (EmailStatus.FAILED, "email.tls_unavailable")
    assert inbox.received == []


def test_the_outbox_log_carries_the_link_only_on_an_embedded_development_setup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.email")
    development = _settings(tmp_path / "dev")
    production = _settings(tmp_path / "prod", VIDPIPE_ENV="production", VIDPIPE_SECRET_KEY="p" * 40)

    for settings in (development, production):
        email_id = _queued_email(settings)
        caplog.clear()
        _deliver(settings, email_id)
        [line] = [record.getMessage() for record in caplog.records if "Wrote email" in record.getMessage()]
        assert str(email_id) in line and "Confirm your email address" in line
        assert str(settings.data_dir / "outbox" / f"{email_id}.eml") in line
        assert "ada@example.org" not in line
        assert ("token=" in line) is (settings is development)


def test_an_address_that_cannot_be_written_in_a_header_fails_for_good(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    email_id = _queued_email(settings, address="에이다@example.org")

    _deliver(settings, email_id)

    row = _row(settings, email_id)
    assert (row.status, row.error_code) == (EmailStatus.FAILED, "email.bad_address")
    assert not (settings.data_dir / "outbox").exists()


def test_an_email_for_an_account_verified_meanwhile_is_skipped(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    email_id = _queued_email(settings)
    with _sync_session(settings.database_url) as session:
        session.execute(update(User).values(is_verified=True))
        session.commit()

    _deliver(settings, email_id)

    assert _row(settings, email_id).status == EmailStatus.SKIPPED
    assert not (settings.data_dir / "outbox").exists()


def test_the_openapi_document_lists_the_email_and_profile_routes(embedded: Api) -> None:
    document = embedded.client.get("/api/v1/openapi.json").json()

    public = ["verify-email", "resend-verification", "forgot-password", "reset-password"]
    for name in public:
        operation = document["paths"][f"/api/v1/auth/{name}"]["post"]
        assert "security" not in operation, name
    assert document["paths"]["/api/v1/users/me"]["patch"]["security"] == [{"bearer": []}, {"apiKey": []}]
