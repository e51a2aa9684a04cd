"""API token authentication with a lifetime (API_TOKEN_LIFETIME): an expired token is refused with 401."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from .services import token_expired


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing tokens past their lifetime (POST /auth/token issues a new one)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            raise AuthenticationFailed("The token has expired; request a new one at /api/v1/auth/token.")
        return user, token
