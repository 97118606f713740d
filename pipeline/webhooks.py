"""Webhooks: job events POSTed to URLs an account registered, signed, retried, and logged.

When a job ends, :func:`record_job_event` runs inside the transaction that ends it (called by
:func:`pipeline.jobs.move_job`) and adds one delivery row per active webhook of the video's owner
that subscribes to the event. Whoever holds the runtime after that commit — the stage runner —
calls :func:`announce_job_event`, which sends a ``("webhook", delivery id)`` notification per row.
:func:`deliver`, the handler of that kind, claims the attempt, POSTs the event and records the
outcome: a 2xx ends the delivery; a 408, 429, 5xx, timeout or connection error schedules the next
attempt after a delay that grows six-fold each time (``VIDPIPE_WEBHOOK_RETRY_MS`` first, six hours
at most, ``VIDPIPE_WEBHOOK_MAX_ATTEMPTS`` in all); anything else (a redirect, another 4xx, an
address that is no longer allowed) fails it at once, so a receiver that said no is not hammered.

Verifying a request, on the receiver's side. Every request carries

- ``Vidpipe-Signature: t=<unix seconds>,v1=<hex>``, where the hex is HMAC-SHA256 keyed with the
  webhook's secret over the bytes ``<t>.<raw body>``;
- ``Vidpipe-Delivery: <delivery id>``, the same on every attempt of one delivery;
- ``Vidpipe-Event: job.succeeded`` (or ``job.failed``, ``job.cancelled``, ``webhook.ping``).

A receiver recomputes the HMAC over the raw body as received (before any JSON parsing) and compares
it in constant time with each ``v1`` value; refuses a ``t`` more than five minutes away from its own
clock, so a captured request cannot be replayed later; and remembers the delivery ids it handled
for at least that long, because a retry after a lost answer carries the same id. Each attempt is
signed afresh, so a retry hours later still carries a current ``t``. :func:`verify_signature`
does the first two steps.

Address safety. A webhook URL is http or https, without credentials. Its host is resolved and
every address must be public: private, loopback, link-local, multicast, reserved and unspecified
addresses are refused (also when an IPv6 address embeds such an IPv4 one), unless the host is
listed in ``VIDPIPE_WEBHOOK_ALLOWED_HOSTS``. The check runs at registration and again before every
attempt, and the request then goes to the address that was checked (with the name kept for the
``Host`` header and TLS), so a DNS answer that changes in between cannot redirect it. Redirects are
not followed, timeouts are short, and only the first bytes of an answer are read and kept.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import ssl
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Uuid, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.db.models import Base, Job, Video, utcnow
from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.states import JobStatus

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Vidpipe-Signature"
DELIVERY_HEADER = "Vidpipe-Delivery"
EVENT_HEADER = "Vidpipe-Event"
SIGNATURE_TOLERANCE = 300.0
"""Seconds a signature's timestamp may be away from the receiver's clock."""

REQUEST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per step of an attempt: a receiver should queue the work and answer at once."""
ATTEMPT_DEADLINE = 30.0
"""Seconds one attempt may take in all, so a receiver that drips its answer cannot hold a worker."""
DNS_TIMEOUT = 5.0
EXCERPT_BYTES = 512
"""How much of a receiver's answer is read and kept, for the owner to see what it said."""
MAX_ADDRESSES = 3
"""Resolved addresses tried in turn when one refuses the connection."""
BACKOFF_GROWTH = 6
BACKOFF_CAP_MS = 6 * 60 * 60 * 1000
MAX_WEBHOOKS_PER_OWNER = 20
MAX_URL_LENGTH = 2048
_SECRET_PREFIX = "vpwh_"
_USER_AGENT = "vidpipe-webhooks/1"
_RETRY_STATUSES = frozenset({408, 429})


class Event(enum.StrEnum):
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    PING = "webhook.ping"
    """Sent on request to test a webhook; not something to subscribe to."""


JOB_EVENTS: tuple[Event, ...] = (Event.JOB_SUCCEEDED, Event.JOB_FAILED, Event.JOB_CANCELLED)
_EVENT_OF_STATUS = {
    JobStatus.SUCCEEDED: Event.JOB_SUCCEEDED,
    JobStatus.FAILED: Event.JOB_FAILED,
    JobStatus.CANCELLED: Event.JOB_CANCELLED,
}


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its first or next attempt, or in the middle of one."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Refused for good or out of attempts; ``last_error_code`` says why."""


