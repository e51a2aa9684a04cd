"""Error pages: HTML for browsers, API.md's JSON for /api/ and for clients that ask for JSON."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from governance.errors import TimeveilError
from webplatform.api import errors as api_errors


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def _page(request: HttpRequest | None, status: int, title: str, message: str) -> HttpResponse:
    body: str
    try:
        body = render_to_string("error.html", {"status": status, "title": title, "message": message},
                                request=request if status != 500 else None)
    except Exception:  # the 500 page must render even when templates or the database are the problem
        body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return api_errors.bad_request(request, exception)
    return _page(request, 400, "Bad request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return api_errors.permission_denied(request, exception)
    return _page(request, 403, "Not allowed", "Your account may not open this page.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return api_errors.page_not_found(request, exception)
    return _page(request, 404, "Page not found", "There is nothing here, or it is not yours to see.")


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return api_errors.server_error(request)
    if (known := api_errors.in_flight_error()) is not None:  # the database down outside a view: a 503 page
        return error_response(request, known)
    return _page(request, 500, "Something went wrong", "Something went wrong on our side. Please try again.")


class TimeveilErrorPages:
    """Middleware: a TimeveilError that leaves a page view answers its own status, not a 500.

    API views never get here (DRF's exception handler answers them); page views catch the errors they
    expect and say them in a message, and this catches the rest: storage down is a 503 page with
    Retry-After, like the API's.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        known = api_errors.as_timeveil_error(exc)  # a TimeveilError, or the database down
        return None if known is None else error_response(request, known)


def error_response(request: HttpRequest, exc: TimeveilError) -> HttpResponse:
    """The error's page (or JSON for API clients), with its status and headers such as Retry-After."""
    if _wants_json(request):
        return api_errors.timeveil_json(exc)
    title = "Try again shortly" if exc.status == 503 else "That did not work"
    # With the database down the page renders without the request: its context processors would ask the
    # database for the user.
    database_down = isinstance(exc, api_errors.DatabaseUnavailable)
    response = _page(None if database_down else request, exc.status, title, exc.message)
    for name, value in api_errors.timeveil_headers(exc).items():
        response[name] = value
    return response


class FormBodyErrors:
    """Middleware before CsrfViewMiddleware: parse a page's form body first, so a too-large file gets a 413.

    The CSRF check reads request.POST in its process_view, where an exception is not a view's and would
    leave as a 500 (with a signed-out header). Reading it here turns the upload handler's PayloadTooLarge
    into its page while the signed-in user is known. API views parse their own bodies (DRF's handler).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable, args: tuple,
                     kwargs: dict) -> HttpResponse | None:
        if request.method != "POST" or request.path.startswith("/api/"):
            return None
        try:
            request.POST  # noqa: B018 - parsing is the point
        except TimeveilError as exc:
            return error_response(request, exc)
        return None
