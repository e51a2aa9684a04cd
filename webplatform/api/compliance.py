"""Compliance officers' report."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webplatform.accounts.access import IsComplianceOfficer
from webplatform.lifecycle.report import compliance_report

from .errors import ErrorResponse


class ComplianceReportApi(APIView):
    permission_classes = [IsComplianceOfficer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 401: ErrorResponse, 403: ErrorResponse})
    def get(self, request: Request) -> Response:
        """Retention backlog, erasures against deadlines, consent counts, audit chain status."""
        return Response(compliance_report())