class Webhook(Base):
    """A URL an account wants job events POSTed to."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    secret: Mapped[str] = mapped_column(String(128))
    """The HMAC key. Signing needs it in the clear, so it is stored as it is; the API shows it only
    when it is made (at creation and on rotation)."""
    # TODO(secrets-at-rest): encrypt the secret with a key derived from VIDPIPE_SECRET_KEY, so a copy
    # of the database alone cannot forge events; stdlib has no authenticated cipher to do it with.
    events: Mapped[list[Any]] = mapped_column(JSON)
    """The subscribed events, a subset of :data:`JOB_EVENTS`."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """An inactive webhook gets no new deliveries, and its pending ones are not sent."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook, with the outcome of its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
        Index("ix_webhook_deliveries_job_id", "job_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The job the event is about (no foreign key: the log outlives a deleted job); ``None`` for a ping."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The body sent, fixed when the event happened, so every attempt sends the same bytes."""
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts started. A worker claims attempt ``n`` by moving it from ``n - 1``, so a duplicate
    message for the same attempt finds nothing to claim."""
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    """When the message for the next attempt is due; ``None`` until the first one is sent."""
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(EXCERPT_BYTES))
    """The first bytes of the last answer, as text."""
    attempt_log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """One entry per finished attempt: number, start, duration, status code, error code, and the
    delay before the next one."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


# --- Signatures ---------------------------------------------------------------------------


class SignatureError(InvalidInput):
    """A webhook request whose signature does not prove it came from vidpipe, now."""

    code = "webhook.signature_invalid"


def new_secret() -> str:
    """A fresh signing secret: 256 random bits, with a prefix that makes a leaked one recognisable."""
    return _SECRET_PREFIX + secrets.token_hex(32)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Vidpipe-Signature`` header value for ``body``, dated ``timestamp`` (now by default)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={_digest(secret, moment, body)}"


def verify_signature(
    secret: str, header: str, body: bytes | str, tolerance: float = SIGNATURE_TOLERANCE, *, now: float | None = None
) -> int:
    """Check a ``Vidpipe-Signature`` header against the raw request body, as a receiver does.

    Args:
        secret: the webhook's secret.
        header: the header's value.
        body: the body exactly as received.
        tolerance: seconds the signature's timestamp may be away from ``now``.
        now: the receiver's clock in Unix seconds; the system clock by default.

    Returns:
        The signature's timestamp.

    Raises:
        SignatureError: ``webhook.signature_malformed``, ``webhook.signature_mismatch`` (another
            secret, or a body changed on the way) or ``webhook.signature_expired`` (a replay, or
            a clock far off).
    """
    raw = body.encode() if isinstance(body, str) else body
    timestamp, candidates = _parse_signature(header)
    expected = _digest(secret, timestamp, raw)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError(
            "The signature does not match the body; check the secret and sign the raw body as received.",
            code="webhook.signature_mismatch",
        )
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance:
        raise SignatureError(
            f"The signature was made {abs(moment - timestamp):.0f} s away from now, more than the "
            f"{tolerance:.0f} s allowed; refuse it as a possible replay (or fix the clock).",
            code="webhook.signature_expired",
        )
    return timestamp


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse_signature(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureError(
            f"The {SIGNATURE_HEADER} header must look like t=<unix seconds>,v1=<hex>.",
            code="webhook.signature_malformed",
        )
    return timestamp, candidates


# --- Address safety -----------------------------------------------------------------------

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart, with the addresses it was checked against."""

    parts: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]

    def url_for(self, address: str) -> str:
        """The URL with ``address`` in place of the host name, so the connection goes where was checked."""
        literal = f"[{address}]" if ":" in address else address
        path = self.parts.path or "/"
        return urlunsplit((self.parts.scheme, f"{literal}:{self.port}", path, self.parts.query, ""))

    @property
    def host_header(self) -> str:
        return self.parts.netloc


