"""Purposes and the user's consents: read policies, grant or withdraw, history."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.consent import consent_receipt, consent_states, policy_current
from governance.models import ConsentRecord, Purpose
from webplatform.accounts.access import user_id
from webplatform.lifecycle.consent_changes import consent_change

from .errors import ErrorResponse
from .fields import ExplicitBooleanField


class PolicyOut(serializers.Serializer):
    version = serializers.IntegerField()
    text = serializers.CharField()
    sha256 = serializers.CharField()
    published_at = serializers.DateTimeField()


class PurposeOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    policy = PolicyOut()


class ReceiptOut(serializers.Serializer):
    receipt_id = serializers.UUIDField()
    at = serializers.DateTimeField()
    subject = serializers.CharField()
    purpose = serializers.CharField()
    policy_version = serializers.IntegerField()
    policy_sha256 = serializers.CharField()
    granted = serializers.BooleanField()
    state = serializers.ChoiceField(choices=["granted", "withdrawn"])


class ConsentStateOut(serializers.Serializer):
    purpose = serializers.CharField()
    active = serializers.BooleanField()
    granted = serializers.BooleanField()
    policy_version = serializers.IntegerField(allow_null=True)
    current_policy_version = serializers.IntegerField()
    since = serializers.DateTimeField(allow_null=True)


class PurposeListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: PurposeOut(many=True)})
    def get(self, request: Request) -> Response:
        """Every purpose with its current policy text and hash."""
        purposes = [{"slug": p.slug, "name": p.name, "policy": policy_current(p)}
                    for p in Purpose.objects.order_by("slug")]
        return Response(PurposeOut(purposes, many=True).data)


class ConsentStateApi(APIView):
    @extend_schema(responses={200: ConsentStateOut(many=True), 401: ErrorResponse})
    def get(self, request: Request) -> Response:
        """The caller's current consent state per purpose."""
        return Response(ConsentStateOut(consent_states(user_id=user_id(request)), many=True).data)


class ConsentSetApi(APIView):
    class Input(serializers.Serializer):
        granted = ExplicitBooleanField()
        policy_version = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)

        def validate(self, attrs: dict) -> dict:
            if attrs["granted"] and attrs["policy_version"] is None:
                raise serializers.ValidationError({"policy_version": ["Required to grant consent."]})
            return attrs

    @extend_schema(request=Input, responses={200: ReceiptOut, 400: ErrorResponse, 401: ErrorResponse,
                                             404: ErrorResponse, 409: ErrorResponse})
    def put(self, request: Request, purpose: str) -> Response:
        """Grant (naming the current policy version) or withdraw a purpose's consent; returns the receipt."""
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        record = consent_change(user_id=user_id(request), purpose_slug=purpose, **data.validated_data)
        return Response(ReceiptOut(consent_receipt(record)).data)


class ConsentHistoryApi(APIView):
    @extend_schema(responses={200: ReceiptOut(many=True), 401: ErrorResponse})
    def get(self, request: Request) -> Response:
        """Every consent record of the caller, oldest first, as receipts."""
        records = (ConsentRecord.objects.filter(user_id=user_id(request))
                   .select_related("purpose", "policy").order_by("at", "pk"))
        return Response(ReceiptOut([consent_receipt(r) for r in records], many=True).data)
