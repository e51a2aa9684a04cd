"""The compliance report: retention backlog, erasures against deadlines, consent counts, the audit chain."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from governance import clock
from governance.audit import audit_verify_recent, checkpoint_lag
from governance.audit_actions import AuditAction
from governance.audit_results import audit_full_latest
from governance.erasure_requests import erasure_status
from governance.models import AuditEvent, ConsentRecord, ErasureRequest, Lineage
from governance.training import lineage_committed_epsilon
from webplatform.jobs.models import TransformationResult
from webplatform.photos.models import Photo
from webplatform.training.ledger import ledger_accountant

from .retention import retention_backlog

# The audit actions a consent change writes, and the event each is counted as (keyed by the stored text the
# trail's rows hold, which each member is).
CONSENT_EVENTS: dict[str, str] = {
    AuditAction.CONSENT_GRANTED: "granted", AuditAction.CONSENT_WITHDRAWN: "withdrawn"}


def compliance_report(*, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything an officer needs to show the platform keeps its promises; never personal data or content."""
    now = clock.now()
    return {
        "generated_at": now.isoformat(),
        "retention": {
            "backlog": retention_backlog(now=now),
            "held": {"photo": Photo.objects.count(), "result": TransformationResult.objects.count()},
        },
        "erasures": [{"id": str(r.public_id), **erasure_status(r), "attempts": r.attempts,
                      "last_error": r.last_error, "counts": r.counts}
                     for r in ErasureRequest.objects.order_by("requested_at")],
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
        "full_verification": None if full is None else full.as_json(),
        "checkpoint_lag": {"events": lag.events, "seconds": round(lag.seconds, 1), "too_old": lag.too_old,
                           "bound_seconds": settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS},
    }


def _training() -> dict[str, Any]:
    """Each lineage's budget (cap, committed, left) and its runs, newest first."""
    lineages = []
    for lineage in Lineage.objects.order_by("name"):
        committed = lineage_committed_epsilon(lineage, ledger_accountant())  # the Rényi filter's
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
    """Grants and withdrawals per purpose, policy version and day; and who holds active consent now.

    The history is counted from the audit trail, which erasure never rewrites: an erased person's consent
    records are deleted, but their grants and withdrawals still count (a count names nobody).
    """
    counts: dict[tuple[str, str, int | None, str], int] = {}
    events = AuditEvent.objects.filter(action__in=CONSENT_EVENTS).values_list("at", "action", "details")
    for at, action, details in events.iterator(chunk_size=2000):
        key = (timezone.localdate(at).isoformat(), str((details or {}).get("purpose", "")),
               (details or {}).get("policy_version"), CONSENT_EVENTS[action])
        counts[key] = counts.get(key, 0) + 1
    history = [{"purpose": purpose, "policy_version": version, "day": day, "event": event, "count": n}
               for (day, purpose, version, event), n in sorted(counts.items(), key=lambda kv: (
                   kv[0][0], kv[0][1], kv[0][2] or 0, kv[0][3]))]
    active: dict[str, int] = {}
    latest: dict[tuple[int, int], ConsentRecord] = {}
    for record in ConsentRecord.objects.select_related("purpose", "policy").order_by("at", "pk").iterator():
        latest[(record.user_id, record.purpose_id)] = record
    for record in latest.values():
        if record.granted:
            name = f"{record.purpose.slug}/v{record.policy.version}"
            active[name] = active.get(name, 0) + 1
    return {"active_now": active, "history": history}
