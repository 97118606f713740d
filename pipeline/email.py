"""Account emails: signed links, the outbox table, and the ``email`` notification handler.

The API never talks to a mail server. It adds a row to ``email_outbox`` naming the account
and the purpose (confirm the address, reset the password) and sends ``("email", row id)``
through the broker. The handler composes the message when it sends it: the signed link is
made then, so no usable link rests in the database, and the email speaks the account's
language. It goes out through ``VIDPIPE_SMTP_URL`` or, without one (the embedded default),
into ``$VIDPIPE_DATA_DIR/outbox/`` as an ``.eml`` file. Links start with ``VIDPIPE_PUBLIC_URL``;
the sender is ``VIDPIPE_MAIL_FROM``.

Links carry itsdangerous timed tokens signed with the secret key, with one salt per purpose
so a token made for one purpose is refused by the other. A token names the account and an
HMAC of what it must still match: the email address for a confirmation, the address and the
current password hash for a reset, so a reset link stops working once it has been used.

A mail server that cannot be reached is a passing outage (retried); one that refuses the
recipient for good is recorded on the row, which is then never tried again.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import os
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner
from sqlalchemy import ForeignKey, Index, Integer, String, Uuid, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pipeline import i18n
from pipeline.db.models import Base, User, utcnow
from pipeline.errors import PermanentError, TransientError, VidpipeError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
PURPOSES = (VERIFY_EMAIL, RESET_PASSWORD)

VERIFY_TTL = timedelta(hours=48)
RESET_TTL = timedelta(hours=1)
_TTL = {VERIFY_EMAIL: VERIFY_TTL, RESET_PASSWORD: RESET_TTL}
_SALT = {VERIFY_EMAIL: "vidpipe.email.verify", RESET_PASSWORD: "vidpipe.email.reset-password"}
# The API routes the links open; the core cannot import the API's prefix, so it is spelled here.
# TODO(frontend): the reset link opens an API route that only accepts POST, so a person who clicks
# it sees an error; a web front end with a reset page (and a setting for its base URL) would own
# these links.
_LINK_PATH = {VERIFY_EMAIL: "/api/v1/auth/verify-email", RESET_PASSWORD: "/api/v1/auth/reset-password"}

RESEND_COOLDOWN = timedelta(seconds=60)
RESEND_WINDOW = timedelta(hours=1)
"""How old an email whose message was lost may be and still be sent: a person who asked for a
link an hour ago has asked again or given up."""
"""At most one email per account and purpose in this window, whoever asks and from wherever."""

_SMTP_TIMEOUT = 30.0


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    """Refused for good or out of attempts; ``error_code`` says why."""
    SKIPPED = "skipped"
    """No longer needed when its turn came (the address was confirmed meanwhile)."""


class OutboxEmail(Base):
    """One account email to send; the row records its outcome."""

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_user_id_purpose_created_at", "user_id", "purpose", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    """``verify_email`` or ``reset_password``."""
    status: Mapped[str] = mapped_column(String(16), default=EmailStatus.PENDING)
    language: Mapped[str | None] = mapped_column(String(8))
    """The language it was written in, set when it is composed."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    announced_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    """When its message was last handed to the broker; the reconciler sends it again when that
    message seems lost (see :func:`resend_lost_emails`)."""


class Notifier(Protocol):
    """The part of the dispatcher this module needs."""

    def notify(self, kind: str, ref: str, *, delay_ms: int = 0) -> None: ...


# --- Signed links -------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkClaims:
    """What a link token says once its signature and age are checked."""

    user_id: uuid.UUID
    binding: str


def issue_token(secret: str, purpose: str, user: User, *, issued_at: datetime | None = None) -> str:
    """A link token for ``purpose`` and ``user``; ``issued_at`` dates it (now by default)."""
    payload = {"u": str(user.id), "b": _binding(secret, purpose, user)}
    return _serializer(secret, purpose, issued_at).dumps(payload)


def read_token(secret: str, purpose: str, token: str) -> LinkClaims:
    """Check a link token's signature, purpose and age.

    Raises:
        PermanentError: ``auth.token_expired`` past the purpose's lifetime, ``auth.token_invalid``
            for anything else wrong with it (altered, another purpose, not a token at all).
    """
    try:
        payload = _serializer(secret, purpose).loads(token, max_age=int(_TTL[purpose].total_seconds()))
    except SignatureExpired as exc:
        raise PermanentError(
            "The link has expired; ask for a new email and use its link.", code="auth.token_expired"
        ) from exc
    except BadSignature as exc:
        raise _token_invalid() from exc
    try:
        return LinkClaims(user_id=uuid.UUID(payload["u"]), binding=str(payload["b"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _token_invalid() from exc


def still_binds(secret: str, purpose: str, claims: LinkClaims, user: User) -> bool:
    """Whether the account still is what the token was made for (same address, same password)."""
    return claims.user_id == user.id and hmac.compare_digest(claims.binding, _binding(secret, purpose, user))


def _binding(secret: str, purpose: str, user: User) -> str:
    # An HMAC rather than the values: the token travels in links and is readable by anyone
    # holding it, and neither the address nor a password hash belongs there.
    bound = user.email if purpose == VERIFY_EMAIL else f"{user.email}\0{user.password_hash}"
    return hmac.new(secret.encode(), f"{purpose}\0{bound}".encode(), hashlib.sha256).hexdigest()[:32]


def _serializer(secret: str, purpose: str, issued_at: datetime | None = None) -> URLSafeTimedSerializer:
    if issued_at is None:
        return URLSafeTimedSerializer(secret, salt=_SALT[purpose])
    return URLSafeTimedSerializer(
        secret, salt=_SALT[purpose], signer=_DatedSigner, signer_kwargs={"timestamp": int(issued_at.timestamp())}
    )


class _DatedSigner(TimestampSigner):
    """A timestamp signer that dates its signatures at a given moment instead of now."""

    def __init__(self, *args: Any, timestamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timestamp = timestamp

    def get_timestamp(self) -> int:
        return self._timestamp


def _token_invalid() -> PermanentError:
    return PermanentError("The link is not valid; ask for a new email and use its link.", code="auth.token_invalid")


# --- The outbox ---------------------------------------------------------------------------


async def queue_email(session: AsyncSession, notifier: Notifier, user_id: uuid.UUID, purpose: str) -> bool:
    """Add an email for ``user_id`` to the outbox and send its notification message.

    Returns:
        Whether one was queued: ``False`` when an email of the same purpose was queued for the
        account less than :data:`RESEND_COOLDOWN` ago, so repeated requests cannot flood a mailbox.
    """
    since = datetime.now(UTC) - RESEND_COOLDOWN
    recent = await session.scalar(
        select(OutboxEmail.id)
        .where(OutboxEmail.user_id == user_id, OutboxEmail.purpose == purpose, OutboxEmail.created_at > since)
        .limit(1)
    )
    if recent is not None:
        logger.info("Did not queue a %s email for user %s: one was queued less than a minute ago.", purpose, user_id)
        return False

    row = OutboxEmail(user_id=user_id, purpose=purpose)
    session.add(row)
    await session.commit()
    try:
        notifier.notify("email", str(row.id))
    except Exception as exc:
        # The account change is committed and the row is the truth; a broker outage must not
        # turn it into an error for the client. The reconciler sends the message again.
        logger.warning("Email %s for user %s stays pending: the broker refused it (%s).", row.id, user_id, exc)
        return True
    logger.info("Queued %s email %s for user %s.", purpose, row.id, user_id)
    return True


async def resend_lost_emails(runtime: Runtime) -> int:
    """Send again the message of every email never attempted although announced long ago.

    An email is lost when it is pending with no attempt, and its message was handed to the
    broker more than ``lost_message_seconds`` ago (Redis restarted empty, or the broker refused
    it). One that failed and waits for its retry is left to the broker. Emails older than
    :data:`RESEND_WINDOW` are left alone: their links would have expired. Each message sent is
    claimed by stamping ``announced_at``, so two schedulers do not both send it.

    Returns:
        How many messages were sent again.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=runtime.settings.lost_message_seconds)
    async with runtime.database.sessions() as session:
        lost = await session.scalars(
            select(OutboxEmail.id).where(
                OutboxEmail.status == EmailStatus.PENDING,
                OutboxEmail.attempts == 0,
                OutboxEmail.created_at > now - RESEND_WINDOW,
                or_(OutboxEmail.announced_at.is_(None), OutboxEmail.announced_at < cutoff),
            )
        )
        claimed = []
        for email_id in list(lost):
            result = await session.execute(
                update(OutboxEmail)
                .where(
                    OutboxEmail.id == email_id,
                    OutboxEmail.status == EmailStatus.PENDING,
                    OutboxEmail.attempts == 0,
                    or_(OutboxEmail.announced_at.is_(None), OutboxEmail.announced_at < cutoff),
                )
                .values(announced_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                claimed.append(email_id)
        await session.commit()
    for email_id in claimed:
        logger.warning("Email %s was never attempted; its message seems lost and is sent again.", email_id)
        runtime.dispatcher.notify("email", str(email_id))
    return len(claimed)


async def deliver(runtime: Runtime, ref: str) -> None:
    """The ``email`` notification handler: compose outbox row ``ref`` and send it once.

    Delivery is at least once: a row already sent, failed or skipped is left alone, but a
    message delivered twice while the first send is still in flight can send the email twice.

    Raises:
        TransientError: when the mail server cannot be reached and attempts remain; the
            broker retries the message with backoff.
    """
    try:
        email_id = uuid.UUID(ref)
    except ValueError:
        logger.error("An email notification named %r, which is not an outbox id; dropped.", ref)
        return
    async with runtime.database.sessions() as session:
        prepared = await _prepare(session, runtime.settings, email_id)
    if prepared is None:
        return

    row_id, user_id, message, link = prepared
    try:
        await _send(runtime.settings, message, row_id, user_id, link)
    except VidpipeError as exc:
        await _record_failure(runtime, row_id, user_id, exc)
        return
    async with runtime.database.sessions() as session:
        await _finish(session, row_id, EmailStatus.SENT, sent_at=datetime.now(UTC))


async def _prepare(
    session: AsyncSession, settings: Settings, email_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, EmailMessage, str] | None:
    """Read the row and its account and compose the message; ``None`` when there is nothing to send."""
    row = await session.get(OutboxEmail, email_id)
    if row is None or row.status != EmailStatus.PENDING:
        # Delivery is at least once: a message for a row already handled or gone is a no-op.
        logger.debug("Email %s has nothing left to send.", email_id)
        return None
    user = await session.get(User, row.user_id)
    if user is None:
        return None
    if row.purpose == VERIFY_EMAIL and user.is_verified:
        logger.info("Skipped email %s: user %s confirmed the address meanwhile.", row.id, user.id)
        await _finish(session, row.id, EmailStatus.SKIPPED)
        return None

    row.attempts += 1
    row.language = i18n.supported(user.language) or i18n.ENGLISH
    await session.commit()
    try:
        message, link = compose(settings, row, user)
    except PermanentError as exc:
        logger.info("Email %s for user %s cannot be sent: %s.", row.id, user.id, exc.code)
        await _finish(session, row.id, EmailStatus.FAILED, error=exc)
        return None
    return row.id, user.id, message, link


def compose(settings: Settings, row: OutboxEmail, user: User) -> tuple[EmailMessage, str]:
    """The message for ``row`` in the account's language, and the link it carries.

    Raises:
        PermanentError: ``email.bad_address`` when the account's address cannot be put in a header.
    """
    language = row.language or i18n.ENGLISH
    token = issue_token(settings.secret_key, row.purpose, user)
    link = f"{settings.public_url}{_LINK_PATH[row.purpose]}?{urlencode({'token': token})}"
    ttl = _TTL[row.purpose]
    text = i18n.email_text(
        row.purpose,
        language,
        name=user.display_name or user.username,
        link=link,
        hours=int(ttl.total_seconds() // 3600),
        minutes=int(ttl.total_seconds() // 60),
    )

    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = _recipient(user)
    message["Subject"] = text.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=_sender_domain(settings.mail_from))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text.body)
    # After set_content, which replaces every Content-* header.
    message["Content-Language"] = language
    return message, link


def _recipient(user: User) -> Address:
    try:
        return Address(display_name=user.display_name or user.username, addr_spec=user.email)
    except (ValueError, MessageError) as exc:
        # TODO(smtputf8): an address with a non-ASCII local part, which registration accepts, ends
        # here; sending to it needs SMTPUTF8 from this header to the mail server.
        raise _bad_address() from exc


def _sender_domain(mail_from: str) -> str:
    # make_msgid would otherwise ask the resolver for this host's name on every message.
    return mail_from.rpartition("@")[2].strip(" >") or "localhost"


async def _finish(
    session: AsyncSession,
    email_id: uuid.UUID,
    status: EmailStatus,
    *,
    sent_at: datetime | None = None,
    error: VidpipeError | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "sent_at": sent_at}
    if error is not None:
        values.update(error_code=error.code, error_message=error.message[:500])
    await session.execute(
        update(OutboxEmail).where(OutboxEmail.id == email_id, OutboxEmail.status == EmailStatus.PENDING).values(values)
    )
    await session.commit()


async def _record_failure(runtime: Runtime, email_id: uuid.UUID, user_id: uuid.UUID, exc: VidpipeError) -> None:
    """Record a failed attempt; re-raise a transient one while attempts remain, so it is retried."""
    async with runtime.database.sessions() as session:
        row = await session.get(OutboxEmail, email_id)
        attempts = row.attempts if row is not None else 0
        if isinstance(exc, TransientError) and attempts < runtime.settings.max_attempts:
            await session.execute(
                update(OutboxEmail)
                .where(OutboxEmail.id == email_id)
                .values(error_code=exc.code, error_message=exc.message[:500])
            )
            await session.commit()
            logger.info("Email %s for user %s will be retried after attempt %d: %s", email_id, user_id, attempts, exc)
            raise exc
        await _finish(session, email_id, EmailStatus.FAILED, error=exc)
    logger.warning("Email %s for user %s failed for good after %d attempts: %s", email_id, user_id, attempts, exc.code)


# --- Sending ------------------------------------------------------------------------------


async def _send(settings: Settings, message: EmailMessage, email_id: uuid.UUID, user_id: uuid.UUID, link: str) -> None:
    if settings.smtp_url:
        await asyncio.to_thread(send_smtp, settings.smtp_url, message)
        logger.info("Sent email %s (%s) for user %s through SMTP.", email_id, message["Subject"], user_id)
        return

    path = await asyncio.to_thread(write_eml, settings.data_dir / "outbox", f"{email_id}.eml", message)
    if settings.is_embedded and settings.environment == "development":
        # Links carry tokens and never belong in a log, except here: on a developer's own
        # machine with no mail server, the log is where a person finds the link to click.
        logger.info(
            "Wrote email %s (%s) for user %s to %s; its link: %s", email_id, message["Subject"], user_id, path, link
        )
    else:
        logger.info("Wrote email %s (%s) for user %s to %s.", email_id, message["Subject"], user_id, path)


def write_eml(folder: Path, name: str, message: EmailMessage) -> Path:
    """Write ``message`` as ``folder/name``; readers never see a half-written file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    partial = folder / f".{name}.partial"
    partial.write_bytes(message.as_bytes())
    os.replace(partial, path)
    return path


def send_smtp(url: str, message: EmailMessage) -> None:
    """Send ``message`` through the server at ``url`` (``smtp://`` with STARTTLS, or ``smtps://``).

    Raises:
        TransientError: ``email.smtp_unavailable`` when the server cannot be reached or answers
            with a temporary (4xx) refusal.
        PermanentError: ``email.recipient_refused``, ``email.rejected`` or ``email.bad_address``
            when the server refuses the message for good.
    """
    parts = urlsplit(url)
    try:
        with _connect(parts.scheme, parts.hostname or "localhost", parts.port) as client:
            _secure(client, parts.scheme, has_login=bool(parts.username))
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(message)
    except VidpipeError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise _classify(exc) from exc


def _connect(scheme: str, host: str, port: int | None) -> smtplib.SMTP:
    if scheme == "smtps":
        return smtplib.SMTP_SSL(host, port or 465, timeout=_SMTP_TIMEOUT, context=ssl.create_default_context())
    return smtplib.SMTP(host, port or 587, timeout=_SMTP_TIMEOUT)


def _secure(client: smtplib.SMTP, scheme: str, *, has_login: bool) -> None:
    """Upgrade a plain connection with STARTTLS when the server offers it."""
    if scheme == "smtps":
        return
    client.ehlo()
    if client.has_extn("starttls"):
        client.starttls(context=ssl.create_default_context())
        client.ehlo()
    elif has_login:
        # A password is never sent over a connection anyone on the way could read.
        raise PermanentError(
            "The mail server does not offer STARTTLS, so vidpipe will not send it the SMTP password; "
            "enable TLS on the server or use an smtps:// URL.",
            code="email.tls_unavailable",
        )


def _classify(exc: smtplib.SMTPException | OSError) -> VidpipeError:
    """Whether a failed send is worth retrying: 4xx answers and lost connections are; 5xx are not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(code >= 500 for code in codes):
            return PermanentError(
                "The mail server refused the recipient address for good.", code="email.recipient_refused"
            )
        return _unavailable(f"the recipient was refused for now ({', '.join(map(str, codes))})")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _bad_address()
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentError(
            "The mail server refused the SMTP login; check the user and password in VIDPIPE_SMTP_URL.",
            code="email.smtp_login_refused",
        )
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500:
        return PermanentError(f"The mail server refused the message ({exc.smtp_code}).", code="email.rejected")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _unavailable(f"it answered {exc.smtp_code}")
    return _unavailable(type(exc).__name__)


def _unavailable(why: str) -> TransientError:
    return TransientError(f"The mail server could not take the message now: {why}.", code="email.smtp_unavailable")


def _bad_address() -> PermanentError:
    return PermanentError(
        "The account's email address cannot be written in an email; the account needs another address.",
        code="email.bad_address",
    )
