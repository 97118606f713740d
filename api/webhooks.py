"""The webhook routes under ``/api/v1/webhooks``: register URLs for job events and read their delivery log.

A webhook's secret is shown once, in the answer that creates it (and in the one that rotates it),
never again: it is the key receivers check vidpipe's signature with, and keeping it out of every
later answer means a stolen access token or a glance at a listing cannot be used to forge events.
An owner who lost it rotates it. How receivers verify a request is told in :mod:`pipeline.webhooks`.

Visibility: a member sees and changes only their own webhooks; an admin may address any by id.
A webhook the caller may not see answers exactly like a missing one (404 ``webhook.not_found``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import Viewer, viewer_of
from pipeline import webhooks
from pipeline.errors import Conflict, InvalidInput, NotFound
from pipeline.runtime import Runtime
from pipeline.webhooks import Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]

MAX_PAGE = 100
_Url = Annotated[str, msgspec.Meta(max_length=webhooks.MAX_URL_LENGTH)]
_Events = Annotated[list[str], msgspec.Meta(max_length=10)]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: _Url
    """An http or https URL on a public address."""
    events: _Events | None = None
    """Any of ``job.succeeded``, ``job.failed``, ``job.cancelled``; all of them when left out."""


class WebhookChange(msgspec.Struct, forbid_unknown_fields=True):
    events: _Events | None = None
    active: bool | None = None
    """``false`` stops new deliveries (and pending ones) without losing the webhook or its log."""


class WebhookView(msgspec.Struct):
    id: uuid.UUID
    owner_id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhookWithSecret(WebhookView):
    secret: str
    """The HMAC-SHA256 key of the ``Vidpipe-Signature`` header; shown only in this answer."""


class AttemptView(msgspec.Struct):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error_code: str | None
    retry_in_ms: int | None
    """The wait before the next attempt; ``null`` when this one ended the delivery."""


class DeliveryView(msgspec.Struct):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    job_id: uuid.UUID | None
    status: str
    """``pending``, ``succeeded`` or ``failed``."""
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    finished_at: datetime | None
    last_status_code: int | None
    last_error_code: str | None
    last_error: str | None
    response_excerpt: str | None
    """The first bytes of the receiver's last answer."""
    attempt_log: list[AttemptView]
    payload: dict[str, Any]
    """The body that was sent."""


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryView]
    next_cursor: str | None
    """Pass as ``cursor`` for the next, older page; ``null`` on the last one."""


def webhook_view(webhook: Webhook) -> WebhookView:
    return WebhookView(
        id=webhook.id,
        owner_id=webhook.owner_id,
        url=webhook.url,
        events=list(webhook.events),
        active=webhook.active,
        created_at=webhook.created_at,
    )


def with_secret(webhook: Webhook) -> WebhookWithSecret:
    return WebhookWithSecret(**msgspec.structs.asdict(webhook_view(webhook)), secret=webhook.secret)


def delivery_view(delivery: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        id=delivery.id,
        webhook_id=delivery.webhook_id,
        event=delivery.event,
        job_id=delivery.job_id,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=delivery.next_attempt_at,
        finished_at=delivery.finished_at,
        last_status_code=delivery.last_status_code,
        last_error_code=delivery.last_error_code,
        last_error=delivery.last_error,
        response_excerpt=delivery.response_excerpt,
        attempt_log=msgspec.convert(delivery.attempt_log or [], list[AttemptView]),
        payload=delivery.payload,
    )


