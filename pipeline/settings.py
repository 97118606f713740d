"""Settings: one object read from ``VIDPIPE_*`` environment variables.

Every variable has an embedded default so that ``vidpipe demo`` works on a laptop with
nothing but Python: a SQLite file, a local object folder, an in-process broker and the
database's own full-text search, all under ``VIDPIPE_DATA_DIR``. Production points the same
variables at PostgreSQL, Redis, S3 and OpenSearch.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigurationError

logger = logging.getLogger(__name__)

_DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+psycopg")
_BROKER_SCHEMES = ("memory", "redis", "rediss")
_STORAGE_SCHEMES = ("file", "s3")
_SEARCH_SCHEMES = ("database", "http", "https")
_IMAGE_FORMATS = ("jpeg", "webp")
_ENVIRONMENTS = ("development", "production")
_LOG_FORMATS = ("text", "json")
_MAIL_SCHEMES = ("smtp", "smtps")
_MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything vidpipe reads from its environment, validated once."""

    data_dir: Path
    """Holds the SQLite file, local objects, the drop folder and a generated secret."""
    database_url: str
    broker_url: str
    storage_url: str
    search_url: str
    secret_key: str = field(repr=False)
    environment: str = "development"
    """``production`` refuses to start without an explicit secret key."""
    s3_endpoint_url: str | None = None
    """For S3-compatible stores (MinIO, moto); ``None`` means AWS itself."""
    s3_region: str | None = None
    s3_path_style: bool = False
    """Path-style addressing (``http://host/bucket/key``), which most S3-compatible stores need."""
    ffmpeg: str | None = None
    """An explicit ffmpeg binary; otherwise ``ffmpeg`` on PATH, then the one imageio-ffmpeg ships."""
    ffmpeg_threads: int = 0
    """Decoding and filter threads per ffmpeg run; 0 lets ffmpeg choose (one per core). Set 1 when a
    host runs as many worker processes as it has cores, so the processes do not compete for them."""
    image_format: str = "jpeg"
    """Poster, candidate and storyboard images: ``jpeg`` or ``webp``."""
    max_attempts: int = 5
    """How many times a stage runs before a transient failure fails it for good."""
    retry_backoff_ms: int = 1000
    """The first retry's delay; each further retry doubles it, up to ``retry_backoff_max_ms``."""
    retry_backoff_max_ms: int = 60_000
    worker_threads: int = 4
    """Worker threads of the in-process broker."""
    heartbeat_seconds: float = 5.0
    """How often a running stage records that it is alive."""
    stage_timeout_base: float = 300.0
    """Seconds every stage may take, before the share of the video's duration is added."""
    stage_timeout_factor: float = 2.0
    """Seconds of stage time allowed per second of video (ingest, thumbnails, subtitles)."""
    stale_heartbeat_seconds: float = 60.0
    """A running stage whose heartbeat is older than this is taken to have lost its worker."""
    lost_message_seconds: float = 90.0
    """A stage queued this long without being picked up has its message sent again."""
    thumbnails_per_host: int = 2
    """At most this many thumbnail stages (the storyboard encode) run at once on one host."""
    broker_namespace: str = "vidpipe"
    """Prefix of the Redis keys, so several deployments (or test runs) can share one Redis."""
    search_index_prefix: str = "vidpipe"
    """Prefix of the OpenSearch aliases and indices, so several deployments can share one cluster."""
    ingest_url: str = ""
    """The drop location the ingest scanner watches (``file://`` or ``s3://``); empty means
    ``$VIDPIPE_DATA_DIR/incoming``, which :meth:`from_env` fills in."""
    ingest_settle_seconds: float = 5.0
    """How long a dropped file must stay unchanged before the scanner takes it."""
    public_url: str = "http://127.0.0.1:8000"
    """Where clients reach the API: the base of links in emails and of local upload URLs."""
    smtp_url: str | None = None
    """``smtp://user:password@host:587`` (STARTTLS) or ``smtps://…:465``; without it, emails are
    written to the log and to ``$VIDPIPE_DATA_DIR/outbox/`` as ``.eml`` files."""
    mail_from: str = "vidpipe <no-reply@localhost>"
    multipart_threshold_bytes: int = 64 * _MB
    """Uploads larger than this are announced as multipart uploads."""
    upload_part_bytes: int = 16 * _MB
    """The part size of multipart uploads (S3 needs at least 5 MiB for all parts but the last)."""
    upload_url_seconds: float = 3600.0
    """How long presigned and signed upload URLs stay valid."""
    max_upload_bytes: int = 20 * 1024 * _MB
    """The largest single video accepted (413 past it)."""
    quota_bytes: int = 50 * 1024 * _MB
    """The total size of one member's videos."""
    quota_videos: int = 500
    """How many videos one member may have."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Hosts webhooks may reach even when they resolve to private, loopback or link-local
    addresses; by default webhooks go to public addresses only."""
    webhook_retry_ms: int = 10_000
    """The delay before a failed webhook delivery's second attempt; each later one waits six times
    longer than the one before, up to six hours."""
    webhook_max_attempts: int = 8
    """Attempts of one webhook delivery before it is given up."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API; empty turns CORS off."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    """Addresses or networks (``10.0.0.0/8``) of the reverse proxies in front of the API, or ``*``.
    A request arriving from one of them is taken to come from the client its ``X-Forwarded-For``
    names, for rate limits and the login history; from anywhere else the header is ignored."""
    log_format: str = "text"
    """``text`` (readable) or ``json`` (one object per line)."""
    metrics_token: str | None = field(default=None, repr=False)
    """When set, ``/metrics`` answers only requests bearing it (``Authorization: Bearer …``);
    unset, it is public, as usual inside a cluster whose network keeps it private."""

    @property
    def is_embedded(self) -> bool:
        """True when every backend is the embedded default."""
        return self.database_url.startswith("sqlite") and self.broker_url == "memory://"

    @property
    def database_dialect(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the ``VIDPIPE_*`` variables.

        Raises:
            ConfigurationError: with one sentence naming the variable and what is wrong.
        """
        env = os.environ if environ is None else environ

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(f"VIDPIPE_{name}")
            return value if value not in (None, "") else default

        data_dir = Path(get("DATA_DIR", "./.vidpipe") or ".vidpipe").expanduser().absolute()
        environment = _choice("VIDPIPE_ENV", get("ENV", "development"), _ENVIRONMENTS)
        settings = cls(
            data_dir=data_dir,
            database_url=get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'vidpipe.db'}") or "",
            broker_url=get("BROKER_URL", "memory://") or "",
            storage_url=get("STORAGE_URL", (data_dir / "objects").as_uri()) or "",
            search_url=get("SEARCH_URL", "database") or "",
            secret_key=get("SECRET_KEY") or "",
            environment=environment,
            s3_endpoint_url=get("S3_ENDPOINT_URL"),
            s3_region=get("S3_REGION"),
            s3_path_style=_flag("VIDPIPE_S3_PATH_STYLE", get("S3_PATH_STYLE", "false")),
            ffmpeg=get("FFMPEG"),
            ffmpeg_threads=_integer("VIDPIPE_FFMPEG_THREADS", get("FFMPEG_THREADS", "0"), minimum=0),
            image_format=_choice("VIDPIPE_IMAGE_FORMAT", get("IMAGE_FORMAT", "jpeg"), _IMAGE_FORMATS),
            max_attempts=_integer("VIDPIPE_MAX_ATTEMPTS", get("MAX_ATTEMPTS", "5"), minimum=1),
            retry_backoff_ms=_integer("VIDPIPE_RETRY_BACKOFF_MS", get("RETRY_BACKOFF_MS", "1000"), minimum=0),
            retry_backoff_max_ms=_integer(
                "VIDPIPE_RETRY_BACKOFF_MAX_MS", get("RETRY_BACKOFF_MAX_MS", "60000"), minimum=0
            ),
            worker_threads=_integer("VIDPIPE_WORKER_THREADS", get("WORKER_THREADS", "4"), minimum=1),
            broker_namespace=get("BROKER_NAMESPACE", "vidpipe") or "vidpipe",
            search_index_prefix=get("SEARCH_INDEX_PREFIX", "vidpipe") or "vidpipe",
            stage_timeout_base=_seconds("VIDPIPE_STAGE_TIMEOUT_BASE_MS", get("STAGE_TIMEOUT_BASE_MS", "300000")),
            stage_timeout_factor=_number("VIDPIPE_STAGE_TIMEOUT_FACTOR", get("STAGE_TIMEOUT_FACTOR", "2.0")),
            stale_heartbeat_seconds=_seconds("VIDPIPE_STALE_HEARTBEAT_MS", get("STALE_HEARTBEAT_MS", "60000")),
            lost_message_seconds=_seconds("VIDPIPE_LOST_MESSAGE_MS", get("LOST_MESSAGE_MS", "90000")),
            thumbnails_per_host=_integer("VIDPIPE_THUMBNAILS_PER_HOST", get("THUMBNAILS_PER_HOST", "2"), minimum=1),
            heartbeat_seconds=float(_integer("VIDPIPE_HEARTBEAT_MS", get("HEARTBEAT_MS", "5000"), minimum=100) / 1000),
            ingest_url=get("INGEST_URL", (data_dir / "incoming").as_uri()) or "",
            ingest_settle_seconds=float(
                _integer("VIDPIPE_INGEST_SETTLE_MS", get("INGEST_SETTLE_MS", "5000"), minimum=0) / 1000
            ),
            public_url=(get("PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/"),
            smtp_url=get("SMTP_URL"),
            mail_from=get("MAIL_FROM", "vidpipe <no-reply@localhost>") or "",
            multipart_threshold_bytes=_integer(
                "VIDPIPE_MULTIPART_THRESHOLD_MB", get("MULTIPART_THRESHOLD_MB", "64"), minimum=5
            )
            * _MB,
            upload_part_bytes=_integer("VIDPIPE_UPLOAD_PART_MB", get("UPLOAD_PART_MB", "16"), minimum=5) * _MB,
            upload_url_seconds=_seconds("VIDPIPE_UPLOAD_URL_MS", get("UPLOAD_URL_MS", "3600000")),
            max_upload_bytes=_integer("VIDPIPE_MAX_UPLOAD_MB", get("MAX_UPLOAD_MB", "20480"), minimum=1) * _MB,
            quota_bytes=_integer("VIDPIPE_QUOTA_MB", get("QUOTA_MB", "51200"), minimum=1) * _MB,
            quota_videos=_integer("VIDPIPE_QUOTA_VIDEOS", get("QUOTA_VIDEOS", "500"), minimum=1),
            webhook_allowed_hosts=_list(get("WEBHOOK_ALLOWED_HOSTS")),
            webhook_retry_ms=_integer("VIDPIPE_WEBHOOK_RETRY_MS", get("WEBHOOK_RETRY_MS", "10000"), minimum=1),
            webhook_max_attempts=_integer("VIDPIPE_WEBHOOK_MAX_ATTEMPTS", get("WEBHOOK_MAX_ATTEMPTS", "8"), minimum=1),
            cors_origins=_list(get("CORS_ORIGINS")),
            trusted_proxies=_networks("VIDPIPE_TRUSTED_PROXIES", get("TRUSTED_PROXIES", "127.0.0.1")),
            log_format=_choice("VIDPIPE_LOG_FORMAT", get("LOG_FORMAT", "text"), _LOG_FORMATS),
            metrics_token=get("METRICS_TOKEN"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check URL schemes and the secret; raise one clear :class:`ConfigurationError`."""
        _scheme("VIDPIPE_DATABASE_URL", self.database_url, _DATABASE_SCHEMES)
        _scheme("VIDPIPE_BROKER_URL", self.broker_url, _BROKER_SCHEMES)
        _scheme("VIDPIPE_STORAGE_URL", self.storage_url, _STORAGE_SCHEMES)
        if self.ingest_url:
            _scheme("VIDPIPE_INGEST_URL", self.ingest_url, _STORAGE_SCHEMES)
            if self.ingest_url.startswith("s3://") and not urlsplit(self.ingest_url).netloc:
                raise ConfigurationError(
                    "VIDPIPE_INGEST_URL must name a bucket, as in s3://bucket/incoming/.", code="config.ingest_url"
                )
        if self.smtp_url:
            _scheme("VIDPIPE_SMTP_URL", self.smtp_url, _MAIL_SCHEMES)
        _scheme("VIDPIPE_PUBLIC_URL", self.public_url, ("http", "https"))
        if self.search_url != "database":
            _scheme("VIDPIPE_SEARCH_URL", self.search_url, _SEARCH_SCHEMES)
        if self.storage_url.startswith("s3://") and not urlsplit(self.storage_url).netloc:
            raise ConfigurationError(
                "VIDPIPE_STORAGE_URL must name a bucket, as in s3://bucket/prefix.", code="config.storage_url"
            )
        if self.environment == "production" and not self.secret_key:
            raise ConfigurationError(
                "VIDPIPE_SECRET_KEY is required when VIDPIPE_ENV=production; set it to a random "
                "string of at least 32 characters (for example: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))').",
                code="config.secret_missing",
            )
        if self.secret_key and len(self.secret_key) < 32:
            raise ConfigurationError(
                "VIDPIPE_SECRET_KEY is shorter than 32 characters; use a longer random value.",
                code="config.secret_too_short",
            )

    def with_secret(self) -> Settings:
        """Return these settings with a secret key, generating one into the data dir if needed.

        Only the embedded default does this; production must set ``VIDPIPE_SECRET_KEY``.
        """
        if self.secret_key:
            return self
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
            logger.warning(
                "No VIDPIPE_SECRET_KEY was set, so a new one was generated into %s; "
                "set the variable explicitly outside development.",
                path,
            )
        return replace(self, secret_key=path.read_text().strip())


def _scheme(name: str, url: str, allowed: tuple[str, ...]) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in allowed:
        raise ConfigurationError(
            f"{name} has the scheme {scheme or '(none)'!r}, which vidpipe does not support; "
            f"use one of: {', '.join(s + '://' for s in allowed)}.",
            code="config.unknown_scheme",
        )


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigurationError(f"{name} is {value!r}; use one of: {', '.join(allowed)}.")
    return value


def _flag(name: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} is {value!r}; use true or false.")


def _list(value: str | None) -> tuple[str, ...]:
    """A comma-separated setting, blanks dropped."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _networks(name: str, value: str | None) -> tuple[str, ...]:
    """A comma-separated list of IP addresses and networks, or ``*`` for any."""
    entries = _list(value)
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigurationError(
                f"{name} holds {entry!r}, which is neither an IP address nor a network such as 10.0.0.0/8.",
                code="config.trusted_proxies",
            ) from None
    return entries


def _number(name: str, value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigurationError(f"{name} is {value!r}; it must be a number.") from None
    if number < 0:
        raise ConfigurationError(f"{name} is {number}; it cannot be negative.")
    return number


def _seconds(name: str, milliseconds: str | None) -> float:
    return _integer(name, milliseconds, minimum=1) / 1000


def _integer(name: str, value: str | None, *, minimum: int) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise ConfigurationError(f"{name} is {value!r}; it must be a whole number.") from None
    if number < minimum:
        raise ConfigurationError(f"{name} is {number}; it must be at least {minimum}.")
    return number
