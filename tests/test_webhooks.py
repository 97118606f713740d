"""Webhooks for job events: signed deliveries, retries with growing delays, address safety, the API.

The stack runs on both backends: the embedded default (SQLite, in-process workers) and the real
services (PostgreSQL, S3, Redis and a separate worker process). A receiver HTTP server on
127.0.0.1, allowed through ``VIDPIPE_WEBHOOK_ALLOWED_HOSTS``, records what vidpipe sends and
answers from a script per path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar.testing import TestClient
from sqlalchemy import create_engine, inspect, select, update

from api.app import create_app
from api.auth.tokens import issue_access_token
from pipeline import webhooks
from pipeline.cli.app import Pipeline
from pipeline.db.migrate import alembic_config, sync_url, upgrade
from pipeline.db.models import Base, User
from pipeline.settings import Settings
from pipeline.submit import submit_file
from pipeline.webhooks import Webhook, WebhookDelivery, verify_signature
from tests.conftest import Backend
from tests.harness import drain, open_pipeline, process, with_runtime
from tests.mediagen import make_audio_only, make_video
from tests.test_api_auth import _bearer, _error_code, _sync_session
from workers.broker import DramatiqDispatcher

RETRY_MS = 200
"""The first retry delay in these tests; the second is six times longer."""
MAX_ATTEMPTS = 3
WAIT = 90.0


# --- The receiver -------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class _Script:
    statuses: list[int]
    delay: float = 0.0


class Receiver:
    """An HTTP(S) server that records every POST and answers each path from its script."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, _Script] = {}
        self._changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def answer(self, path: str, *statuses: int, delay: float = 0.0) -> None:
        """Answer ``path`` with these statuses in turn, repeating the last; 200 when not scripted."""
        self._scripts[path] = _Script(list(statuses), delay)

    def requests(self, path: str) -> list[Received]:
        with self._changed:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = WAIT) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len([r for r in self.received if r.path == path]) >= count, timeout)
        found = self.requests(path)
        assert len(found) >= count, f"{path} got {len(found)} requests, not {count}"
        return found

    def take(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        with self._changed:
            self.received.append(Received(path, time.monotonic(), headers, body))
            self._changed.notify_all()
            script = self._scripts.get(path, _Script([200]))
            status = script.statuses.pop(0) if len(script.statuses) > 1 else script.statuses[0]
            return status, script.delay

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, delay = receiver.take(self.path, headers, body)
            time.sleep(delay)
            answer = f"status {status} " + "x" * 1000
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


# --- The stack: API, broker and workers on one backend -----------------------------------


@dataclass
class Stack:
    backend: Backend
    settings: Settings
    pipeline: Pipeline
    client: TestClient[Any]
    headers: dict[str, dict[str, str]]
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def post(self, path: str, user: str = "ada", **kwargs: Any) -> Any:
        return self.client.post(f"/api/v1/webhooks{path}", headers=self.headers[user], **kwargs)

    def get(self, path: str, user: str = "ada", **kwargs: Any) -> Any:
        return self.client.get(f"/api/v1/webhooks{path}", headers=self.headers[user], **kwargs)

    def register(self, url: str, events: list[str] | None = None, user: str = "ada") -> dict[str, Any]:
        body: dict[str, Any] = {"url": url} if events is None else {"url": url, "events": events}
        response = self.post("", user, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def deliveries(self, webhook_id: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/{webhook_id}/deliveries", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_delivery(self, webhook_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The newest delivery of the webhook, once ``done`` holds for it."""
        return self.wait_deliveries(webhook_id, done)[0]

    def wait_deliveries(self, webhook_id: str, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The webhook's deliveries, newest first, once ``done`` holds for every one (and there is one)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            items: list[dict[str, Any]] = self.deliveries(webhook_id)["items"]
            if items and all(done(item) for item in items):
                return items
            time.sleep(0.1)
        raise AssertionError(f"the deliveries of webhook {webhook_id} did not get there: {items}")

    def pause_workers(self) -> None:
        if self.pipeline.worker is not None:
            self.pipeline.worker.pause()
        elif self.backend.worker is not None:
            self.backend.worker.stop()

    def resume_workers(self) -> None:
        if self.pipeline.worker is not None:
            self.pipeline.worker.resume()
        else:
            self.backend.start_worker()


def _add_users(settings: Settings, names: dict[str, str]) -> dict[str, uuid.UUID]:
    """Accounts made straight in the database (the account routes have tests of their own), by role."""
    ids = {name: uuid.uuid4() for name in names}
    with _sync_session(settings.database_url) as session:
        for name, role in names.items():
            session.add(User(id=ids[name], email=f"{name}@example.org", username=name, password_hash="!", role=role))
        session.commit()
    return ids


@pytest.fixture
def stack(backend: Backend, tls_ca: tuple[trustme.CA, Path]) -> Iterator[Stack]:
    env = {
        "VIDPIPE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "VIDPIPE_WEBHOOK_RETRY_MS": str(RETRY_MS),
        "VIDPIPE_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    }
    if backend.worker is not None:
        env["SSL_CERT_FILE"] = str(tls_ca[1])  # read by the worker process's TLS context
    backend.configure(**env)
    settings = backend.settings()
    with (
        open_pipeline(settings) as pipeline,
        TestClient(create_app(settings, DramatiqDispatcher(pipeline.broker))) as client,
    ):
        ids = _add_users(settings, {"ada": "member", "bob": "member", "cyd": "admin"})
        headers = {name: _bearer(issue_access_token(user_id, settings.secret_key)) for name, user_id in ids.items()}
        yield Stack(backend, settings, pipeline, client, headers, ids)


def _verified(received: Received, secret: str) -> dict[str, Any]:
    verify_signature(secret, received.headers["vidpipe-signature"], received.body)
    return received.event


# --- Events of real jobs ------------------------------------------------------------------


def test_a_processed_video_sends_a_signed_job_succeeded_event_to_its_subscribers(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    every = stack.register(receiver.url("/every"))
    failures = stack.register(receiver.url("/failures"), events=["job.failed"])
    clip = make_video(tmp_path / "harbour.mp4", duration=1.0)

    report = with_runtime(stack.pipeline, lambda rt: process(rt, clip, title="Harbour", owner_id=stack.user_ids["ada"]))

    assert report["job"]["status"] == "succeeded", report
    (request,) = receiver.wait_for("/every", 1)
    event = _verified(request, every["secret"])
    assert request.headers["vidpipe-event"] == "job.succeeded" == event["event"]
    assert request.headers["vidpipe-delivery"] == event["id"]
    assert event["data"]["job"]["id"] == report["job"]["id"] and event["data"]["job"]["status"] == "succeeded"
    assert event["data"]["video"] == {
        "id": report["video"]["id"],
        "title": "Harbour",
        "duration": pytest.approx(1.0, abs=0.1),
    }
    delivery = stack.wait_delivery(every["id"], lambda d: d["status"] == "succeeded")
    assert delivery["id"] == event["id"] and delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["job_id"] == report["job"]["id"] and delivery["response_excerpt"].startswith("status 200")
    assert len(delivery["response_excerpt"]) == webhooks.EXCERPT_BYTES
    # Deliveries are recorded with the job's end, so a webhook that wanted this event would have one by now.
    assert stack.deliveries(failures["id"])["items"] == [] and receiver.requests("/failures") == []


def test_a_failed_job_sends_job_failed_with_its_error(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    failures = stack.register(receiver.url("/failures"), events=["job.failed"])
    podcast = make_audio_only(tmp_path / "podcast.m4a", duration=1.0)

    report = with_runtime(stack.pipeline, lambda rt: process(rt, podcast, owner_id=stack.user_ids["ada"]))

    assert report["job"]["status"] == "failed"
    event = _verified(receiver.wait_for("/failures", 1)[0], failures["secret"])
    assert event["event"] == "job.failed" and event["data"]["job"]["error_code"] == "media.no_video_stream"


def test_a_job_cancelled_through_the_api_sends_job_cancelled(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    hook = stack.register(receiver.url("/cancelled"), events=["job.cancelled"])
    clip = make_video(tmp_path / "tide.mp4", duration=1.0)
    stack.pause_workers()
    submitted = with_runtime(stack.pipeline, lambda rt: submit_file(rt, clip, owner_id=stack.user_ids["ada"]))

    cancelled = stack.client.post(f"/api/v1/jobs/{submitted.job_id}/cancel", headers=stack.headers["ada"])

    assert cancelled.status_code == 202, cancelled.text
    (waiting,) = stack.deliveries(hook["id"])["items"]
    assert waiting["status"] == "pending" and waiting["attempts"] == 0 and waiting["next_attempt_at"] is None
    stack.resume_workers()  # the queued ingest message reaches a runner, which sees the cancel
    event = _verified(receiver.wait_for("/cancelled", 1)[0], hook["secret"])
    assert event["event"] == "job.cancelled" and event["data"]["job"]["id"] == str(submitted.job_id)
    assert stack.wait_delivery(hook["id"], lambda d: d["status"] == "succeeded")["attempts"] == 1


# --- Retries ------------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_growing_delays_until_it_answers(stack: Stack, receiver: Receiver) -> None:
    receiver.answer("/flaky", 500, 503, 200)
    hook = stack.register(receiver.url("/flaky"))

    assert stack.post(f"/{hook['id']}/test").status_code == 202

    requests = receiver.wait_for("/flaky", 3)
    delivery = stack.wait_delivery(hook["id"], lambda d: d["status"] != "pending")
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3 and delivery["event"] == "webhook.ping"
    log = delivery["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3] and [a["status_code"] for a in log] == [500, 503, 200]
    assert [a["retry_in_ms"] for a in log] == [RETRY_MS, RETRY_MS * 6, None]
    assert {r.headers["vidpipe-delivery"] for r in requests} == {delivery["id"]}
    assert all(_verified(r, hook["secret"])["id"] == delivery["id"] for r in requests)
    # Each attempt waited at least its scheduled delay after the answer to the one before.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert gaps[0] >= RETRY_MS / 1000 and gaps[1] >= RETRY_MS * 6 / 1000


def test_a_receiver_that_answers_410_is_not_retried(stack: Stack, receiver: Receiver) -> None:
    receiver.answer("/gone", 410)
    hook = stack.register(receiver.url("/gone"))

    stack.post(f"/{hook['id']}/test")

    delivery = stack.wait_delivery(hook["id"], lambda d: d["status"] != "pending")
    assert delivery["status"] == "failed" and delivery["attempts"] == 1 and delivery["last_status_code"] == 410
    assert delivery["last_error_code"] == "webhook.http_status" and delivery["next_attempt_at"] is None
    assert delivery["attempt_log"][0]["retry_in_ms"] is None
    assert len(receiver.requests("/gone")) == 1


def test_an_unreachable_receiver_is_retried_until_the_attempts_run_out(stack: Stack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = stack.register(f"http://127.0.0.1:{port}/nobody")

    stack.post(f"/{hook['id']}/test")

    delivery = stack.wait_delivery(hook["id"], lambda d: d["status"] != "pending")
    assert delivery["status"] == "failed" and delivery["attempts"] == MAX_ATTEMPTS
    assert delivery["last_error_code"] == "webhook.connection_failed" and delivery["last_status_code"] is None
    assert delivery["last_error"].endswith(f"Gave up after {MAX_ATTEMPTS} attempts.")


def test_a_duplicated_notify_message_sends_once(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/once"))

    async def twice(runtime: Any) -> uuid.UUID:
        async with runtime.database.sessions() as session:
            delivery = webhooks.ping_delivery(await webhooks.get_webhook(session, uuid.UUID(hook["id"])))
            session.add(delivery)
            await session.commit()
        for ref in (str(delivery.id), str(delivery.id), f"{delivery.id}:1"):
            runtime.dispatcher.notify("webhook", ref)
        return delivery.id

    delivery_id = with_runtime(stack.pipeline, twice)

    stack.wait_delivery(hook["id"], lambda d: d["status"] == "succeeded")
    drain(stack.pipeline)
    assert len(receiver.requests("/once")) == 1
    (delivery,) = stack.deliveries(hook["id"])["items"]
    assert delivery["id"] == str(delivery_id) and delivery["attempts"] == 1 and len(delivery["attempt_log"]) == 1


def test_two_workers_racing_for_one_attempt_send_it_once(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/race"))

    async def race(runtime: Any) -> None:
        async with runtime.database.sessions() as session:
            delivery = webhooks.ping_delivery(await webhooks.get_webhook(session, uuid.UUID(hook["id"])))
            session.add(delivery)
            await session.commit()
        await asyncio.gather(*(webhooks.deliver(runtime, str(delivery.id)) for _ in range(3)))

    with_runtime(stack.pipeline, race)

    assert len(receiver.requests("/race")) == 1
    (delivery,) = stack.deliveries(hook["id"])["items"]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1


def test_the_sweep_sends_again_what_was_never_announced_or_lost_mid_attempt(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/swept"))
    long_ago = datetime.now(UTC) - timedelta(seconds=stack.settings.lost_message_seconds + 60)

    async def sweep(runtime: Any) -> tuple[int, int]:
        async with runtime.database.sessions() as session:
            webhook = await webhooks.get_webhook(session, uuid.UUID(hook["id"]))
            # One whose announcement never went out, one whose worker died after claiming attempt 1.
            unannounced, interrupted = webhooks.ping_delivery(webhook), webhooks.ping_delivery(webhook)
            unannounced.created_at, unannounced.next_attempt_at = long_ago, None
            interrupted.attempts, interrupted.next_attempt_at = 1, long_ago
            session.add_all([unannounced, interrupted])
            await session.commit()
        return await webhooks.resend_lost_deliveries(runtime), await webhooks.resend_lost_deliveries(runtime)

    first, second = with_runtime(stack.pipeline, sweep)

    assert (first, second) == (2, 0)
    receiver.wait_for("/swept", 2)
    items = stack.wait_deliveries(hook["id"], lambda d: d["status"] == "succeeded")
    assert sorted(d["attempts"] for d in items) == [1, 2]


# --- Address safety -----------------------------------------------------------------------


INTERNAL_URLS = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://localhost:8080/hook",
    "http://[::1]/hook",
    "https://169.254.169.254/latest/meta-data",
    "http://192.168.1.20/hook",
    "http://100.64.0.1/hook",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[2002:a00:1::1]/hook",
    "ftp://example.org/hook",
]


def test_internal_addresses_are_refused_at_registration_by_default(
    stack: Stack, default_client: TestClient[Any]
) -> None:
    refused = {
        url: _error_code(default_client.post("/api/v1/webhooks", headers=stack.headers["ada"], json={"url": url}), 422)
        for url in INTERNAL_URLS
    }
    public = default_client.post(
        "/api/v1/webhooks", headers=stack.headers["ada"], json={"url": "https://93.184.215.14/"}
    )

    assert refused == dict.fromkeys(INTERNAL_URLS, "webhook.url_not_allowed")
    assert public.status_code == 201, public.text
    assert [h["url"] for h in stack.get("").json()] == ["https://93.184.215.14/"]


@pytest.fixture
def default_client(stack: Stack) -> Iterator[TestClient[Any]]:
    """The API with the default settings, where no host is allowed beyond public addresses."""
    settings = replace(stack.settings, webhook_allowed_hosts=())
    with TestClient(create_app(settings, DramatiqDispatcher(stack.pipeline.broker))) as client:
        yield client


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://user:secret@127.0.0.1/hook", "webhook.url_invalid"),
        ("http:///no-host", "webhook.url_invalid"),
        ("http://127.0.0.1:99999/hook", "webhook.url_invalid"),
        ("127.0.0.1/hook", "webhook.url_not_allowed"),
        ("http://no-such-host.invalid/hook", "webhook.url_unresolvable"),
    ],
)
def test_malformed_and_unresolvable_urls_are_refused(url: str, code: str) -> None:
    with pytest.raises(webhooks.InvalidInput) as refused:
        asyncio.run(webhooks.resolve_target(url, ("127.0.0.1",)))

    assert refused.value.code == code


def test_a_host_that_became_internal_is_refused_at_delivery_time(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/moved"))
    # As if the name now resolved to an internal address: only the delivery-time check stands in the way.
    with _sync_session(stack.settings.database_url) as session:
        session.execute(
            update(Webhook).where(Webhook.id == uuid.UUID(hook["id"])).values(url=f"http://10.0.0.1:{receiver.port}/")
        )
        session.commit()

    stack.post(f"/{hook['id']}/test")

    delivery = stack.wait_delivery(hook["id"], lambda d: d["status"] != "pending")
    assert delivery["status"] == "failed" and delivery["last_error_code"] == "webhook.url_not_allowed"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] is None
    assert receiver.received == []


def test_an_https_receiver_is_reached_on_the_checked_address_under_its_name(
    stack: Stack, tls_ca: tuple[trustme.CA, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, ca_path = tls_ca
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))  # the in-process workers' TLS context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    tls_receiver = Receiver(tls=context)
    try:
        hook = stack.register(tls_receiver.url("/tls", host="localhost", scheme="https"))

        stack.post(f"/{hook['id']}/test")

        (request,) = tls_receiver.wait_for("/tls", 1)
        assert request.headers["host"] == f"localhost:{tls_receiver.port}"
        assert _verified(request, hook["secret"])["event"] == "webhook.ping"
        assert stack.wait_delivery(hook["id"], lambda d: d["status"] != "pending")["status"] == "succeeded"
    finally:
        tls_receiver.close()


def test_a_receiver_slower_than_the_timeout_is_retried(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setattr(webhooks, "REQUEST_TIMEOUT", httpx.Timeout(0.3))
    receiver.answer("/slow", 200, delay=1.0)
    settings = Settings.from_env(
        {"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    ).with_secret()

    async def attempt() -> webhooks.Outcome:
        claim = webhooks.Claim(uuid.uuid4(), 1, uuid.uuid4(), receiver.url("/slow"), "s", "webhook.ping", b"{}", True)
        return await webhooks.attempt_delivery(claim, settings.webhook_allowed_hosts)

    outcome = asyncio.run(attempt())

    assert outcome.error_code == "webhook.timeout" and outcome.retryable and outcome.status_code is None


# --- The API ------------------------------------------------------------------------------


def test_members_see_only_their_own_webhooks_and_the_secret_only_once(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/mine"), events=["job.succeeded", "job.failed"])
    assert hook["secret"].startswith("vpwh_") and hook["events"] == ["job.succeeded", "job.failed"]

    listed = stack.get("").json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert "secret" not in stack.get(f"/{hook['id']}").json()
    assert stack.get("", "bob").json() == []
    for method, path in [
        ("GET", ""),
        ("GET", "/deliveries"),
        ("POST", "/test"),
        ("POST", "/rotate-secret"),
        ("PATCH", ""),
        ("DELETE", ""),
    ]:
        response = stack.client.request(
            method,
            f"/api/v1/webhooks/{hook['id']}{path}",
            headers=stack.headers["bob"],
            json={} if method == "PATCH" else None,
        )
        assert _error_code(response, 404) == "webhook.not_found", (method, path)
    assert stack.get(f"/{hook['id']}", "cyd").status_code == 200
    assert _error_code(stack.client.get(f"/api/v1/webhooks/{hook['id']}"), 401) == "auth.token_missing"

    rotated = stack.post(f"/{hook['id']}/rotate-secret").json()
    assert rotated["secret"] != hook["secret"] and rotated["secret"].startswith("vpwh_")
    assert stack.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=stack.headers["ada"]).status_code == 204
    assert _error_code(stack.get(f"/{hook['id']}"), 404) == "webhook.not_found"


def test_events_are_checked_and_a_switched_off_webhook_gets_no_test(stack: Stack, receiver: Receiver) -> None:
    unknown = stack.post("", json={"url": receiver.url("/x"), "events": ["job.exploded"]})
    none = stack.post("", json={"url": receiver.url("/x"), "events": []})
    assert _error_code(unknown, 422) == "webhook.unknown_event" and _error_code(none, 422) == "webhook.no_events"
    hook = stack.register(receiver.url("/x"))

    off = stack.client.patch(
        f"/api/v1/webhooks/{hook['id']}", headers=stack.headers["ada"], json={"active": False, "events": ["job.failed"]}
    )

    assert off.status_code == 200 and off.json()["active"] is False and off.json()["events"] == ["job.failed"]
    assert _error_code(stack.post(f"/{hook['id']}/test"), 409) == "webhook.inactive"


def test_deliveries_are_listed_newest_first_in_pages(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/pages"))
    sent = [stack.post(f"/{hook['id']}/test").json()["id"] for _ in range(3)]
    receiver.wait_for("/pages", 3)

    first = stack.deliveries(hook["id"], limit=2)
    second = stack.deliveries(hook["id"], limit=2, cursor=first["next_cursor"])

    assert [d["id"] for d in first["items"] + second["items"]] == sent[::-1]
    assert first["next_cursor"] and second["next_cursor"] is None
    assert _error_code(stack.get(f"/{hook['id']}/deliveries", params={"cursor": "nonsense"}), 422) == (
        "webhook.cursor_invalid"
    )
    assert _error_code(stack.get(f"/{hook['id']}/deliveries", params={"limit": 0}), 422) == "webhook.limit_invalid"


# --- Signatures ---------------------------------------------------------------------------

SECRET = "vpwh_" + "ab" * 32
BODY = b'{"event":"job.succeeded","id":"1"}'


def test_a_signature_verifies_against_the_raw_body_and_secret() -> None:
    header = webhooks.sign(SECRET, BODY, timestamp=1_700_000_000)

    assert verify_signature(SECRET, header, BODY, now=1_700_000_100) == 1_700_000_000
    assert verify_signature(SECRET, header, BODY.decode(), now=1_700_000_000) == 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "code"),
    [
        (SECRET, None, BODY.replace(b"succeeded", b"failed"), 1_700_000_000, "webhook.signature_mismatch"),
        ("vpwh_another", None, BODY, 1_700_000_000, "webhook.signature_mismatch"),
        (SECRET, None, BODY, 1_700_000_301, "webhook.signature_expired"),
        (SECRET, None, BODY, 1_699_999_699, "webhook.signature_expired"),
        (SECRET, "v1=abc", BODY, 1_700_000_000, "webhook.signature_malformed"),
        (SECRET, "t=1700000000", BODY, 1_700_000_000, "webhook.signature_malformed"),
        (SECRET, "t=1700000001,v1=" + "0" * 64, BODY, 1_700_000_000, "webhook.signature_mismatch"),
    ],
)
def test_a_tampered_body_a_wrong_secret_or_an_old_timestamp_is_rejected(
    secret: str, header: str | None, body: bytes, now: float, code: str
) -> None:
    header = header or webhooks.sign(SECRET, BODY, timestamp=1_700_000_000)

    with pytest.raises(webhooks.SignatureError) as rejected:
        verify_signature(secret, header, body, now=now)

    assert rejected.value.code == code


def test_a_header_with_several_signatures_verifies_with_any_of_them() -> None:
    good = webhooks.sign(SECRET, BODY, timestamp=1_700_000_000).split(",")[1]

    assert verify_signature(SECRET, f"t=1700000000,v1={'0' * 64},{good}", BODY, now=1_700_000_000)


def test_retry_delays_grow_six_fold_up_to_the_cap_and_respect_retry_after() -> None:
    assert [webhooks.retry_delay_ms(n, 10_000) for n in (1, 2, 3)] == [10_000, 60_000, 360_000]
    assert webhooks.retry_delay_ms(9, 10_000) == webhooks.BACKOFF_CAP_MS
    assert webhooks.retry_delay_ms(1, 10_000, retry_after_ms=120_000) == 120_000
    assert webhooks.retry_delay_ms(1, 10_000, retry_after_ms=10**12) == webhooks.BACKOFF_CAP_MS


def test_the_retry_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {"VIDPIPE_DATA_DIR": str(tmp_path), "VIDPIPE_WEBHOOK_RETRY_MS": "500", "VIDPIPE_WEBHOOK_MAX_ATTEMPTS": "4"}

    settings = Settings.from_env(env)

    assert (settings.webhook_retry_ms, settings.webhook_max_attempts) == (500, 4)
    assert (Settings.from_env({"VIDPIPE_DATA_DIR": str(tmp_path)}).webhook_max_attempts) == 8


# --- Schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_the_migration_agrees_with_the_models_and_downgrades(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'vidpipe.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_database")
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert [d for d in differences if "webhook" in repr(d)] == []

        command.downgrade(alembic_config(url), "0008")
        assert not {"webhooks", "webhook_deliveries"} & set(inspect(engine).get_table_names())
        upgrade(url)
        assert {"webhooks", "webhook_deliveries"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_deliveries_recorded_for_a_deleted_webhook_are_dropped_quietly(stack: Stack, receiver: Receiver) -> None:
    hook = stack.register(receiver.url("/deleted"))
    stack.pause_workers()
    stack.post(f"/{hook['id']}/test")
    assert stack.client.delete(f"/api/v1/webhooks/{hook['id']}", headers=stack.headers["ada"]).status_code == 204

    stack.resume_workers()
    drain(stack.pipeline)

    assert receiver.requests("/deleted") == []
    with _sync_session(stack.settings.database_url) as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
