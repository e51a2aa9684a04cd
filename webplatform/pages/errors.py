"""Error pages: HTML for browsers, API.md's JSON for /api/ and for clients that ask for JSON."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from webplatform.api import errors as api_errors


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
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
    return _page(request, 500, "Something went wrong", "Something went wrong on our side. Please try again.")
