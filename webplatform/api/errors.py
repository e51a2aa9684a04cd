"""The one place errors become HTTP: TimeveilError, DRF and Django exceptions → API.md's JSON shape."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.response import Response

from governance.errors import TimeveilError

log = logging.getLogger(__name__)

# DRF's own exceptions, renamed to our codes so clients see one vocabulary.
_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ValidationError, "invalid"),
    (drf.ParseError, "malformed"),
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "not_authenticated"),
    (drf.PermissionDenied, "forbidden"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "throttled"),
]


class ErrorBody(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(required=False)


class ErrorResponse(serializers.Serializer):
    """The error shape of API.md, for the OpenAPI schema."""

    error = ErrorBody()


class DatabaseUnavailable(TimeveilError):
    """The database did not answer (refused, cut, restarting): transient, so come back, never a 500."""

    status, code = 503, "database_unavailable"
    message = "The service is briefly unavailable; try again shortly."

    @property
    def retry_after(self) -> int:
        return int(settings.DATABASE_RETRY_AFTER_SECONDS)


# What a database that cannot be reached raises: OperationalError when connecting or mid-query (the server
# went away), InterfaceError on a connection already broken by that. A bug (IntegrityError, ProgrammingError)
# is neither, and stays a 500.
DATABASE_FAULTS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def as_timeveil_error(exc: BaseException | None) -> TimeveilError | None:
    """The client-visible error for `exc`: itself, a DatabaseUnavailable for a database fault, else None."""
    if isinstance(exc, TimeveilError):
        return exc
    if isinstance(exc, DATABASE_FAULTS):
        log.warning("database unavailable: %s", exc)
        return DatabaseUnavailable()
    return None


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def timeveil_headers(exc: TimeveilError) -> dict[str, str]:
    """Transient server-side faults (storage down, the sign-in cache down) say when to come back."""
    retry_after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after else {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception a view raises leaves as the JSON error shape."""
    if (known := as_timeveil_error(exc)) is not None:
        if known.status >= 500:
            log.error("server-side failure %s: %s", known.code, known.message)
        return Response(error_body(known.code, known.message, known.details), status=known.status,
                        headers=timeveil_headers(known))
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("forbidden", "You are not allowed to do this."), status=403)
    if isinstance(exc, RequestDataTooBig):  # form fields past DATA_UPLOAD_MAX_MEMORY_SIZE
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body("too_large", "The request body is too large.", {"max_bytes": limit}), status=413
        )
    if isinstance(exc, SuspiciousOperation):  # too many fields, malformed multipart and the like
        return Response(error_body("bad_request", "The request could not be understood."), status=400)
    if isinstance(exc, drf.APIException):
        return _drf_response(exc)
    log.exception("unhandled error in %s", type(context.get("view")).__name__)
    return Response(error_body("server_error", "Something went wrong on our side."), status=500)


def _drf_response(exc: drf.APIException) -> Response:
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), str(exc.default_code))
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body(code, "The request is not valid.", _plain(detail))
    else:
        body = error_body(code, str(exc.detail))
    headers = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait) + 1)
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    return Response(body, status=exc.status_code, headers=headers)


def _plain(detail: Any) -> Any:
    """ErrorDetail trees → plain JSON."""
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


def _django_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_error(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_error(403, "forbidden", "You are not allowed to do this.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _django_error(404, "not_found", "Not found.")


def in_flight_error() -> TimeveilError | None:
    """For handler500: the client-visible error behind the exception being handled, if there is one.

    Django calls handler500 inside its `except` block, so an error raised outside any view (the session
    saved by middleware, the user looked up by it) is still in sys.exc_info() here.
    """
    return as_timeveil_error(sys.exc_info()[1])


def timeveil_json(exc: TimeveilError) -> JsonResponse:
    response = JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status)
    for name, value in timeveil_headers(exc).items():
        response[name] = value
    return response


def server_error(request: HttpRequest) -> JsonResponse:
    if (known := in_flight_error()) is not None:
        return timeveil_json(known)
    return _django_error(500, "server_error", "Something went wrong on our side.")
