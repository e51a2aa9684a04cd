"""The audit hash chain: pseudonymous events appended under a lock, and verification of the whole chain."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from . import clock
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64
SYSTEM = "system"


def pseudonym(user_id: int | None) -> str:
    """Keyed hash naming a person in the audit chain; without the keyring key it maps to nobody."""
    if user_id is None:
        return SYSTEM
    from .keys import get_keyring

    return hmac.new(get_keyring().pseudonym_key(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()


def _event_hash(*, seq: int, at: datetime, action: str, actor: str, subject: str, object_ref: str,
                details: dict[str, Any], prev_hash: str) -> str:
    body = json.dumps(
        [seq, at.isoformat(), action, actor, subject, object_ref, details, prev_hash],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def audit_append(*, action: str, actor_id: int | None, subject_id: int | None = None,
                 subject: str | None = None, object_ref: str = "", details: dict[str, Any] | None = None
                 ) -> AuditEvent:
    """Append one event in the caller's transaction; the head row lock keeps the chain linear."""
    return audit_append_many([{"action": action, "actor_id": actor_id, "subject_id": subject_id,
                               "subject": subject, "object_ref": object_ref, "details": details}])[0]


def audit_append_many(entries: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events under one head lock (bulk deletions audit each object without N round trips).

    Each entry takes the keyword arguments of audit_append.
    """
    if not entries:
        return []
    with transaction.atomic():
        head = _locked_head()
        seq, prev_hash, events = head.seq, head.hash, []
        for entry in entries:
            seq += 1
            fields = {
                "seq": seq, "at": clock.now(), "action": entry["action"], "actor": pseudonym(entry.get("actor_id")),
                "subject": entry["subject"] if entry.get("subject") is not None
                else pseudonym(entry.get("subject_id")),
                "object_ref": entry.get("object_ref") or "", "details": entry.get("details") or {},
                "prev_hash": prev_hash,
            }
            prev_hash = _event_hash(**fields)
            events.append(AuditEvent(**fields, hash=prev_hash))
        AuditEvent.objects.bulk_create(events)
        head.seq, head.hash = seq, prev_hash
        head.save(update_fields=["seq", "hash"])
    return events


def _locked_head() -> AuditHead:
    """Lock the chain head row, creating it on the very first append (a racing creator just retries)."""
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        try:
            with transaction.atomic():
                AuditHead.objects.create(pk=1, seq=0, hash=GENESIS)
        except IntegrityError:
            pass  # another request created it first; lock theirs
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events_checked: int
    first_bad_seq: int | None = None


def audit_verify(*, progress: Callable[[int], None] | None = None) -> ChainReport:
    """Recompute every link: sequence continuity, previous-hash linkage and each event's own hash."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        recomputed = _event_hash(seq=event.seq, at=event.at, action=event.action, actor=event.actor,
                                 subject=event.subject, object_ref=event.object_ref, details=event.details,
                                 prev_hash=event.prev_hash)
        if event.seq != expected_seq or event.prev_hash != prev_hash or event.hash != recomputed:
            return ChainReport(ok=False, events_checked=checked, first_bad_seq=expected_seq)
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
        if progress and checked % 1000 == 0:
            progress(1000)
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        # Events were deleted from the end: the head remembers how long the chain was.
        return ChainReport(ok=False, events_checked=checked, first_bad_seq=checked + 1)
    return ChainReport(ok=True, events_checked=checked)