def check_url_form(url: str) -> SplitResult:
    """Refuse what is not an absolute http(s) URL with a host and no credentials, before any lookup.

    Raises:
        InvalidInput: ``webhook.url_invalid`` or ``webhook.url_not_allowed`` (another scheme).
    """
    if len(url) > MAX_URL_LENGTH or any(ch.isspace() for ch in url):
        raise InvalidInput(
            f"The webhook URL must be at most {MAX_URL_LENGTH} characters without spaces.", code="webhook.url_invalid"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(
            "Only http and https webhook URLs are allowed.", code="webhook.url_not_allowed", details={"url": url}
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or parts.username is not None or parts.fragment:
        raise InvalidInput(
            "The webhook URL needs a host, a valid port if any, and no user name, password or #fragment.",
            code="webhook.url_invalid",
        )
    return parts


async def resolve_target(url: str, allowed_hosts: Iterable[str]) -> Target:
    """Check ``url`` and resolve its host to addresses that may be reached.

    Raises:
        InvalidInput: ``webhook.url_invalid``; ``webhook.url_not_allowed`` when the host has an
            address that is not public and is not in ``allowed_hosts``;
            ``webhook.url_unresolvable`` when the name does not resolve.
    """
    parts = check_url_form(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if host not in {allowed.lower() for allowed in allowed_hosts}:
        refused = [address for address in addresses if not is_public_address(ipaddress.ip_address(address))]
        if refused:
            raise InvalidInput(
                f"The webhook host {host} resolves to {refused[0]}, which is not a public address; webhooks "
                "reach public addresses only, unless an operator lists the host in VIDPIPE_WEBHOOK_ALLOWED_HOSTS.",
                code="webhook.url_not_allowed",
                details={"host": host, "address": refused[0]},
            )
    return Target(parts=parts, host=host, port=port, addresses=addresses)


def is_public_address(address: _Address) -> bool:
    """Whether ``address`` is on the public internet (and so no one's internal service)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not is_public_address(embedded):
            return False
    flags = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
    )
    return address.is_global and not any(flags)


async def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), DNS_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise InvalidInput(
            f"The webhook host {host} does not resolve ({type(exc).__name__}); check the name.",
            code="webhook.url_unresolvable",
            details={"host": host},
        ) from None
    found = dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos)
    return tuple(found)


# --- Registration -------------------------------------------------------------------------


def parse_events(names: Sequence[str] | None) -> list[str]:
    """The subscribed events, in a stable order; all job events when ``names`` is ``None``.

    Raises:
        InvalidInput: ``webhook.unknown_event`` or ``webhook.no_events``.
    """
    if names is None:
        return [event.value for event in JOB_EVENTS]
    unknown = sorted(set(names) - {event.value for event in JOB_EVENTS})
    if unknown:
        raise InvalidInput(
            f"There is no event {unknown[0]!r} to subscribe to.",
            code="webhook.unknown_event",
            details={"events": [event.value for event in JOB_EVENTS]},
        )
    if not names:
        raise InvalidInput("Subscribe to at least one event, or leave events out for all.", code="webhook.no_events")
    return [event.value for event in JOB_EVENTS if event.value in names]


async def create_webhook(
    session: AsyncSession, owner_id: uuid.UUID, url: str, events: list[str], allowed_hosts: Iterable[str]
) -> Webhook:
    """Check the URL (resolving its host), then add the webhook with a new secret; the caller commits.

    Raises:
        InvalidInput: from :func:`resolve_target`.
        Conflict: ``webhook.limit_reached`` past :data:`MAX_WEBHOOKS_PER_OWNER`.
    """
    await resolve_target(url, allowed_hosts)
    count = await session.scalar(select(func.count()).select_from(Webhook).where(Webhook.owner_id == owner_id))
    if (count or 0) >= MAX_WEBHOOKS_PER_OWNER:
        raise Conflict(
            f"An account may have at most {MAX_WEBHOOKS_PER_OWNER} webhooks; delete one first.",
            code="webhook.limit_reached",
        )
    webhook = Webhook(id=uuid.uuid4(), owner_id=owner_id, url=url, secret=new_secret(), events=events, active=True)
    session.add(webhook)
    await session.flush()
    logger.info("Webhook %s to host %s was registered for user %s.", webhook.id, urlsplit(url).hostname, owner_id)
    return webhook


def ping_delivery(webhook: Webhook) -> WebhookDelivery:
    """A ``webhook.ping`` delivery, ready to announce: add it, commit, then :func:`announce`."""
    delivery_id = uuid.uuid4()
    now = utcnow()
    payload = {
        "id": str(delivery_id),
        "event": Event.PING.value,
        "created_at": now.isoformat(),
        "data": {"webhook_id": str(webhook.id)},
    }
    return WebhookDelivery(
        id=delivery_id,
        webhook_id=webhook.id,
        event=Event.PING.value,
        payload=payload,
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        attempt_log=[],
        created_at=now,
        next_attempt_at=now,
    )


# --- Recording and announcing job events --------------------------------------------------


async def record_job_event(session: AsyncSession, job_id: uuid.UUID, status: JobStatus) -> list[uuid.UUID]:
    """Add a pending delivery for every active webhook of the job's owner that wants this event.

    Runs in the transaction that ended the job, so the job's end and its deliveries commit
    together or not at all. Nothing is sent here: see :func:`announce_job_event`.

    Returns:
        The new deliveries' ids.
    """
    event = _EVENT_OF_STATUS.get(status)
    facts = await _job_facts(session, job_id) if event is not None else None
    if event is None or facts is None or facts.owner_id is None:
        return []
    hooks = await session.execute(
        select(Webhook.id, Webhook.events).where(Webhook.owner_id == facts.owner_id, Webhook.active.is_(True))
    )
    wanted = [webhook_id for webhook_id, events in hooks.all() if event.value in (events or [])]
    if not wanted:
        return []
    now = utcnow()
    data = _event_data(job_id, facts)
    rows = [
        {
            "id": delivery_id,
            "webhook_id": webhook_id,
            "event": event.value,
            "job_id": job_id,
            "payload": {"id": str(delivery_id), "event": event.value, "created_at": now.isoformat(), "data": data},
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "attempt_log": [],
            "created_at": now,
        }
        for webhook_id, delivery_id in {webhook_id: uuid.uuid4() for webhook_id in wanted}.items()
    ]
    await session.execute(insert(WebhookDelivery), rows)
    logger.info("Job %s ended %s; %d webhook deliveries were recorded.", job_id, status, len(rows))
    return [row["id"] for row in rows]


async def _job_facts(session: AsyncSession, job_id: uuid.UUID) -> Any:
    """The job's columns an event carries, read in the caller's transaction (so after its update)."""
    query = (
        select(
            Job.video_id,
            Job.status,
            Job.error_code,
            Job.error_message,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
            Video.title,
            Video.owner_id,
            Video.duration,
        )
        .join(Video, Video.id == Job.video_id)
        .where(Job.id == job_id)
    )
    return (await session.execute(query)).one_or_none()


def _event_data(job_id: uuid.UUID, row: Any) -> dict[str, Any]:
    """What a job event says about the job and its video."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    job = {
        "id": str(job_id),
        "video_id": str(row.video_id),
        "status": row.status,
        "error_code": row.error_code,
        "error_message": row.error_message,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
    }
    return {"job": job, "video": {"id": str(row.video_id), "title": row.title, "duration": row.duration}}


def announce(runtime: Runtime, delivery_ids: Iterable[uuid.UUID]) -> None:
    """Send the first attempt's message of each delivery; call it after the commit that made them."""
    for delivery_id in delivery_ids:
        runtime.dispatcher.notify("webhook", str(delivery_id))


async def announce_job_event(runtime: Runtime, job_id: uuid.UUID) -> int:
    """Send the first message of the job's deliveries that have none yet, once each.

    Called by the stage runner after a commit that ended the job or after it saw that a cancel
    made elsewhere (API, CLI) did. Several callers may race; the conditional update hands each
    delivery to one of them. Errors are logged, never raised: a missed announcement must not undo
    the job's own bookkeeping, and :func:`resend_lost_deliveries` sends what was missed.

    Returns:
        How many deliveries this call announced.
    """
    try:
        async with runtime.database.sessions() as session:
            waiting = await session.scalars(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.job_id == job_id,
                    WebhookDelivery.next_attempt_at.is_(None),
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                )
            )
            claimed = [d for d in waiting.all() if await _mark_announced(session, d, attempts=0, due=None)]
            await session.commit()
    except Exception:
        logger.exception("The webhook deliveries of job %s could not be announced; the sweep will send them.", job_id)
        return 0
    announce(runtime, claimed)
    if claimed:
        logger.info("Job %s: %d webhook deliveries announced.", job_id, len(claimed))
    return len(claimed)


async def _mark_announced(
    session: AsyncSession, delivery_id: uuid.UUID, *, attempts: int, due: datetime | None
) -> bool:
    """Stamp the time of the message about to be sent, if the delivery is still where it was seen."""
    seen = WebhookDelivery.next_attempt_at.is_(None) if due is None else WebhookDelivery.next_attempt_at == due
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.attempts == attempts,
            seen,
        )
        .values(next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def resend_lost_deliveries(runtime: Runtime) -> int:
    """Send again the message of every pending delivery that is overdue by ``lost_message_seconds``.

    A delivery is overdue when its message was due that long ago and no attempt moved it since:
    the message was lost (broker restarted), the worker died mid-attempt, or no one announced it.
    A duplicate of a message that was only late costs nothing, because attempts are claimed.

    Returns:
        How many messages were sent again.
    """
    cutoff = utcnow() - timedelta(seconds=runtime.settings.lost_message_seconds)
    async with runtime.database.sessions() as session:
        overdue = await session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.next_attempt_at).where(
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                or_(
                    WebhookDelivery.next_attempt_at < cutoff,
                    and_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.created_at < cutoff),
                ),
            )
        )
        resent = [
            (delivery_id, attempts)
            for delivery_id, attempts, due in overdue.all()
            if await _mark_announced(session, delivery_id, attempts=attempts, due=due)
        ]
        await session.commit()
    for delivery_id, attempts in resent:
        logger.warning(
            "Webhook delivery %s has been overdue for over %.0f s; the message for attempt %d is sent again.",
            delivery_id,
            runtime.settings.lost_message_seconds,
            attempts + 1,
        )
        runtime.dispatcher.notify("webhook", f"{delivery_id}:{attempts + 1}")
    return len(resent)


