"""The audit chain: pseudonymous events linked by a keyed hash, signed checkpoints off the DB, verification.

Each event's hash is an HMAC under a key derived from the keyring (never stored in the database), so a
database writer cannot recompute the links after editing a row. Every committed append also writes a
signed checkpoint (seq, head hash, time) outside the database (checkpoints.py), so cutting the chain's end,
rewriting it wholesale or wiping it is caught by comparing with the newest checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction

from . import clock
from .checkpoints import CheckpointForged, checkpoint_latest, checkpoint_write
from .models import AuditEvent, AuditHead

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SYSTEM = "system"

# Every action the chain may record, with what it means to a reader of the trail. Appending any other
# action is a ValueError; tests/test_audit.py checks each action the code writes is listed here and used.
ACTIONS: dict[str, str] = {
    "account.created": "An account was registered",
    "account.credentials_revoked": "The user signed out everywhere: token and sessions revoked",
    "policy.published": "A new policy version was published for a purpose",
    "consent.granted": "Consent to a purpose was granted",
    "consent.withdrawn": "Consent to a purpose was withdrawn",
    "photo.uploaded": "A photo was uploaded and stored encrypted",
    "photo.content_read": "A photo's content was decrypted for its owner",
    "photo.content_read_failed": "Reading a photo's content failed (destroyed key or tampered ciphertext)",
    "photo.training_chosen": "The owner chose the photo kept for training",
    "photo.deleted": "The owner deleted a photo (retention removes it and its results)",
    "photo.expired": "Retention deleted a photo at its deadline",
    "result.expired": "Retention deleted a transformation result at its deadline",
    "result.deleted": "A transformation result was deleted with its photo",
    "result.content_read": "A transformation result's content was decrypted for its owner",
    "object.orphan_deleted": "Ciphertext that no row names was deleted after its grace period",
    "job.created": "A transformation was requested",
    "job.completed": "A transformation finished and its result was stored",
    "job.failed": "A transformation failed (the failure code says why)",
    "job.requeued": "A job whose worker was lost went back to the queue",
    "export.generated": "The user's data export was generated",
    "erasure.accepted": "An erasure was accepted: the data key is destroyed, the purge begins",
    "erasure.completed": "An erasure's purge finished; only a tombstone remains",
    "keys.rotated": "The key-encryption key was rotated and data keys re-wrapped",
    "training.reserved": "A DP training run froze its manifest and reserved its epsilon",
    "training.started": "A DP training run started",
    "training.finished": "A DP training run finished (succeeded or failed)",
    "training.refused": "A DP training run was refused after its noisy count was drawn; the count is charged",
    "training.privacy_audit": "An empirical privacy audit of the DP code was recorded",
    "model.trained": "A model version was trained without users' data (synthetic or a folder)",
    "model.promoted": "A model version was promoted to serve",
}


def pseudonym(user_id: int | None) -> str:
    """Keyed hash naming a person in the audit chain; without the keyring key it maps to nobody."""
    if user_id is None:
        return SYSTEM
    from .keys import get_keyring

    return hmac.new(get_keyring().pseudonym_key(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()


_derived: dict[tuple[bytes, bytes], bytes] = {}
# Serialises the first keyring use: opening a file keyring that does not exist yet creates it, and two
# threads doing that at once race on its temporary file.
_derive_lock = threading.Lock()


def _derive(label: bytes) -> bytes:
    """A 256-bit key for one audit use, derived (HKDF-SHA256) from the keyring's pseudonym key."""
    from .keys import get_keyring

    with _derive_lock:
        root = get_keyring().pseudonym_key()
        if (root, label) not in _derived:
            _derived[(root, label)] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=label
            ).derive(root)
        return _derived[(root, label)]


def chain_key() -> bytes:
    """The key that authenticates each link of the chain (distinct from pseudonyms and checkpoints)."""
    return _derive(b"timeveil/audit/chain/v2")


def checkpoint_key() -> bytes:
    """The key that signs checkpoints."""
    return _derive(b"timeveil/audit/checkpoint/v1")


