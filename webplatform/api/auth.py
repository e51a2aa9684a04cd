"""Registration and token endpoints (throttled, open to anyone), and signing out everywhere."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webplatform.accounts.access import user_id
from webplatform.accounts.recovery import VERIFY, account_mail_queue
from webplatform.accounts.services import credentials_revoke_all, public_id, token_obtain, user_register
from webplatform.accounts.validation import EMAIL_MAX, PASSWORD_MAX, USERNAME_MAX, USERNAME_MIN

from .errors import ErrorResponse


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    class Input(serializers.Serializer):
        # Checked by accounts.validation, the sign-up page's validator too; the lengths here bound the body.
        username = serializers.CharField(
            max_length=USERNAME_MAX, allow_blank=True,
            help_text=f"{USERNAME_MIN}-{USERNAME_MAX} letters, digits or . @ + - _, in one script")
        password = serializers.CharField(max_length=PASSWORD_MAX, allow_blank=True, trim_whitespace=False)
        email = serializers.CharField(max_length=EMAIL_MAX, required=False, allow_blank=True, default="",
                                      help_text="an e-mail address, or empty")

    class Output(serializers.Serializer):
        id = serializers.UUIDField(help_text="opaque public id (not the sequential key)")
        username = serializers.CharField()
        token = serializers.CharField()

    @extend_schema(request=Input, responses={201: Output, 400: ErrorResponse, 409: ErrorResponse,
                                             429: ErrorResponse}, auth=[])
    def post(self, request: Request) -> Response:
        """Create an end user and return their API token."""
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        user, token = user_register(**data.validated_data)
        if user.email:  # a confirmation link, as the sign-up page sends (accounts/recovery.py)
            account_mail_queue(kind=VERIFY, user_ids=[user.pk], request=request)
        return Response({"id": public_id(user), "username": user.username, "token": token},
                        status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    class Input(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    class Output(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=Input, responses={200: Output, 400: ErrorResponse, 401: ErrorResponse,
                                             429: ErrorResponse, 503: ErrorResponse}, auth=[])
    def post(self, request: Request) -> Response:
        """Exchange a username and password for the API token (limited per account and address)."""
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"token": token_obtain(**data.validated_data, request=request._request)})


class RevokeAllApi(APIView):
    class Output(serializers.Serializer):
        tokens = serializers.IntegerField()
        sessions = serializers.IntegerField()

    @extend_schema(request=None, responses={200: Output, 401: ErrorResponse})
    def post(self, request: Request) -> Response:
        """Sign out everywhere: the token and every web session end now; POST /auth/token issues a new one."""
        return Response(self.Output(credentials_revoke_all(user_id=user_id(request))).data)
