"""Audit endpoints for compliance officers: pseudonymous events with filters, and chain verification."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.audit import REASONS, audit_verify
from governance.models import AuditEvent
from webplatform.accounts.roles import IsComplianceOfficer

from .errors import ErrorResponse


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "at", "action", "actor", "subject", "object_ref", "details", "prev_hash", "hash"]


class AuditFilters(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=64)
    subject = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


@extend_schema(parameters=[
    OpenApiParameter("action", OpenApiTypes.STR), OpenApiParameter("subject", OpenApiTypes.STR),
    OpenApiParameter("since", OpenApiTypes.DATETIME), OpenApiParameter("until", OpenApiTypes.DATETIME),
], responses={200: AuditEventOut(many=True), 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse})
class AuditEventListApi(generics.ListAPIView):
    """Pseudonymous audit events, oldest first, filterable and paginated."""

    serializer_class = AuditEventOut
    permission_classes = [IsComplianceOfficer]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        filters = AuditFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        events = AuditEvent.objects.order_by("seq")
        if "action" in f:
            events = events.filter(action=f["action"])
        if "subject" in f:
            events = events.filter(subject=f["subject"])
        if "since" in f:
            events = events.filter(at__gte=f["since"])
        if "until" in f:
            events = events.filter(at__lt=f["until"])
        return events


class VerifyOut(serializers.Serializer):
    ok = serializers.BooleanField()
    events_checked = serializers.IntegerField()
    first_bad_seq = serializers.IntegerField(required=False)


class AuditVerifyApi(APIView):
    permission_classes = [IsComplianceOfficer]

    @extend_schema(responses={200: VerifyOut, 401: ErrorResponse, 403: ErrorResponse})
    def get(self, request: Request) -> Response:
        """Recompute the keyed chain and hold it against the newest signed checkpoint."""
        report = audit_verify()
        body: dict = {"ok": report.ok, "events_checked": report.events_checked,
                      "checkpoint_seq": report.checkpoint_seq}
        if report.first_bad_seq is not None:
            body["first_bad_seq"] = report.first_bad_seq
        return Response(body)
    reason = serializers.ChoiceField(choices=sorted(REASONS), required=False,
                                     help_text="why verification failed (absent when ok)")
    checkpoint_seq = serializers.IntegerField(allow_null=True,
                                              help_text="the newest signed checkpoint compared against")
        if report.reason is not None:
            body["reason"] = report.reason