# --- Delivering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One attempt of one delivery, won by this worker, with what it needs to send it."""

    delivery_id: uuid.UUID
    attempt: int
    webhook_id: uuid.UUID
    url: str
    secret: str
    event: str
    body: bytes
    active: bool


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status_code: int | None = None
    error_code: str | None = None
    error: str | None = None
    excerpt: str | None = None
    retryable: bool = False
    retry_after_ms: int | None = None
    duration_ms: int = 0

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def parse_ref(ref: str) -> tuple[uuid.UUID, int]:
    """A notification ref: ``<delivery id>`` for the first attempt, ``<delivery id>:<n>`` for attempt n."""
    head, _, attempt = ref.partition(":")
    return uuid.UUID(head), int(attempt) if attempt else 1


async def deliver(runtime: Runtime, ref: str) -> None:
    """The ``webhook`` notification handler: make one attempt of one delivery, if it is still due."""
    try:
        delivery_id, attempt = parse_ref(ref)
    except ValueError:
        logger.error("A webhook notification with the malformed ref %r was dropped.", ref)
        return
    claim = await _claim(runtime, delivery_id, attempt)
    if claim is None:
        return
    started = utcnow()
    if claim.active:
        outcome = await attempt_delivery(claim, runtime.settings.webhook_allowed_hosts)
    else:
        message = "The webhook was deactivated before this delivery was sent."
        outcome = Outcome(error_code="webhook.inactive", error=message)
    await _record(runtime, claim, started, outcome)


