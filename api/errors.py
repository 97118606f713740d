"""The API's one error shape and the single place where exceptions become HTTP answers.

Every 4xx and 5xx body is ``{"error": {"code", "message", "details"}}``. Codes are stable
strings a client may branch on; messages are for people. Errors vidpipe raises on purpose
map by category, Litestar's own errors (routing, validation) get codes of their own, and
anything else becomes a 500 whose traceback stays in the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Reference, Schema
from litestar.types import ExceptionHandlersMap

from pipeline import i18n
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


COMMON_ERRORS = {
    400: "The request is malformed or a parameter is invalid (`request.invalid`, `input.*`).",
    429: "Too many requests from this client (`auth.rate_limited`); retry after `Retry-After` seconds.",
    500: "An unexpected server error (`internal.error`); the details stay in the server log.",
    503: "A service vidpipe needs (database, broker, storage, search) is unavailable for now; retry later.",
}
"""Errors any route can answer."""

GUARDED_ERRORS = {
    401: "No credential, or an invalid, expired or revoked one (`auth.token_*`, `auth.api_key_*`).",
    403: "The account is disabled, or the route is for administrators only (`auth.forbidden`).",
    404: "Nothing with this id that the caller may see: another member's video or job answers 404 too.",
}
"""Errors every route behind the access guard can answer."""


_ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["code", "message"],
            properties={
                "code": Schema(type=OpenAPIType.STRING, description="A stable code a client may branch on."),
                "message": Schema(type=OpenAPIType.STRING, description="A sentence for people, in their language."),
                "details": Schema(description="Structured details, when the error has any."),
            },
        )
    },
    description="The body of every 4xx and 5xx answer.",
)


def document_errors(document: OpenAPI) -> None:
    """Describe the error answers of every operation in ``document``, with the one error shape.

    Litestar generates a 400 entry in its own validation shape, which vidpipe never sends, so
    400 is always replaced. Operations with a security requirement also list 401, 403 and 404.
    """
    components = document.components
    if isinstance(components, list):  # pragma: no cover - vidpipe passes one Components object
        components = components[0]
    components.schemas = {**(components.schemas or {}), "ErrorBody": _ERROR_SCHEMA}
    reference = Reference(ref="#/components/schemas/ErrorBody")
    for item in (document.paths or {}).values():
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            if operation is None:
                continue
            statuses = {**COMMON_ERRORS, **(GUARDED_ERRORS if operation.security else {})}
            responses = operation.responses if operation.responses is not None else {}
            for status, meaning in statuses.items():
                if status == 400 or str(status) not in responses:
                    responses[str(status)] = OpenAPIResponse(
                        description=meaning, content={"application/json": OpenAPIMediaType(schema=reference)}
                    )
            operation.responses = responses


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
        VidpipeError: _in_callers_language(_vidpipe_error),
        HTTPException: _in_callers_language(_http_error),
        Exception: _in_callers_language(_unexpected_error),
    }


_LANGUAGE_KEY = "vidpipe.language"


def remember_language(connection: ASGIConnection[Any, Any, Any, Any], language: str) -> None:
    """Note the caller's account language, for error messages when the request names none.

    The guard notes it for every guarded route; a route that changes the account notes it again.
    """
    connection.scope.setdefault("state", {})[_LANGUAGE_KEY] = language


def _in_callers_language(
    handler: Callable[[Request[Any, Any, Any], Any], Response[ErrorBody]],
) -> Callable[[Request[Any, Any, Any], Any], Response[ErrorBody]]:
    """Wrap ``handler`` so the message is in the language ``Accept-Language`` or the account chose."""

    def answer(request: Request[Any, Any, Any], exc: Any) -> Response[ErrorBody]:
        response = handler(request, exc)
        remembered = request.scope.get("state", {}).get(_LANGUAGE_KEY)
        language = i18n.choose(request.headers.get("accept-language"), remembered)
        detail = response.content.error
        detail.message = i18n.error_message(detail.code, language, detail.message)
        # A code the catalog lacks keeps its English message, and says so.
        spoken = language if i18n.has_translation(detail.code) else i18n.ENGLISH
        response.headers["Content-Language"] = spoken
        response.headers["Vary"] = "Accept-Language"
        return response

    return answer
