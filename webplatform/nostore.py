"""`Cache-Control: no-store` on every response Timeveil renders, so no browser or proxy keeps personal data.

After a photo was deleted, the browser's Back button still showed it and its results from the cache. Pages and
API answers are private by default here: rather than list the private ones (and miss the next one), every
dynamic response is marked, unless its view set a Cache-Control of its own. Static files never reach this
middleware (WhiteNoise answers them first, with its own long-lived caching).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class NoStoreMiddleware:
    """Add `Cache-Control: no-store, private` where a view did not choose its own caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Cache-Control" not in response:
            response["Cache-Control"] = "no-store, private"
        return response
