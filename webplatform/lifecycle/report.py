"""The compliance report: retention backlog, erasures against deadlines, consent counts, the audit chain."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncDate

from governance import clock
from governance.audit import audit_verify_recent, checkpoint_lag
from governance.audit_results import audit_full_latest
from governance.erasure_requests import erasure_status
from governance.models import ConsentRecord, ErasureRequest, Lineage
from governance.training import lineage_committed_epsilon
from webplatform.jobs.models import TransformationResult
from webplatform.photos.models import Photo

from .retention import retention_backlog


def compliance_report(*, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything an officer needs to show the platform keeps its promises; never personal data or content."""
    now = clock.now()
    return {
        "generated_at": now.isoformat(),
        "retention": {
            "backlog": retention_backlog(now=now),
            "held": {"photo": Photo.objects.count(), "result": TransformationResult.objects.count()},
        },
        "erasures": [{"id": r.pk, **erasure_status(r), "attempts": r.attempts, "last_error": r.last_error,
                      "counts": r.counts} for r in ErasureRequest.objects.order_by("requested_at")],
        "consent": _consent_counts(),
        "audit": _audit(),
        "training": _training(),
        **(extra or {}),
    }


def _audit() -> dict[str, Any]:
    """The chain's end checked now, the newest full verification (scheduled; when, up to which seq, ok or the
    first bad seq; None before its first run) and the checkpoint lag. `ok`: no check found anything."""
    recent, full, lag = audit_verify_recent(), audit_full_latest(), checkpoint_lag()
    return {
        "ok": recent.ok and (full is None or full.ok) and not lag.too_old,
        "events_checked": recent.events_checked, "first_bad_seq": recent.first_bad_seq,
        "reason": recent.reason,
        "full_verification": None if full is None else {
            "at": full.at.isoformat(), "ok": full.ok, "verified_through": full.verified_through,
            "events_checked": full.events_checked, "first_bad_seq": full.first_bad_seq, "reason": full.reason,
            "seconds": full.seconds},
        "checkpoint_lag": {"events": lag.events, "seconds": round(lag.seconds, 1), "too_old": lag.too_old,
                           "bound_seconds": settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS},
    }


def _training() -> dict[str, Any]:
    """Each lineage's budget (cap, committed, left) and its runs, newest first."""
    lineages = []
    for lineage in Lineage.objects.order_by("name"):
        committed = lineage_committed_epsilon(lineage)
        lineages.append({
            "lineage": lineage.name, "epsilon_cap": lineage.epsilon_cap, "delta": lineage.delta,
            "epsilon_committed": committed, "epsilon_remaining": max(lineage.epsilon_cap - committed, 0.0),
            "runs": [{"id": str(r.id), "status": r.status, "created_at": r.created_at.isoformat(),
                      "participants": r.participants, "manifest_sha256": r.manifest_sha256,
                      "epsilon_reserved": r.epsilon_reserved, "epsilon_spent": r.epsilon_spent,
                      "delta": r.delta, "model_version": r.model_version}
                     for r in lineage.runs.order_by("-created_at")],
        })
    return {"lineages": lineages}


def _consent_counts() -> dict[str, Any]:
    """Grants and withdrawals per purpose, policy version and day; and who holds active consent now."""
    by_day = (ConsentRecord.objects.annotate(day=TruncDate("at"))
              .values("purpose__slug", "policy__version", "day", "granted")
              .annotate(n=Count("id")).order_by("day", "purpose__slug", "policy__version"))
    history = [
        {
            "purpose": r["purpose__slug"],
            "policy_version": r["policy__version"],
            "day": r["day"].isoformat(),
            "event": "granted" if r["granted"] else "withdrawn",
            "count": r["n"],
        }
        for r in by_day
    ]
    active: dict[str, int] = {}
    latest: dict[tuple[int, int], ConsentRecord] = {}
    for record in ConsentRecord.objects.select_related("purpose", "policy").order_by("at", "pk").iterator():
        latest[(record.user_id, record.purpose_id)] = record
    for record in latest.values():
        if record.granted:
            key = f"{record.purpose.slug}/v{record.policy.version}"
            active[key] = active.get(key, 0) + 1
    return {"active_now": active, "history": history}