async def _claim(runtime: Runtime, delivery_id: uuid.UUID, attempt: int) -> Claim | None:
    """Move the delivery from ``attempt - 1`` to ``attempt``; ``None`` when another message did, or it ended."""
    async with runtime.database.sessions() as session:
        row = (
            await session.execute(
                select(
                    WebhookDelivery.status,
                    WebhookDelivery.attempts,
                    WebhookDelivery.event,
                    WebhookDelivery.payload,
                    Webhook.id,
                    Webhook.url,
                    Webhook.secret,
                    Webhook.active,
                )
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.id == delivery_id)
            )
        ).one_or_none()
        if row is None:
            logger.info("Webhook delivery %s no longer exists (its webhook was deleted); nothing to send.", delivery_id)
            return None
        if row.status != DeliveryStatus.PENDING or row.attempts != attempt - 1:
            logger.info(
                "Webhook delivery %s is %s after %d attempts, so the message for attempt %d is a duplicate; ignored.",
                delivery_id,
                row.status,
                row.attempts,
                attempt,
            )
            return None
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.attempts == attempt - 1,
            )
            .values(attempts=attempt, last_attempt_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        logger.info("Webhook delivery %s attempt %d was claimed by another worker first.", delivery_id, attempt)
        return None
    body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Claim(delivery_id, attempt, row.id, row.url, row.secret, row.event, body, bool(row.active))


async def attempt_delivery(claim: Claim, allowed_hosts: Sequence[str]) -> Outcome:
    """Check the URL again, then POST the signed event; every failure becomes an :class:`Outcome`."""
    clock = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - clock) * 1000)

    try:
        target = await resolve_target(claim.url, allowed_hosts)
    except InvalidInput as exc:
        # A name that does not resolve may again; an address that is not allowed will not become allowed.
        retryable = exc.code == "webhook.url_unresolvable"
        return Outcome(error_code=exc.code, error=exc.message, retryable=retryable, duration_ms=took())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        EVENT_HEADER: claim.event,
        DELIVERY_HEADER: str(claim.delivery_id),
        SIGNATURE_HEADER: sign(claim.secret, claim.body),
    }
    try:
        async with asyncio.timeout(ATTEMPT_DEADLINE):
            status, excerpt, retry_after_ms = await _post(target, claim.body, headers)
    except (httpx.TimeoutException, TimeoutError):
        error = f"The receiver at {target.host} did not answer in time."
        return Outcome(error_code="webhook.timeout", error=error, retryable=True, duration_ms=took())
    except httpx.TransportError as exc:
        error = f"The connection to {target.host} failed: {exc or type(exc).__name__}"[:500]
        return Outcome(error_code="webhook.connection_failed", error=error, retryable=True, duration_ms=took())
    return _judge(status, excerpt, retry_after_ms, took())


