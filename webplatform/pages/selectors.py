"""Reads for the pages: purpose copy in plain words, policy diffs, chart series (rules: the domain's)."""

from __future__ import annotations

import difflib
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from governance import clock
from governance.audit_actions import AuditAction
from governance.audit_rollups import rollup_counts
from governance.consent import PROCESSING, TRAINING
from governance.erasure_requests import erasure_status
from governance.models import ErasureRequest, Lineage, PolicyVersion, TrainingRun
from governance.training import lineage_totals
from webplatform.lifecycle.report import CONSENT_EVENTS
from webplatform.lifecycle.retention import overdue_by_deadline_day
from webplatform.training.ledger import ledger_accountant

from .charts import Chart, Series, bar_chart, line_chart
from .context import hours

# What each purpose means, in words a user reads before choosing (the policy text is the binding version).
PURPOSE_COPY: dict[str, dict[str, str]] = {
    PROCESSING: {
        "title": "Store and transform my photos",
        "meaning": "Timeveil keeps the selfies you upload, encrypted under your own key, and ages or "
                   "rejuvenates them when you ask. Needed to upload anything.",
        "withdraw": "Queued work stops, and your photos and results are deleted at once (a photo you keep "
                    "for training stays while that consent stands).",
    },
    TRAINING: {
        "title": "Help improve the aging model",
        "meaning": "One photo of yours, which you choose, may be used to train the model, only under "
                   "differential privacy, which bounds what any model can reveal about you.",
        "withdraw": "Later training runs leave you out and the photo kept for training is deleted (at once "
                    "if it is older than the normal {original_hours} hours). Models already trained are not "
                    "rewound.",
    },
}


def purpose_copy(slug: str) -> dict[str, str]:
    """Title, meaning and withdrawal effect of a purpose (a generic text for purposes added later)."""
    copy = PURPOSE_COPY.get(slug, {"title": slug.replace("_", " ").capitalize(), "meaning": "",
                                   "withdraw": "Data used only for this purpose is deleted."})
    # The periods come from the settings, so the words never promise another period than the one enforced.
    return {key: text.format(original_hours=hours(settings.RETENTION_ORIGINAL)) for key, text in copy.items()}


def policy_diff(policy: PolicyVersion) -> list[dict[str, str]] | None:
    """Line diff against the previous version of the same purpose (None for version 1)."""
    previous = PolicyVersion.objects.filter(purpose=policy.purpose, version=policy.version - 1).first()
    if previous is None:
        return None
    lines = []
    for line in difflib.ndiff(previous.text.splitlines(), policy.text.splitlines()):
        tag = line[:1]
        if tag == "?":
            continue  # ndiff's intraline hints: noise on a page
        lines.append({"kind": {"+": "added", "-": "removed"}.get(tag, "same"), "text": line[2:]})
    return lines


# --- charts --------------------------------------------------------------------------------------------

