"""Audit endpoints for compliance officers: pseudonymous events with filters, and chain verification."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.audit import REASONS, audit_verify_recent
from governance.audit_actions import KNOWN_ACTIONS
from governance.audit_results import audit_full_latest
from governance.models import AuditEvent
from governance.selectors import audit_events, audit_head_seq, audit_stored_actions
from webplatform.accounts.access import IsComplianceOfficer

from .errors import ErrorResponse
from .fields import Rfc3339DateTimeField
from .pagination import KnownCountPagination


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["seq", "at", "action", "actor", "subject", "object_ref", "details", "prev_hash", "hash"]


CSV_COLUMNS = ["seq", "at", "action", "actor", "subject", "object_ref", "details", "prev_hash", "hash"]


class CsvRenderer(BaseRenderer):
    """Lets `?format=csv` through content negotiation; the rows themselves are streamed by the view."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        return json.dumps(data).encode()  # only reached for errors, which finalize_response turns to JSON


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """The cell as text, with a leading quote when a spreadsheet would read it as a formula (OWASP)."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def audit_csv_rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The header, then one CSV line per event (details as compact JSON), built one row at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow([csv_cell(v) for v in (
            event.seq, event.at.isoformat(), event.action, event.actor, event.subject, event.object_ref,
            json.dumps(event.details, sort_keys=True, separators=(",", ":")), event.prev_hash, event.hash)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


class AuditFilters(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=64)
    subject = serializers.CharField(required=False, max_length=64)
    since = Rfc3339DateTimeField(required=False)
    until = Rfc3339DateTimeField(required=False)
    reads = serializers.BooleanField(required=False, default=True,
                                     help_text="false: leave out content reads (photo/result.content_read)")

    def validate_action(self, value: str) -> str:
        """An action of the vocabulary, or a retired one the trail still holds (the officer's page offers
        both); anything else is a typo that would list nothing, so it is refused."""
        if value in KNOWN_ACTIONS or value in audit_stored_actions():
            return value
        raise serializers.ValidationError("Unknown action: docs/audit.md lists the actions.")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"since": ["'since' is after 'until': no event can match."]})
        return attrs


@extend_schema(parameters=[
    OpenApiParameter("action", OpenApiTypes.STR,
                     description="one action of the vocabulary (docs/audit.md); an unknown one is a 400"),
    OpenApiParameter("subject", OpenApiTypes.STR),
    OpenApiParameter("since", OpenApiTypes.DATETIME), OpenApiParameter("until", OpenApiTypes.DATETIME),
    OpenApiParameter("reads", OpenApiTypes.BOOL,
                     description="false: leave out content reads; subject also matches a pseudonym's start"),
    OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"],
                     description="csv: every matching event as text/csv, unpaginated"),
], responses={200: AuditEventOut(many=True), (200, "text/csv"): OpenApiTypes.STR, 400: ErrorResponse,
              401: ErrorResponse, 403: ErrorResponse})
class AuditEventListApi(generics.ListAPIView):
    """Pseudonymous audit events, oldest first, filterable and paginated (or all of them as CSV).

    Unfiltered, `count` is the chain head's seq (the chain is seqs 1..head, none missing, or verification
    fails), so a page costs the same at any length; filtered, it counts the matches over an index.
    """

    serializer_class = AuditEventOut
    permission_classes = [IsComplianceOfficer]
    renderer_classes = [JSONRenderer, CsvRenderer]
    pagination_class = KnownCountPagination

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """JSON pages, or with `?format=csv` the whole filtered trail streamed as a download."""
        if getattr(request.accepted_renderer, "format", None) != "csv":
            return super().list(request, *args, **kwargs)
        rows = audit_csv_rows(self.get_queryset().iterator(chunk_size=2000))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="timeveil-audit.csv"'
        response["Cache-Control"] = "no-store, private"
        return response

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        """An unknown `?format=` is bad input (400, documented), not a missing page (DRF's 404)."""
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            raise ValidationError({"format": ["Use json or csv."]}) from None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Errors keep API.md's JSON shape even when the caller asked for CSV.
        if getattr(response, "status_code", 200) >= 400 and isinstance(response, Response):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def _filters(self) -> dict[str, Any]:
        filters = AuditFilters(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return dict(filters.validated_data)

    def get_queryset(self):
        return audit_events(**self._filters())

    def known_count(self) -> int | None:
        """The unfiltered trail's count is the head's seq: the chain is seqs 1..head with none missing (a
        gap is a `broken_link` that verification reports), so no COUNT over every event (issue 23). A
        filtered list still counts its matches, over the (action, seq) / (subject, seq) indexes."""
        filters = self._filters()
        if filters.pop("reads") and not any(filters.values()):
            return audit_head_seq()
        return None


class FullVerificationOut(serializers.Serializer):
    at = serializers.DateTimeField()
    ok = serializers.BooleanField()
    verified_through = serializers.IntegerField(help_text="the chain verified up to this seq")
    events_checked = serializers.IntegerField()
    first_bad_seq = serializers.IntegerField(allow_null=True)
    reason = serializers.ChoiceField(choices=sorted(REASONS), allow_null=True)
    seconds = serializers.FloatField(help_text="how long the walk took")


class VerifyOut(serializers.Serializer):
    ok = serializers.BooleanField(help_text="neither this request's check nor the newest full one found "
                                            "anything")
    events_checked = serializers.IntegerField(help_text="events this request checked (from checked_from)")
    first_bad_seq = serializers.IntegerField(required=False)
    reason = serializers.ChoiceField(choices=sorted(REASONS), required=False,
                                     help_text="why verification failed (absent when ok)")
    checked_from = serializers.IntegerField(
        help_text="the first seq this request checked: the oldest of the newest signed checkpoints (1 when "
                  "it walked the whole chain); what lies before is the scheduled full verification's")
    checkpoint_seq = serializers.IntegerField(allow_null=True,
                                              help_text="the newest signed checkpoint compared against")
    checkpoints_checked = serializers.IntegerField(help_text="signed checkpoints held against the chain")
    checkpoint_lag = serializers.IntegerField(help_text="events past the newest checkpoint, or still queued")
    full_verification = FullVerificationOut(
        allow_null=True, help_text="the newest scheduled full walk (null before its first run)")


class AuditVerifyApi(APIView):
    permission_classes = [IsComplianceOfficer]

    @extend_schema(responses={200: VerifyOut, 401: ErrorResponse, 403: ErrorResponse})
    def get(self, request: Request) -> Response:
        """The chain's end checked now (from a signed checkpoint to the head: the dashboard's check, bounded
        whatever the history) and the newest scheduled full walk with its time; a finding of either fails
        `ok`, this request's first (docs/audit.md says what each catches)."""
        recent, full = audit_verify_recent(), audit_full_latest()
        body: dict = {"ok": recent.ok and (full is None or full.ok), "events_checked": recent.events_checked,
                      "checked_from": recent.checked_from, "checkpoint_seq": recent.checkpoint_seq,
                      "checkpoints_checked": recent.checkpoints_checked,
                      "checkpoint_lag": recent.checkpoint_lag,
                      "full_verification": None if full is None else full.as_json()}
        # The lowest seq either check found bad (a full walk names an edit inside the prefix itself; the
        # check from a checkpoint, at most the first link it walked), and that check's reason
        findings = [(r.first_bad_seq, r.reason) for r in (recent, full) if r is not None and not r.ok]
        if findings:
            bad, reason = min(findings, key=lambda f: float("inf") if f[0] is None else f[0])
            if bad is not None:
                body["first_bad_seq"] = bad
            if reason is not None:
                body["reason"] = reason
        return Response(body)