def _judge(status: int, excerpt: str, retry_after_ms: int | None, duration_ms: int) -> Outcome:
    """Sort an answer: success, worth another attempt, or a refusal to respect."""
    if 200 <= status < 300:
        return Outcome(status_code=status, excerpt=excerpt, duration_ms=duration_ms)
    if 300 <= status < 400:
        error = f"The receiver answered {status}, a redirect, which is not followed; register the final URL."
        return Outcome(status, "webhook.redirect_refused", error, excerpt, duration_ms=duration_ms)
    if status in _RETRY_STATUSES or status >= 500:
        error = f"The receiver answered {status}; the delivery is tried again later."
        return Outcome(status, "webhook.http_status", error, excerpt, True, retry_after_ms, duration_ms)
    error = f"The receiver answered {status}, a refusal, so the delivery is not tried again."
    return Outcome(status, "webhook.http_status", error, excerpt, duration_ms=duration_ms)


async def _post(target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, str, int | None]:
    """POST to the checked addresses in turn until one takes the connection."""
    # No proxies from the environment: a proxy would resolve the name again, past the address check.
    async with httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False, verify=_tls_context()
    ) as client:
        refused: httpx.ConnectError | None = None
        for address in target.addresses[:MAX_ADDRESSES]:
            try:
                return await _post_to(client, target, address, body, headers)
            except httpx.ConnectError as exc:
                refused = exc
        raise refused or httpx.ConnectError("The host has no address to connect to.")


