"""Content-Security-Policy on every response: scripts only from our own static files, never inline."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """Send CONTENT_SECURITY_POLICY, or the first CONTENT_SECURITY_POLICY_PATHS entry whose prefix matches."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = next((p for prefix, p in settings.CONTENT_SECURITY_POLICY_PATHS.items()
                           if request.path.startswith(prefix)), settings.CONTENT_SECURITY_POLICY)
            response["Content-Security-Policy"] = policy
        return response
