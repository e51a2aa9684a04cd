"""The caller's own account: erase it, export everything held about them."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.erasure_requests import erasure_by_receipt, erasure_status
from webplatform.accounts.access import user_id
from webplatform.lifecycle.erasure import user_erase
from webplatform.lifecycle.export import export_stream
from webplatform.privacy import privacy_report

from .errors import ErrorResponse


class ErasureAcceptedOut(serializers.Serializer):
    receipt = serializers.CharField()
    status_url = serializers.CharField()
    status = serializers.CharField()
    deadline = serializers.DateTimeField()


class ErasureStatusOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted", "purging", "done"])
    requested_at = serializers.DateTimeField()
    deadline = serializers.DateTimeField()
    purge_started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    overdue = serializers.BooleanField()


class MeApi(APIView):
    @extend_schema(responses={202: ErasureAcceptedOut, 401: ErrorResponse})
    def delete(self, request: Request) -> Response:
        """Erase the account: data unreadable and the token dead from now on; purge follows."""
        erasure, receipt = user_erase(user_id=user_id(request))
        url = request.build_absolute_uri(reverse("erasure-status", kwargs={"receipt": receipt}))
        return Response({"receipt": receipt, "status_url": url, "status": erasure.status,
                         "deadline": erasure.deadline}, status=status.HTTP_202_ACCEPTED)


class ErasureStatusApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "receipt"  # receipts are unguessable; throttling keeps guessing pointless too

    @extend_schema(responses={200: ErasureStatusOut, 404: ErrorResponse, 429: ErrorResponse}, auth=[])
    def get(self, request: Request, receipt: str) -> Response:
        """Status of an erasure, for whoever holds the receipt; no personal data."""
        return Response(erasure_status(erasure_by_receipt(receipt)))


class ExportApi(APIView):
    @extend_schema(
        responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY), 401: ErrorResponse}
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        """A zip of everything held about the caller, decrypted, streamed."""
        response = StreamingHttpResponse(
            export_stream(user_id=user_id(request), privacy_report=privacy_report),
            content_type="application/zip",
        )
        response["Content-Disposition"] = 'attachment; filename="timeveil-export.zip"'
        response["Cache-Control"] = "no-store, private"
        return response