async def _post_to(
    client: httpx.AsyncClient, target: Target, address: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, int | None]:
    # The request goes to the address that was checked; the name stays in Host and in TLS (SNI and
    # the certificate check), so a DNS answer that changed since cannot send it elsewhere.
    extensions = {"sni_hostname": target.host} if target.parts.scheme == "https" and target.host != address else {}
    async with client.stream(
        "POST",
        target.url_for(address),
        content=body,
        headers={**headers, "Host": target.host_header},
        extensions=extensions,
    ) as response:
        excerpt = bytearray()
        async for chunk in response.aiter_bytes():
            excerpt += chunk
            if len(excerpt) >= EXCERPT_BYTES:
                break
        text = bytes(excerpt[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
        return response.status_code, text, _retry_after_ms(response.headers.get("retry-after"))


def _retry_after_ms(value: str | None) -> int | None:
    """A ``Retry-After`` in seconds; the HTTP-date form is rare from webhook receivers and ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip()) * 1000


_tls_cache: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _tls_context() -> ssl.SSLContext:
    """certifi's CAs, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set; built once per such setting."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if key not in _tls_cache:
        _tls_cache[key] = httpx.create_ssl_context(trust_env=True)
    return _tls_cache[key]


def retry_delay_ms(attempt: int, first_ms: int, retry_after_ms: int | None = None) -> int:
    """The wait after failed attempt ``attempt``: ``first_ms``, then six times longer each time, at most
    six hours; a receiver's longer ``Retry-After`` is respected within the same cap."""
    delay = min(BACKOFF_CAP_MS, first_ms * BACKOFF_GROWTH ** max(0, attempt - 1))
    if retry_after_ms:
        delay = min(BACKOFF_CAP_MS, max(delay, retry_after_ms))
    return int(delay)


async def _record(runtime: Runtime, claim: Claim, started: datetime, outcome: Outcome) -> None:
    """Write the attempt's outcome on the delivery, then send the next attempt's message if one is due."""
    settings = runtime.settings
    retry = not outcome.succeeded and outcome.retryable and claim.attempt < settings.webhook_max_attempts
    delay = retry_delay_ms(claim.attempt, settings.webhook_retry_ms, outcome.retry_after_ms) if retry else None
    status = DeliveryStatus.FAILED
    if outcome.succeeded or retry:
        status = DeliveryStatus.SUCCEEDED if outcome.succeeded else DeliveryStatus.PENDING
    error = outcome.error
    if outcome.retryable and not retry and error:
        error = f"{error} Gave up after {claim.attempt} attempts."
    entry = {
        "attempt": claim.attempt,
        "started_at": started.isoformat(),
        "duration_ms": outcome.duration_ms,
        "status_code": outcome.status_code,
        "error_code": outcome.error_code,
        "retry_in_ms": delay,
    }
    now = utcnow()
    async with runtime.database.sessions() as session:
        log = await session.scalar(select(WebhookDelivery.attempt_log).where(WebhookDelivery.id == claim.delivery_id))
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.delivery_id,
                WebhookDelivery.attempts == claim.attempt,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
            )
            .values(
                status=status.value,
                last_status_code=outcome.status_code,
                last_error_code=outcome.error_code,
                last_error=error[:500] if error else None,
                last_duration_ms=outcome.duration_ms,
                response_excerpt=outcome.excerpt,
                attempt_log=[*(log or []), entry],
                next_attempt_at=now + timedelta(milliseconds=delay) if delay is not None else None,
                finished_at=None if retry else now,
            )
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        logger.warning(
            "Webhook delivery %s changed during attempt %d; its outcome was not recorded.",
            claim.delivery_id,
            claim.attempt,
        )
        return
    if delay is not None:
        runtime.dispatcher.notify("webhook", f"{claim.delivery_id}:{claim.attempt + 1}", delay_ms=delay)
    _log_outcome(claim, outcome, status, delay)


def _log_outcome(claim: Claim, outcome: Outcome, status: DeliveryStatus, delay: int | None) -> None:
    answer = outcome.status_code if outcome.status_code is not None else outcome.error_code
    if status is DeliveryStatus.SUCCEEDED:
        logger.info(
            "Webhook delivery %s (%s to webhook %s) succeeded on attempt %d with %s in %d ms.",
            claim.delivery_id,
            claim.event,
            claim.webhook_id,
            claim.attempt,
            answer,
            outcome.duration_ms,
        )
    elif delay is not None:
        logger.info(
            "Webhook delivery %s attempt %d got %s; attempt %d follows in %d ms.",
            claim.delivery_id,
            claim.attempt,
            answer,
            claim.attempt + 1,
            delay,
        )
    else:
        logger.warning(
            "Webhook delivery %s to webhook %s failed for good on attempt %d: %s.",
            claim.delivery_id,
            claim.webhook_id,
            claim.attempt,
            answer,
        )


# --- Reading and managing -----------------------------------------------------------------


async def rotate_secret(session: AsyncSession, webhook: Webhook) -> str:
    """Give the webhook a new secret; deliveries signed from now on use it. The caller commits."""
    webhook.secret = new_secret()
    await session.flush()
    logger.info("The secret of webhook %s was replaced.", webhook.id)
    return webhook.secret


async def get_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook:
    """The webhook, or :class:`NotFound` ``webhook.not_found``."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"There is no webhook {webhook_id}.", code="webhook.not_found")
    return webhook


async def delivery_page(
    session: AsyncSession, webhook_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[WebhookDelivery]:
    """Up to ``limit`` deliveries of a webhook, newest first, older than ``after`` (a delivery's
    ``(created_at, id)``) when given: keyset pages that stay put while new deliveries arrive."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if after is not None:
        created_at, delivery_id = after
        query = query.where(
            or_(
                WebhookDelivery.created_at < created_at,
                and_(WebhookDelivery.created_at == created_at, WebhookDelivery.id < delivery_id),
            )
        )
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    return list(await session.scalars(query))
