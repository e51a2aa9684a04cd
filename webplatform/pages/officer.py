"""Compliance officer pages: dashboard with charts, the audit trail with filters and verification, runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.validators import MaxValueValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance.audit import audit_verify_recent
from governance.audit_actions import KNOWN_ACTIONS, AuditAction
from governance.audit_results import audit_full_latest
from governance.models import TrainingRun
from governance.selectors import CONTENT_READS, audit_events, audit_stored_actions
from webplatform.accounts.access import is_compliance_officer
from webplatform.lifecycle.report import compliance_report

from . import selectors
from .keyset import KeysetPage, keyset_page

PAGE_SIZE = 50
# "N content reads hidden" counts those among the page's events, and at most this many ("more than"): a
# count over the whole trail costs every read in history (issue 23).
HIDDEN_READS_CAP = 1000
# How a run starts (README's commands table): shown where no run exists yet.
TRAIN_COMMAND = "manage.py train --target-epsilon E --epochs K"


def officer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and a compliance officer, else the 403 page."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_compliance_officer(request.user):
            raise PermissionDenied("Only compliance officers may see this page.")
        return view(request, *args, **kwargs)

    return wrapped


@officer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Headline numbers and the four charts; pseudonymous data only, never image content."""
    report = compliance_report()
    return render(request, "officer/dashboard.html", {
        "report": report, "full_verification": audit_full_latest(),
        "consent_chart": selectors.consent_chart(report["consent"]["history"]),
        "retention_chart": selectors.retention_chart(), "erasure_chart": selectors.erasure_chart(),
        "budget_chart": selectors.budget_chart(),
    })


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False, label="Action")
    subject = forms.CharField(required=False, max_length=64, label="Subject pseudonym",
                              help_text="The whole pseudonym or its start, as the table shows it")
    since = forms.DateField(
        required=False, label="From (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}),
        # The filter ends the next midnight, which must exist: 9999-12-31 had overflowed into a 500.
        validators=[MaxValueValidator(date.max - timedelta(days=1), "Choose a day before 9999-12-31.")],
    )
    reads = forms.BooleanField(required=False, label="Show content reads (one per photo or result viewed)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The vocabulary with its meanings, then any stored action it no longer lists (still filterable).
        listed = [(a.value, f"{a} — {a.meaning}") for a in sorted(AuditAction)]
        stored = audit_stored_actions()
        retired = [(a, f"{a} (no longer written)") for a in stored if a not in KNOWN_ACTIONS]
        self.fields["action"].choices = [("", "Any action"), *listed, *retired]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("since", "“From” is after “To”: no event can match. Swap the dates.")
        return data


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _audit_context(request: HttpRequest) -> dict[str, Any]:
    """The filtered, paginated events and the matching CSV link."""
    form = AuditFilterForm(request.GET or None)
    chosen: dict[str, Any] = {"reads": False}  # content reads hidden until asked for
    if form.is_bound and not form.is_valid():
        # A filter that cannot match (a bad date, From after To) says so and lists nothing.
        return {"form": form, "page": None, "query": "", "csv_url": "", "hidden_reads": 0}
    if form.is_valid():
        f = form.cleaned_data
        chosen = {"action": f["action"] or None, "subject": f["subject"] or None,
                  "since": _day_start(f["since"]) if f["since"] else None,  # whole days, both inclusive
                  "until": _day_start(f["until"]) + timedelta(days=1) if f["until"] else None,
                  "reads": f["reads"]}
    events = audit_events(**chosen, newest_first=True)
    # The CSV link asks the API for the same events: the same selector behind it, in its own words.
    api = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in chosen.items()
           if v and k != "reads"}
    if not chosen["reads"]:
        api["reads"] = "false"
    before, after = _seq_param(request, "before"), _seq_param(request, "after")
    page = keyset_page(events, before=before, after=after, size=PAGE_SIZE)
    hidden = 0 if chosen["reads"] or chosen.get("action") else _hidden_reads(chosen, page, before, after)
    query = {k: v for k, v in request.GET.items() if k not in ("page", "before", "after") and v}
    return {"form": form, "page": page, "query": urlencode(query), "hidden_reads": hidden,
            "hidden_reads_cap": HIDDEN_READS_CAP,
            "show_reads_query": urlencode({**query, "reads": "on"}),
            "csv_url": "/api/v1/audit/events?" + urlencode({**api, "format": "csv"})}


def _hidden_reads(chosen: dict[str, Any], page: KeysetPage, before: int | None, after: int | None) -> int:
    """Content reads matching the other filters among the page's events: above its oldest row (or all the
    older ones on the last page), below `before` or its newest row when newer pages exist; at most
    HIDDEN_READS_CAP + 1, one (action, seq) index range however long the trail."""
    lower = page.older_seq if page.has_next else after
    upper = before if after is None else (page.newer_seq if page.has_previous else None)
    reads = audit_events(**{**chosen, "reads": True}, before_seq=upper, after_seq=lower)
    return reads.filter(action__in=CONTENT_READS)[:HIDDEN_READS_CAP + 1].count()


def _seq_param(request: HttpRequest, name: str) -> int | None:
    """A keyset bound from the query (a sequence number); anything else is ignored: the newest page."""
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


@officer_required
def audit(request: HttpRequest) -> HttpResponse:
    """The audit trail as a table: filters, pagination, CSV, verification."""
    context = _audit_context(request)
    return render(request, "officer/audit.html", context, status=400 if context["form"].errors else 200)


@officer_required
@require_POST
def audit_verify_page(request: HttpRequest) -> HttpResponse:
    """Check the chain's end now, and show it above the table with the newest full verification (the
    scheduled job's: a full walk is linear in history, too long for a request at scale)."""
    return render(request, "officer/audit.html", {**_audit_context(request),
                                                  "verification": audit_verify_recent(),
                                                  "full_verification": audit_full_latest()})


@officer_required
def training_runs(request: HttpRequest) -> HttpResponse:
    """Every training run with its cohort, privacy parameters, manifest hash and status."""
    runs = TrainingRun.objects.select_related("lineage").order_by("-created_at")
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "officer/runs.html", {"page": page, "budget_chart": selectors.budget_chart(),
                                                 "train_command": TRAIN_COMMAND})
