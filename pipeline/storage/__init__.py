"""Object storage: where the pipeline keeps every byte, behind one small interface.

:func:`open_storage` builds the backend that ``VIDPIPE_STORAGE_URL`` names: a local folder
(``file:///abs/dir``, the embedded default) or an S3 bucket (``s3://bucket/prefix``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import url2pathname

from pipeline.errors import ConfigurationError, InvalidInput
from pipeline.settings import Settings
from pipeline.storage.base import Storage, StoredObject, guess_content_type, validate_key, validate_prefix
from pipeline.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "Storage",
    "StoredObject",
    "guess_content_type",
    "open_storage",
    "open_storage_at",
    "validate_key",
    "validate_prefix",
]


def open_storage(settings: Settings) -> Storage:
    """Build the object store that ``settings.storage_url`` names; nothing is contacted yet.

    Raises:
        ConfigurationError: the URL's scheme is unknown, or it names no usable folder or bucket.
    """
    return open_storage_at(settings.storage_url, settings)


def open_storage_at(url: str, settings: Settings, *, variable: str = "VIDPIPE_STORAGE_URL") -> Storage:
    """Build a store rooted at ``url`` (``file:///abs/dir`` or ``s3://bucket/prefix``).

    The S3 endpoint, region and addressing style come from ``settings``, so the drop location
    and the pipeline's own store reach the same service the same way.

    Args:
        url: Where the store's keys start.
        settings: Supplies the S3 connection settings.
        variable: The setting ``url`` came from, named in error messages.

    Raises:
        ConfigurationError: the URL's scheme is unknown, or it names no usable folder or bucket.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(_folder(parts, variable))
    if parts.scheme == "s3":
        return _open_s3(settings, parts, variable)
    raise ConfigurationError(
        f"{variable} has the scheme {parts.scheme or '(none)'!r}; use file:///abs/dir or s3://bucket/prefix.",
        code="config.unknown_scheme",
    )


def _folder(parts: SplitResult, variable: str) -> Path:
    if parts.netloc not in ("", "localhost"):
        raise ConfigurationError(
            f"{variable} names the host {parts.netloc!r}; a file:// URL must be a local "
            "absolute path such as file:///srv/vidpipe/objects.",
            code="config.storage_url",
        )
    folder = Path(url2pathname(parts.path))
    if not folder.is_absolute():
        raise ConfigurationError(
            f"{variable} must name an absolute folder, as in file:///srv/vidpipe/objects.",
            code="config.storage_url",
        )
    return folder


def _open_s3(settings: Settings, parts: SplitResult, variable: str) -> Storage:
    # Imported here so that the embedded default never pays for importing boto3.
    from pipeline.storage.s3 import S3Storage

    prefix = unquote(parts.path).strip("/")
    try:
        if prefix:
            validate_key(prefix)
    except InvalidInput as error:
        raise ConfigurationError(f"{variable} has an unusable key prefix: {error}", code="config.storage_url") from None
    if not parts.netloc:
        raise ConfigurationError(f"{variable} must name a bucket, as in s3://bucket/prefix.", code="config.storage_url")
    return S3Storage(
        parts.netloc,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        path_style=settings.s3_path_style,
    )