def encode_cursor(delivery: WebhookDelivery) -> str:
    raw = f"{delivery.created_at.isoformat()}|{delivery.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The ``(created_at, id)`` a cursor points after; ``webhook.cursor_invalid`` when it was not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, delivery_id = raw.partition("|")
        return datetime.fromisoformat(moment), uuid.UUID(delivery_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(
            "The cursor is not one this API gave out; start again without it.", code="webhook.cursor_invalid"
        ) from None


async def visible_webhook(db: AsyncSession, viewer: Viewer, webhook_id: uuid.UUID) -> Webhook:
    """The webhook, or ``webhook.not_found`` when it is missing or someone else's."""
    webhook = await db.get(Webhook, webhook_id)
    if webhook is None or not viewer.may_see(webhook.owner_id):
        raise NotFound(f"There is no webhook {webhook_id}.", code="webhook.not_found")
    return webhook


class WebhooksController(Controller):
    """Registering, reading, testing and removing webhooks, and reading their deliveries."""

    path = "/webhooks"
    tags = ("webhooks",)

    @post("/", status_code=201)
    async def create(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], data: JSONBody[WebhookCreate]
    ) -> WebhookWithSecret:
        """Register a URL for job events; the answer carries the signing secret, shown this once.

        The URL must be http or https and its host must resolve to public addresses only
        (422 ``webhook.url_not_allowed`` otherwise, unless an operator allowed the host).
        Each event is a JSON POST with ``Vidpipe-Event``, ``Vidpipe-Delivery`` (the same on every
        retry; deduplicate on it) and ``Vidpipe-Signature: t=<unix seconds>,v1=<hex>``, the hex
        being HMAC-SHA256 keyed with the secret over ``<t>.<raw body>``. Refuse a ``t`` more than
        five minutes old. A 2xx answer ends a delivery; 408, 429 and 5xx are retried with growing
        delays; other answers end it as failed.
        """
        viewer = viewer_of(request)
        runtime: Runtime = request.app.state.runtime
        events = webhooks.parse_events(data.events)
        allowed = runtime.settings.webhook_allowed_hosts
        webhook = await webhooks.create_webhook(db, viewer.user_id, data.url, events, allowed)
        await db.commit()
        return with_secret(webhook)

    @get("/")
    async def list_webhooks(self, request: AnyRequest, db: NamedDependency[AsyncSession]) -> list[WebhookView]:
        """The caller's own webhooks, oldest first, without their secrets."""
        viewer = viewer_of(request)
        found = await db.scalars(
            select(Webhook).where(Webhook.owner_id == viewer.user_id).order_by(Webhook.created_at, Webhook.id)
        )
        return [webhook_view(webhook) for webhook in found]

    @get("/{webhook_id:uuid}")
    async def read(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> WebhookView:
        """One webhook, without its secret."""
        return webhook_view(await visible_webhook(db, viewer_of(request), webhook_id))

    @patch("/{webhook_id:uuid}")
    async def change(
        self,
        request: AnyRequest,
        db: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
        data: JSONBody[WebhookChange],
    ) -> WebhookView:
        """Change the subscribed events, or switch the webhook off and on with ``active``."""
        webhook = await visible_webhook(db, viewer_of(request), webhook_id)
        if data.events is not None:
            webhook.events = webhooks.parse_events(data.events)
        if data.active is not None:
            webhook.active = data.active
        await db.commit()
        logger.info("Webhook %s now has events %s and active=%s.", webhook.id, webhook.events, webhook.active)
        return webhook_view(webhook)

    @delete("/{webhook_id:uuid}", status_code=204)
    async def remove(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> None:
        """Delete the webhook and its delivery log; deliveries still waiting are not sent."""
        webhook = await visible_webhook(db, viewer_of(request), webhook_id)
        await db.delete(webhook)
        await db.commit()
        logger.info("Webhook %s was deleted.", webhook_id)

    @post("/{webhook_id:uuid}/rotate-secret", status_code=200)
    async def rotate(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> WebhookWithSecret:
        """Replace the signing secret; the new one is in this answer only and signs every later attempt."""
        webhook = await visible_webhook(db, viewer_of(request), webhook_id)
        await webhooks.rotate_secret(db, webhook)
        await db.commit()
        return with_secret(webhook)

    @post("/{webhook_id:uuid}/test", status_code=202)
    async def test(
        self, request: AnyRequest, db: NamedDependency[AsyncSession], webhook_id: FromPath[uuid.UUID]
    ) -> DeliveryView:
        """Send a ``webhook.ping`` event now; follow it in the delivery log."""
        webhook = await visible_webhook(db, viewer_of(request), webhook_id)
        if not webhook.active:
            raise Conflict("The webhook is switched off; set active to true first.", code="webhook.inactive")
        delivery = webhooks.ping_delivery(webhook)
        db.add(delivery)
        await db.commit()
        runtime: Runtime = request.app.state.runtime
        webhooks.announce(runtime, [delivery.id])
        return delivery_view(delivery)

    @get("/{webhook_id:uuid}/deliveries")
    async def deliveries(
        self,
        request: AnyRequest,
        db: NamedDependency[AsyncSession],
        webhook_id: FromPath[uuid.UUID],
        limit: FromQuery[int] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> DeliveryPage:
        """The webhook's deliveries, newest first, with every attempt; ``limit`` is 1 to 100."""
        await visible_webhook(db, viewer_of(request), webhook_id)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", code="webhook.limit_invalid")
        after = decode_cursor(cursor) if cursor else None
        rows = await webhooks.delivery_page(db, webhook_id, limit + 1, after)
        page, more = rows[:limit], len(rows) > limit
        return DeliveryPage(
            items=[delivery_view(row) for row in page], next_cursor=encode_cursor(page[-1]) if more else None
        )
