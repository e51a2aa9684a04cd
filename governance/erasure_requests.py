"""Erasure requests: accept (the data key destroyed at once), receipts, status, the purge to a tombstone."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction

from . import clock
from .audit import audit_append, pseudonym
from .audit_actions import AuditAction
from .errors import NotFound
from .keys import data_key_destroy
from .models import ErasureRequest, ErasureStatus
from .training import training_digests_erase


def _receipt_hash(receipt: str) -> str:
    return hashlib.sha256(receipt.encode()).hexdigest()


def erasure_accept(*, user_id: int) -> tuple[ErasureRequest, str]:
    """Record the request and destroy the user's data key in one transaction; returns (tombstone, receipt).

    From the commit on, every ciphertext of the user is unreadable. The receipt is shown once and kept
    only as a hash, so the tombstone cannot be walked back to whoever holds it.
    """
    receipt = secrets.token_urlsafe(32)
    now = clock.now()
    with transaction.atomic():
        request = ErasureRequest.objects.create(
            receipt_sha256=_receipt_hash(receipt), subject=pseudonym(user_id), user_id=user_id,
            requested_at=now, deadline=now + settings.ERASURE_DEADLINE,
        )
        data_key_destroy(user_id=user_id)
        training_digests_erase(user_id=user_id)  # a later copy of their photo is no longer linked to them
        audit_append(action=AuditAction.ERASURE_ACCEPTED, actor_id=user_id, subject_id=user_id,
                     object_ref=f"erasure:{request.public_id}",
                     details={"deadline": request.deadline.isoformat()})
    return request, receipt


def erasure_by_receipt(receipt: str) -> ErasureRequest:
    """The tombstone for a receipt, or 404."""
    request = ErasureRequest.objects.filter(receipt_sha256=_receipt_hash(receipt)).first()
    if request is None:
        raise NotFound("No erasure request has that receipt.")
    return request


def erasure_status(request: ErasureRequest) -> dict[str, Any]:
    """Status only: no personal data, not even the pseudonym."""
    return {
        "status": request.status,
        "requested_at": request.requested_at.isoformat(),
        "deadline": request.deadline.isoformat(),
        "purge_started_at": request.purge_started_at.isoformat() if request.purge_started_at else None,
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "overdue": request.status != ErasureStatus.DONE and clock.now() > request.deadline,
    }


def erasure_mark_purging(request: ErasureRequest) -> None:
    """Note a purge attempt starting."""
    request.status = ErasureStatus.PURGING
    request.purge_started_at = request.purge_started_at or clock.now()
    request.attempts += 1
    request.save(update_fields=["status", "purge_started_at", "attempts"])


def erasure_mark_failed(request: ErasureRequest, error: str) -> None:
    """Keep the request purging and note why; the next run retries."""
    request.last_error = error[:200]
    request.save(update_fields=["last_error"])


def erasure_complete(request: ErasureRequest, *, counts: dict[str, int]) -> None:
    """Finish: the user row is gone, only the tombstone and pseudonymous audit chain remain."""
    with transaction.atomic():
        request.status = ErasureStatus.DONE
        request.completed_at = clock.now()
        request.counts = counts
        request.user_id = None
        request.last_error = ""
        request.save(update_fields=["status", "completed_at", "counts", "user_id", "last_error"])
        audit_append(action=AuditAction.ERASURE_COMPLETED, actor_id=None, subject=request.subject,
                     object_ref=f"erasure:{request.public_id}", details={"counts": counts})
