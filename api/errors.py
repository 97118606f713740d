"""The API's one error shape and the single place where exceptions become HTTP answers.

Every 4xx and 5xx body is ``{"error": {"code", "message", "details"}}``. Codes are stable
strings a client may branch on; messages are for people. Errors vidpipe raises on purpose
map by category, Litestar's own errors (routing, validation) get codes of their own, and
anything else becomes a 500 whose traceback stays in the server log.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException
from litestar.types import ExceptionHandlersMap

from pipeline.errors import Conflict, InvalidInput, NotFound, PermanentError, TransientError, VidpipeError

logger = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct):
    """What went wrong: a stable ``code``, a sentence, and optional structured details."""

    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    """The body of every error answer."""

    error: ErrorDetail


class Unauthenticated(VidpipeError):
    """The caller did not prove who they are: no token, a bad one, or wrong credentials (401)."""

    code = "auth.unauthenticated"


class Forbidden(VidpipeError):
    """The caller is known but may not do this (403)."""

    code = "auth.forbidden"


class RateLimited(VidpipeError):
    """Too many attempts from one client in the current window (429)."""

    code = "auth.rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"retry_after": retry_after})
        self.retry_after = retry_after


# Ordered from specific to general: the first class an error is an instance of decides.
_STATUS_BY_CATEGORY: tuple[tuple[type[VidpipeError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (PermanentError, 400),
    (TransientError, 503),
)


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[ErrorBody]:
    """Build an answer in the one error shape."""
    return Response(ErrorBody(ErrorDetail(code=code, message=message, details=details)), status_code=status)


def status_for(exc: VidpipeError) -> int:
    """The HTTP status for a vidpipe error, by its category; unknown categories are server errors."""
    for category, status in _STATUS_BY_CATEGORY:
        if isinstance(exc, category):
            return status
    return 500


def _vidpipe_error(request: Request[Any, Any, Any], exc: VidpipeError) -> Response[ErrorBody]:
    status = status_for(exc)
    if status >= 500:
        # A transient outage is expected now and then; the rest is a bug worth a traceback.
        if isinstance(exc, TransientError):
            logger.warning("Request %s %s met an outage: %s", request.method, request.url.path, exc.code)
        else:
            logger.error("Request %s %s failed with %s.", request.method, request.url.path, exc.code, exc_info=exc)
    response = error_response(status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        return error_response(400, "request.invalid", "The request body or parameters are not valid.", exc.extra)
    if isinstance(exc, NotFoundException):
        return error_response(404, "not_found", "Nothing is served at this address.")
    if isinstance(exc, MethodNotAllowedException):
        response = error_response(405, "request.method_not_allowed", "This address does not accept that method.")
        response.headers.update(exc.headers or {})
        return response
    if exc.status_code >= 500:
        logger.error("Request %s %s failed inside the framework.", request.method, request.url.path, exc_info=exc)
        return error_response(exc.status_code, "internal.error", "The server failed to answer this request.")
    return error_response(exc.status_code, f"http.{exc.status_code}", exc.detail)


def _unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    logger.error("Request %s %s failed unexpectedly.", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal.error", "The server failed to answer this request.")


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers to install on the application; Litestar picks the most specific class."""
    return {
        VidpipeError: _vidpipe_error,
        HTTPException: _http_error,
        Exception: _unexpected_error,
    }