def _days(first: date, last: date, limit: int = 30) -> list[date]:
    """Every day from first to last (the last `limit` of them), so quiet days show as zero."""
    first = max(first, last - timedelta(days=limit - 1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _audit_link(action: str, day: date) -> str:
    """The officer's audit page filtered to one action on one day (drill-down from a chart's numbers)."""
    return "/officer/audit?" + urlencode(
        {"action": action, "since": day.isoformat(), "until": day.isoformat()}
    )


def _label(day: date) -> str:
    return f"{day.day} {day:%b}"


def consent_chart(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Grants and withdrawals per day (all purposes), from the compliance report's consent history."""
    granted = CONSENT_EVENTS[AuditAction.CONSENT_GRANTED]  # the report's words for the two events
    withdrawn = CONSENT_EVENTS[AuditAction.CONSENT_WITHDRAWN]
    per_day: dict[tuple[date, str], int] = {}
    for row in history:
        key = (date.fromisoformat(row["day"]), row["event"])
        per_day[key] = per_day.get(key, 0) + row["count"]
    today = clock.now().date()
    days = _days(min((d for d, _ in per_day), default=today), today)
    chart = Chart("consent-chart", "Consent grants and withdrawals per day",
                  "Number of consent grants and of withdrawals recorded each day, all purposes together.",
                  [_label(d) for d in days],
                  [Series("granted", [per_day.get((d, granted), 0) for d in days],
                          links=[_audit_link(AuditAction.CONSENT_GRANTED, d) for d in days]),
                   Series("withdrawn", [per_day.get((d, withdrawn), 0) for d in days],
                          links=[_audit_link(AuditAction.CONSENT_WITHDRAWN, d) for d in days])],
                  y_label="records")
    return {"svg": bar_chart(chart), "chart": chart}


def retention_chart() -> dict[str, Any]:
    """Per day: photos and results deleted by retention, and the backlog (overdue, not deleted) at its end.

    The backlog is rebuilt from the audit trail: each *.expired event carries the deadline it was deleted
    after, so an object was in the backlog from its deadline until that event; objects past their deadline
    and still held are in it now. Read from the per-day roll-ups kept as those events are appended (a row
    per day, whatever the history): since a deadline never follows its deletion, the deleted objects in the
    backlog at a day's end are those whose deadline came by then less those deleted by then.
    """
    now = clock.now()
    today = now.date()
    window_start = today - timedelta(days=29)
    actions = [AuditAction.PHOTO_EXPIRED, AuditAction.RESULT_EXPIRED]
    deleted = rollup_counts("at", actions=actions, since=window_start)
    deadlines = _summed(rollup_counts("deadline", actions=actions))
    gone = _summed(rollup_counts("gone", actions=actions))
    held = overdue_by_deadline_day(now=now)

    def upto(counts: dict[date, int], day: date) -> int:
        return sum(n for d, n in counts.items() if d <= day)

    # The chart starts at the first deletion or deadline of an object deleted within the window.
    before = window_start - timedelta(days=1)
    overdue_before = upto(deadlines, before) > upto(gone, before)
    starts = [d for d, _ in deleted] + [d for d in deadlines if d >= window_start] + (
        [window_start] if overdue_before else [])
    days = _days(min(starts, default=today), today)
    # Today ends now: every deletion so far is before it, so only what is still held counts.
    backlog: list[float] = [
        (upto(deadlines, day) - upto(gone, day) if day < today else 0) + upto(held, day) for day in days]
    chart = Chart("retention-chart", "Retention: deletions per day and the backlog",
                  "Photos and results deleted each day because their retention deadline passed, and how many "
                  "objects were past their deadline but not yet deleted at the end of each day.",
                  [_label(d) for d in days],
                  [Series("photos deleted", [deleted.get((d, AuditAction.PHOTO_EXPIRED), 0) for d in days],
                          links=[_audit_link(AuditAction.PHOTO_EXPIRED, d) for d in days]),
                   Series("results deleted", [deleted.get((d, AuditAction.RESULT_EXPIRED), 0) for d in days],
                          links=[_audit_link(AuditAction.RESULT_EXPIRED, d) for d in days]),
                   Series("backlog", backlog, colour="#a4161a")],
                  y_label="objects")
    return {"svg": bar_chart(chart), "chart": chart}


def _summed(counts: dict[tuple[date, str], int]) -> dict[date, int]:
    """(day, action) counts summed over actions."""
    out: dict[date, int] = {}
    for (day, _), n in counts.items():
        out[day] = out.get(day, 0) + n
    return out


def erasure_chart() -> dict[str, Any]:
    """Days each erasure took (or has taken so far) against the deadline."""
    now = clock.now()
    requests = list(ErasureRequest.objects.order_by("requested_at")[:30])
    deadline_days = settings.ERASURE_DEADLINE.total_seconds() / 86400
    taken = [((r.completed_at or now) - r.requested_at).total_seconds() / 86400 for r in requests]
    chart = Chart("erasure-chart", "Erasures against their deadline",
                  f"Days from request to completion for each erasure (open ones: days so far), against the "
                  f"{deadline_days:g}-day deadline.",
                  [_label(r.requested_at.date()) for r in requests],
                  [Series("days to complete", [round(t, 2) for t in taken])],
                  y_label="days", limit=deadline_days, limit_label=f"deadline {deadline_days:g} days")
    return {"svg": bar_chart(chart), "chart": chart,
            "rows": [{"requested_at": r.requested_at, "deadline": r.deadline, "status": r.status,
                      "completed_at": r.completed_at, "days": round(t, 2),
                      "overdue": erasure_status(r)["overdue"]}
                     for r, t in zip(requests, taken, strict=True)]}


def budget_chart() -> dict[str, Any]:
    """Each lineage's committed epsilon after each of its runs (on one time axis), with the cap."""
    lineages = list(Lineage.objects.order_by("name"))
    runs = list(TrainingRun.objects.select_related("lineage").order_by("created_at"))
    values: dict[int, list[float]] = {}
    for lineage in lineages:
        totals = {pk: round(t, 3) for pk, t in lineage_totals(lineage, ledger_accountant()).items()}
        current, values[lineage.pk] = 0.0, []
        for run in runs:  # carry the lineage's total across other lineages' runs
            current = totals.get(run.pk, current)
            values[lineage.pk].append(current)
    cap = max((lineage.epsilon_cap for lineage in lineages), default=settings.DP_EPSILON_CAP)
    chart = Chart("budget-chart", "Privacy budget spent per model lineage",
                  "Epsilon committed by each lineage after each training run (its runs so far under the "
                  "Rényi filter the cap checks), against the cap.",
                  [_label(r.created_at.date()) for r in runs],
                  [Series(lineage.name, values[lineage.pk]) for lineage in lineages],
                  y_label="epsilon", limit=cap, limit_label=f"cap {cap:g}")
    return {"svg": line_chart(chart), "chart": chart}


def user_epsilon_chart(runs: list[TrainingRun], *, cap: float, totals: list[float]) -> dict[str, Any]:
    """The user's epsilon per run and, after each, the Rényi filter's figure over all their runs so far
    (what their cap checks), as the privacy report gives it."""
    labels = [_label((r.finished_at or r.created_at).date()) for r in runs]
    chart = Chart("epsilon-chart", "Your privacy loss over training runs",
                  "Epsilon of each training run that used your photo, and the Rényi filter's total of all "
                  "of them so far (the figure the cap checks).",
                  labels, [Series("this run", [round(float(r.epsilon_reserved), 3) for r in runs]),
                           Series("your total", [round(float(t), 3) for t in totals])],
                  y_label="epsilon", limit=cap, limit_label=f"cap {cap:g}")
    return {"svg": line_chart(chart), "chart": chart}
