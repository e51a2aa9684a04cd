"""Lifecycle tasks: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task

from governance.audit import audit_drain
from governance.audit_results import audit_verify_full_and_record

from .erasure import PurgeIncomplete, erasure_purge, erasures_pending
from .retention import orphans_reconcile, retention_enforce


@shared_task(bind=True, max_retries=None)
def erasure_purge_task(self, request_id: int) -> None:
    try:
        erasure_purge(request_id=request_id)
    except PurgeIncomplete as exc:
        if self.request.is_eager:
            return  # embedded mode: the periodic retention job retries; never fail the user's request
        raise self.retry(exc=exc, countdown=min(3600, 30 * 2**self.request.retries)) from exc


@shared_task
def retention_enforce_task() -> dict:
    """The periodic job: enforce retention, retry any erasure purge left unfinished (or never queued because
    the broker was down), then delete ciphertext that no row claims."""
    report = retention_enforce()
    for request_id in erasures_pending():
        try:
            erasure_purge(request_id=request_id)
        except PurgeIncomplete:
            pass  # counted on the tombstone; the next run tries again
    return {"deleted": report.deleted, "failed": report.failed, "orphans_deleted": orphans_reconcile()}


@shared_task
def audit_verify_task() -> dict:
    """The periodic full verification of the audit chain; its signed result is what pages show."""
    row = audit_verify_full_and_record()
    return {"ok": row.ok, "reason": row.reason, "first_bad_seq": row.first_bad_seq,
            "verified_through": row.verified_through}


@shared_task
def audit_drain_task() -> dict:
    """The backstop of group commit: chain events whose action committed but whose own drain never ran."""
    return {"chained": audit_drain()}
