"""Training transparency: runs and model versions for compliance officers, privacy loss for each user."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.models import TrainingRun
from webplatform.accounts.access import IsComplianceOfficer, user_id
from webplatform.privacy import privacy_report

from .errors import ErrorResponse


class TrainingRunOut(serializers.ModelSerializer):
    """A run's public parameters: the participant count as released (with noise), no losses or metrics."""

    lineage = serializers.CharField(source="lineage.name")
    epsilon = serializers.FloatField(source="epsilon_reserved")  # a run spends its whole reservation
    participants_noise_std = serializers.FloatField(source="count_noise")

    class Meta:
        model = TrainingRun
        fields = ["id", "lineage", "status", "created_at", "finished_at", "manifest_sha256", "participants",
                  "participants_noise_std", "epsilon", "epsilon_reserved", "epsilon_spent", "delta",
                  "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "accountant", "model_version",
                  "parent_version", "error"]


@extend_schema(responses={200: TrainingRunOut(many=True), 401: ErrorResponse, 403: ErrorResponse})
class TrainingRunListApi(generics.ListAPIView):
    """Training runs with manifest hash, released participant count, epsilon, delta, status."""

    serializer_class = TrainingRunOut
    permission_classes = [IsComplianceOfficer]
    queryset = TrainingRun.objects.select_related("lineage").order_by("-created_at")


class ModelListApi(APIView):
    permission_classes = [IsComplianceOfficer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 401: ErrorResponse, 403: ErrorResponse})
    def get(self, request: Request) -> Response:
        """Every registered model version with its card; which one is promoted."""
        from webplatform.models_registry import model_registry  # torch stays out of the web's start-up

        registry = model_registry()
        promoted = registry.promoted_version()
        versions = [{"version": v, "promoted": v == promoted, "card": registry.card(v)}
                    for v in registry.list_versions()]
        return Response({"promoted": promoted, "versions": versions})


class PrivacyApi(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, 401: ErrorResponse}, parameters=[OpenApiParameter(
        "estimate", str, enum=["prv"], description="prv: add PRV's estimate for runs planned in advance "
        "(prv_epsilon; composed on request, for at most DP_PRV_ESTIMATE_MAX_RUNS runs)")])
    def get(self, request: Request) -> Response:
        """Training runs that used the caller's data, epsilon and delta each and in total (the Rényi
        filter's, what the cap checks), in plain words."""
        return Response(privacy_report(user_id(request), prv=request.query_params.get("estimate") == "prv"))
