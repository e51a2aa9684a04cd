"""The full chain verification as a scheduled job, and its stored, signed result for pages to show.

A full walk is linear in history (a million events take about a minute), so no page load runs it: the
scheduler does (Celery beat at scale, the embedded thread in `make run`), and pages show the newest result
beside a check of the chain's end (audit.audit_verify_recent). The row is signed with the checkpoint key:
a database writer can delete or replay rows (an old result keeps its old time), not plant an "intact" one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime

from . import clock
from .audit import audit_verify, checkpoint_key
from .models import AuditHead, AuditVerification


@dataclass(frozen=True)
class FullResult:
    at: datetime
    ok: bool
    reason: str | None
    first_bad_seq: int | None
    events_checked: int
    verified_through: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        """What the API and the compliance report show of it."""
        return {"at": self.at.isoformat(), "ok": self.ok, "verified_through": self.verified_through,
                "events_checked": self.events_checked, "first_bad_seq": self.first_bad_seq,
                "reason": self.reason, "seconds": self.seconds}


def _mac(row: AuditVerification) -> str:
    fields = [row.at.isoformat(), row.ok, row.reason, row.first_bad_seq, row.events_checked,
              row.verified_through, row.checkpoint_seq, row.checkpoints_checked]
    return hmac.new(checkpoint_key(), repr(fields).encode(), hashlib.sha256).hexdigest()


def audit_verify_full_and_record() -> AuditVerification:
    """Walk the whole chain and every checkpoint, then store the signed result (the scheduled job)."""
    head_seq = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    started = time.perf_counter()
    report = audit_verify()
    row = AuditVerification(
        at=clock.now(), ok=report.ok, reason=report.reason or "", first_bad_seq=report.first_bad_seq,
        events_checked=report.events_checked,
        verified_through=head_seq if report.ok else max(0, (report.first_bad_seq or 1) - 1),
        checkpoint_seq=report.checkpoint_seq, checkpoints_checked=report.checkpoints_checked,
        seconds=round(time.perf_counter() - started, 3))
    row.mac = _mac(row)
    row.save()
    return row


def audit_full_latest() -> FullResult | None:
    """The newest stored full verification whose signature holds (None: never run, or none is genuine)."""
    for row in AuditVerification.objects.order_by("-at", "-pk")[:10]:
        if hmac.compare_digest(row.mac, _mac(row)):
            return FullResult(at=row.at, ok=row.ok, reason=row.reason or None,
                              first_bad_seq=row.first_bad_seq, events_checked=row.events_checked,
                              verified_through=row.verified_through, seconds=row.seconds)
    return None