def _event_hash(*, seq: int, at: datetime, action: str, actor: str, subject: str, object_ref: str,
                details: dict[str, Any], prev_hash: str, key: bytes | None = None) -> str:
    body = json.dumps(
        [seq, at.isoformat(), action, actor, subject, object_ref, details, prev_hash],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hmac.new(key or chain_key(), body.encode(), hashlib.sha256).hexdigest()


def audit_append(*, action: str, actor_id: int | None, subject_id: int | None = None,
                 subject: str | None = None, object_ref: str = "", details: dict[str, Any] | None = None
                 ) -> AuditEvent:
    """Append one event in the caller's transaction; the head row lock keeps the chain linear."""
    return audit_append_many([{"action": action, "actor_id": actor_id, "subject_id": subject_id,
                               "subject": subject, "object_ref": object_ref, "details": details}])[0]


def audit_append_many(entries: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events under one head lock (bulk deletions audit each object without N round trips).

    Each entry takes the keyword arguments of audit_append; every action must be a key of ACTIONS.
    """
    if not entries:
        return []
    unknown = sorted({e["action"] for e in entries} - ACTIONS.keys())
    if unknown:
        # A programming error, never a client's: the vocabulary test keeps the code's actions listed.
        raise ValueError(f"Unknown audit action(s) {unknown}: add each to governance.audit.ACTIONS.")
    key = chain_key()
    with transaction.atomic():
        head = _locked_head()
        seq, prev_hash, events = head.seq, head.hash, []
        for entry in entries:
            seq += 1
            fields = {
                "seq": seq, "at": clock.now(), "action": entry["action"],
                "actor": pseudonym(entry.get("actor_id")),
                "subject": entry["subject"] if entry.get("subject") is not None
                else pseudonym(entry.get("subject_id")),
                "object_ref": entry.get("object_ref") or "", "details": entry.get("details") or {},
                "prev_hash": prev_hash,
            }
            prev_hash = _event_hash(**fields, key=key)
            events.append(AuditEvent(**fields, hash=prev_hash))
        AuditEvent.objects.bulk_create(events)
        head.seq, head.hash = seq, prev_hash
        head.save(update_fields=["seq", "hash"])
        # After the outermost commit, never before: a checkpoint must name a state the database reached.
        transaction.on_commit(lambda: _checkpoint_committed(seq, prev_hash), robust=True)
    return events


def _checkpoint_committed(seq: int, head_hash: str) -> None:
    """Write the checkpoint for a committed head; a failure is logged, the next commit writes a newer one."""
    try:
        checkpoint_write(key=checkpoint_key(), seq=seq, head_hash=head_hash)
    except Exception:  # a full disk, an S3 outage: the commit stands; verification shows the gap if it lasts
        log.exception("could not write the audit checkpoint for seq %s", seq)


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
    reason: str | None = None  # see REASONS
    checkpoint_seq: int | None = None  # the newest signed checkpoint compared against, if any


REASONS = {
    "broken_link": "an event's sequence, previous-hash link or keyed hash does not verify",
    "head_missing": "events exist but the chain head row is gone",
    "head_mismatch": "the chain head does not match the last event (events cut from the end)",
    "truncated": "the newest signed checkpoint is past the end of the chain",
    "wiped": "a signed checkpoint exists but the chain is empty",
    "checkpoint_mismatch": "the event at the checkpoint's sequence is not the one that was signed",
    "checkpoint_forged": "a checkpoint line's signature does not verify",
    "no_checkpoint": "events exist but no signed checkpoint was ever written (AUDIT_REQUIRE_CHECKPOINT)",
}


def audit_verify(*, progress: Callable[[int], None] | None = None) -> ChainReport:
    """Recompute every keyed link, then hold the chain and its head against the newest signed checkpoint."""
    try:
        checkpoint = checkpoint_latest(key=checkpoint_key())
    except CheckpointForged:
        log.error("audit checkpoint with a bad signature", exc_info=True)
        return ChainReport(ok=False, events_checked=0, reason="checkpoint_forged")
    cp_seq = checkpoint.seq if checkpoint else None

    def fail(reason: str, checked: int, bad: int | None) -> ChainReport:
        return ChainReport(
            ok=False, events_checked=checked, first_bad_seq=bad, reason=reason, checkpoint_seq=cp_seq
        )

    # Checkpoint, then head, then events: each is read no later than what it must not be ahead of, so
    # appends committing while this runs are simply not looked at (they are past the head read here).
    head = AuditHead.objects.filter(pk=1).first()
    events = AuditEvent.objects.order_by("seq")
    if head is not None:
        events = events.filter(seq__lte=head.seq)
    key, prev_hash, expected_seq, checked, hash_at_checkpoint = chain_key(), GENESIS, 1, 0, None
    for event in events.iterator(chunk_size=2000):
        recomputed = _event_hash(seq=event.seq, at=event.at, action=event.action, actor=event.actor,
                                 subject=event.subject, object_ref=event.object_ref, details=event.details,
                                 prev_hash=event.prev_hash, key=key)
        if event.seq != expected_seq or event.prev_hash != prev_hash or not hmac.compare_digest(event.hash,
                                                                                                  recomputed):
            return fail("broken_link", checked, expected_seq)
        if event.seq == cp_seq:
            hash_at_checkpoint = event.hash
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
        if progress and checked % 1000 == 0:
            progress(1000)
    if checked == 0 and (head is None or head.seq == 0):
        if checkpoint is not None and checkpoint.seq > 0:
            return fail("wiped", 0, 1)
        return ChainReport(ok=True, events_checked=0, checkpoint_seq=cp_seq)
    if head is None:
        return fail("head_missing", checked, checked + 1)
    if head.seq != checked or head.hash != prev_hash:
        # Events were deleted from the end: the head remembers how long the chain was.
        return fail("head_mismatch", checked, min(head.seq, checked) + 1)
    if checkpoint is None:
        if settings.AUDIT_REQUIRE_CHECKPOINT:
            return fail("no_checkpoint", checked, None)
    elif checkpoint.seq > checked:
        # Cut from the end with the head moved back to match: only the checkpoint outside remembers.
        return fail("truncated", checked, checked + 1)
    elif hash_at_checkpoint != checkpoint.hash:
        return fail("checkpoint_mismatch", checked, checkpoint.seq)
    return ChainReport(ok=True, events_checked=checked, checkpoint_seq=cp_seq)
