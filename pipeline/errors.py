"""One exception tree for vidpipe.

Every error carries a stable ``code`` (``media.no_video_stream``, ``storage.unavailable``)
and a message a person can act on. The category decides what the pipeline does with it:
a :class:`PermanentError` fails a stage at once, a :class:`TransientError` is retried with
backoff, and the API edge maps :class:`InvalidInput`, :class:`NotFound` and :class:`Conflict`
to 4xx answers.
"""

from __future__ import annotations

from typing import Any


class VidpipeError(Exception):
    """The root of every error vidpipe raises on purpose."""

    code: str = "internal.error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:
        return self.message


class ConfigurationError(VidpipeError):
    """A setting is missing, malformed or points at a service that does not answer."""

    code = "config.invalid"


class PermanentError(VidpipeError):
    """Retrying cannot help: the input or the request itself is wrong."""

    code = "internal.permanent"


class TransientError(VidpipeError):
    """A service was briefly unavailable; the same work may succeed later."""

    code = "internal.transient"


class InvalidInput(PermanentError):
    """The input was read and found unusable."""

    code = "input.invalid"


class NotFound(PermanentError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(PermanentError):
    """The request contradicts the current state."""

    code = "conflict"


class MediaError(InvalidInput):
    """A video file that cannot be processed; ``code`` starts with ``media.``."""

    code = "media.invalid"


class SubtitleError(InvalidInput):
    """A subtitle file that cannot be used; ``code`` starts with ``subtitles.``."""

    code = "subtitles.invalid"


class StorageUnavailable(TransientError):
    """The object store did not answer or answered with a server error."""

    code = "storage.unavailable"


class ObjectMissing(NotFound):
    """An object the pipeline expected in storage is not there."""

    code = "storage.not_found"


class SearchUnavailable(TransientError):
    """The search backend did not answer or answered with a server error."""

    code = "search.unavailable"


class DatabaseUnavailable(TransientError):
    """The database did not answer; the work is retried when it returns."""

    code = "database.unavailable"


class InvalidTransition(VidpipeError):
    """A state change that the job or stage state model does not allow."""

    code = "state.invalid_transition"


class JobCancelled(PermanentError):
    """The job was cancelled while a stage was running."""

    code = "job.cancelled"
