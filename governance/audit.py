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
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NotRequired, TypedDict

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from . import clock
from .audit_actions import KNOWN_ACTIONS, AuditAction
from .audit_rollups import rollup_add
from .checkpoints import (
    Checkpoint,
    CheckpointForged,
    checkpoint_all,
    checkpoint_latest,
    checkpoint_tail,
    checkpoint_write,
)
from .keys import get_keyring
from .models import AuditEvent, AuditHead, AuditPending

log = logging.getLogger(__name__)

GENESIS = "0" * 64
SYSTEM = "system"


def pseudonym(user_id: int | None) -> str:
    """Keyed hash naming a person in the audit chain; without the keyring key it maps to nobody."""
    if user_id is None:
        return SYSTEM
    return hmac.new(get_keyring().pseudonym_key(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()


_derived: dict[tuple[bytes, bytes], bytes] = {}
# Serialises the first keyring use: opening a file keyring that does not exist yet creates it, and two
# threads doing that at once race on its temporary file.
_derive_lock = threading.Lock()


def _derive(label: bytes) -> bytes:
    """A 256-bit key for one audit use, derived (HKDF-SHA256) from the keyring's pseudonym key."""
    with _derive_lock:
        root = get_keyring().pseudonym_key()
        if (root, label) not in _derived:
            _derived[(root, label)] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=label
            ).derive(root)
        return _derived[(root, label)]


def image_digest_key() -> bytes:
    """The key of training photos' perceptual-hash digests (governance.training): in the keyring, never in
    the database beside them, so a stored digest cannot be matched against a guessed image without it."""
    return _derive(b"timeveil/training/image-digest/v1")


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


class AuditEntry(TypedDict):
    """One event for audit_append_many: audit_append's keyword arguments."""

    action: AuditAction
    actor_id: int | None
    subject_id: NotRequired[int | None]
    subject: NotRequired[str | None]
    object_ref: NotRequired[str]
    details: NotRequired[dict[str, Any] | None]


def audit_append(*, action: AuditAction, actor_id: int | None, subject_id: int | None = None,
                 subject: str | None = None, object_ref: str = "", details: dict[str, Any] | None = None,
                 chained: bool = False) -> AuditEvent:
    """Append one event in the caller's transaction (queued or chained: see audit_append_many)."""
    return audit_append_many([{"action": action, "actor_id": actor_id, "subject_id": subject_id,
                               "subject": subject, "object_ref": object_ref, "details": details}],
                             chained=chained)[0]


def audit_append_many(entries: list[AuditEntry], *, chained: bool = False) -> list[AuditEvent]:
    """Append several events (bulk deletions audit each object without N round trips).

    Each entry takes the keyword arguments of audit_append; every action must be an AuditAction.
    With AUDIT_GROUP_COMMIT (and not `chained`) the events are queued in the caller's transaction, which
    commits or rolls back with them, and chained by audit_drain once it commits: the returned events then
    have no seq or hash yet. `chained=True` chains them here, under the head lock held to the commit, for a
    caller that needs their seq.
    """
    if not entries:
        return []
    unknown = sorted({str(e["action"]) for e in entries} - KNOWN_ACTIONS)
    if unknown:
        # A programming error, never a client's: mypy refuses a str where the enum is due; this catches
        # callers it does not check.
        raise ValueError(f"Unknown audit action(s) {unknown}: add each to governance.audit_actions.")
    rows = [{
        # The member's value, as plain text: what is stored, hashed and signed is the string it always was
        "at": clock.now(), "action": str(entry["action"]), "actor": pseudonym(entry.get("actor_id")),
        "subject": entry["subject"] if entry.get("subject") is not None
        else pseudonym(entry.get("subject_id")),
        "object_ref": entry.get("object_ref") or "", "details": entry.get("details") or {},
    } for entry in entries]
    if settings.AUDIT_GROUP_COMMIT and not chained:
        key = pending_key()
        # No savepoint: a queue row that cannot be written fails the action's whole transaction, never the
        # event alone (and spares two round trips on every audited action)
        with transaction.atomic(savepoint=False):
            AuditPending.objects.bulk_create(
                [AuditPending(**row, mac=_pending_mac(row, key)) for row in rows])
            # Once the action's transaction commits (now, outside one): chain its events and anyone's queued.
            transaction.on_commit(_drain_committed, robust=True)
        return [AuditEvent(**row) for row in rows]
    with transaction.atomic():
        return _chain(_locked_head(), rows)


def _chain(head: AuditHead, rows: list[dict[str, Any]]) -> list[AuditEvent]:
    """Link `rows` (event fields less seq and hashes) after the locked head, move it, and checkpoint the new
    head once the outermost transaction commits."""
    key = chain_key()
    seq, prev_hash, events = _next_free(head, len(rows)), head.hash, []
    for row in rows:
        seq += 1
        fields = {**row, "seq": seq, "prev_hash": prev_hash}
        prev_hash = _event_hash(**fields, key=key)
        events.append(AuditEvent(**fields, hash=prev_hash))
    AuditEvent.objects.bulk_create(events)
    rollup_add(events)
    head.seq, head.hash = seq, prev_hash
    head.save(update_fields=["seq", "hash"])
    # After the outermost commit, never before: a checkpoint must name a state the database reached.
    transaction.on_commit(lambda: _checkpoint_committed(seq, prev_hash), robust=True)
    return events


def pending_key() -> bytes:
    """The key that signs queued events (group commit), so a row planted in the queue is never chained."""
    return _derive(b"timeveil/audit/pending/v1")


def _pending_mac(row: dict[str, Any], key: bytes) -> str:
    at = row["at"].isoformat() if isinstance(row["at"], datetime) else str(row["at"])
    body = json.dumps([at, row["action"], row["actor"], row["subject"], row["object_ref"], row["details"]],
                      sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def audit_drain() -> int:
    """The sequencer: chain every queued event, oldest first, in batches of AUDIT_DRAIN_BATCH, each batch in
    one transaction under the drain lock and the head lock (the queue rows leave and the events enter
    together; a crash leaves them queued). Whoever holds the drain lock chains everyone's queue, so
    concurrent actions share one chaining commit; an action that finds the lock taken returns at once.

    No event is left behind by that: the holder looks at the queue again after each commit has released the
    lock and goes on while anything is queued. An action that found the lock taken had committed its row
    before that, so the holder's next look sees it. After AUDIT_DRAIN_ROUNDS batches a holder stops (a
    request never drains forever under load); what is left is the next commit's, or the scheduled
    audit_drain_task's. A row whose signature fails (written or edited in the queue by a database writer) is
    not chained: an `audit.pending_refused` event naming its id is, and the row goes. Returns the events
    chained."""
    key, chained = pending_key(), 0
    for _ in range(settings.AUDIT_DRAIN_ROUNDS):
        if not _drain_free():
            return chained  # one round trip, no transaction: the usual answer under load
        with transaction.atomic():
            if not _drain_lock():
                return chained  # the holder's next look, after it releases the lock, sees our rows
            # Taken after the lock, in one round trip: the queue as of now, every action committed so far
            queued = _take_queued(settings.AUDIT_DRAIN_BATCH)
            if queued:
                chained += _chain_queued(queued, key)
        if not AuditPending.objects.exists():
            return chained
    return chained


def _take_queued(batch: int) -> list[AuditPending]:
    """The oldest `batch` queued events, deleted and returned in one statement (in the drain's transaction:
    a rollback leaves them queued), oldest first."""
    table = connection.ops.quote_name(AuditPending._meta.db_table)
    taken = AuditPending.objects.raw(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s) "
        "RETURNING id, at, action, actor, subject, object_ref, details, mac", [batch])
    return sorted(taken, key=lambda pending: pending.id)


def _chain_queued(queued: list[AuditPending], key: bytes) -> int:
    rows = []
    for pending in queued:
        row = {"at": pending.at, "action": pending.action, "actor": pending.actor, "subject": pending.subject,
               "object_ref": pending.object_ref, "details": pending.details}
        if pending.action in KNOWN_ACTIONS and hmac.compare_digest(pending.mac, _pending_mac(row, key)):
            rows.append(row)
        else:
            log.error("audit queue row %s has a bad signature: refused, not chained", pending.id)
            rows.append({"at": clock.now(), "action": str(AuditAction.AUDIT_PENDING_REFUSED), "actor": SYSTEM,
                         "subject": SYSTEM, "object_ref": f"pending:{pending.id}", "details": {}})
    # The signatures checked first: the head row (also locked by appends chained in their own transaction)
    # is held only for the chaining
    _chain(_locked_head(), rows)
    return len(rows)


# pg_try_advisory_xact_lock's key for the sequencer: one drainer at a time, and the others do not wait.
DRAIN_LOCK_ID = 0x5449_4D45_5645_494C  # "TIMEVEIL"


def _drain_free() -> bool:
    """Whether no one holds the drain lock now: outside a transaction, pg_try_advisory_xact_lock takes and
    releases it in one statement, so an action that finds it held returns after one round trip instead of a
    transaction's three. In a transaction (or on SQLite) it says free and _drain_lock decides."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DRAIN_LOCK_ID])
        return bool(cursor.fetchone()[0])


def _drain_lock() -> bool:
    """Take the drain lock until the transaction ends, if free (PostgreSQL); SQLite has one writer anyway."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DRAIN_LOCK_ID])
        return bool(cursor.fetchone()[0])


def _drain_committed() -> None:
    """Chain after an action commits. A failure is logged: its events stay queued for the next drain (any
    action's, or the scheduled audit_drain_task), and the checkpoint lag counts them meanwhile."""
    try:
        audit_drain()
    except Exception:
        log.exception("could not chain the queued audit events; they stay queued for the next drain")


def _checkpoint_committed(seq: int, head_hash: str) -> None:
    """Write the checkpoint for a committed head; a failure is logged, the next commit writes a newer one."""
    try:
        checkpoint_write(key=checkpoint_key(), seq=seq, head_hash=head_hash)
    except Exception:  # a full disk, an S3 outage: the commit stands; verification shows the gap if it lasts
        log.exception("could not write the audit checkpoint for seq %s", seq)


def _next_free(head: AuditHead, count: int) -> int:
    """The seq to append after: the head, unless rows a database writer planted occupy the seqs this append
    needs (inserting on top of them would fail every audited request): then past those. Such rows fall inside
    the chain, where verification names the first as `broken_link`; rows planted further out stay past the
    head, never listed, reported as `past_head`."""
    base = head.seq
    while (blocking := AuditEvent.objects.filter(seq__gt=base, seq__lte=base + count).order_by("-seq")
           .values_list("seq", flat=True).first()) is not None:
        log.error("audit rows planted past the head (seq %s, head %s): appending after them",
                  blocking, head.seq)
        base = blocking
    return base


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
    checkpoints_checked: int = 0  # signed checkpoints held against the chain
    checkpoint_lag: int = 0  # events past the newest checkpoint or still queued (not yet anchored outside)
    full: bool = True  # False: only the chain's end was checked (audit_verify_recent)
    checked_from: int = 1  # the first seq this check walked (a signed checkpoint's, for the chain's end)


REASONS = {
    "broken_link": "an event's sequence, previous-hash link or keyed hash does not verify",
    "head_missing": "events exist but the chain head row is gone",
    "head_mismatch": "the chain head does not match the last event (events cut from the end)",
    "past_head": "events are stored past the chain head (rows planted, or the head moved back)",
    "truncated": "a signed checkpoint is past the end of the chain",
    "wiped": "a signed checkpoint exists but the chain is empty",
    "checkpoint_mismatch": "the event at a checkpoint's sequence is not the one that was signed",
    "checkpoint_conflict": "two signed checkpoints name different hashes for one sequence (a rollback)",
    "checkpoint_forged": "a checkpoint line's signature does not verify",
    "checkpoint_lag": "events stayed unanchored by any checkpoint past AUDIT_CHECKPOINT_MAX_LAG_SECONDS",
    "no_checkpoint": "events exist but no signed checkpoint was ever written (AUDIT_REQUIRE_CHECKPOINT)",
}


@dataclass(frozen=True)
class _Signed:
    """Checkpoints as sorted arrays (40 bytes each, so a million fit in 40 MB), and what they disagree on."""

    seqs: np.ndarray  # ascending
    hashes: bytes  # 32 raw bytes per checkpoint, in the order of `seqs`
    conflicts: frozenset[int]  # seqs signed with two different hashes
    newest: Checkpoint | None

    def hash_at(self, i: int) -> bytes:
        return self.hashes[32 * i:32 * i + 32]


def _signed(checkpoints: Iterable[Checkpoint]) -> _Signed:
    seqs, raw, newest = array("q"), bytearray(), None
    for checkpoint in checkpoints:
        seqs.append(checkpoint.seq)
        raw += _raw_hash(checkpoint.hash)
        if newest is None or checkpoint.seq > newest.seq:
            newest = checkpoint
    unsorted = np.frombuffer(seqs, dtype=np.int64) if seqs else np.zeros(0, dtype=np.int64)
    order = np.argsort(unsorted, kind="stable")
    ordered = b"".join(raw[32 * int(i):32 * int(i) + 32] for i in order)
    sorted_seqs = unsorted[order]
    conflicts = {int(sorted_seqs[i]) for i in np.nonzero(sorted_seqs[1:] == sorted_seqs[:-1])[0]
                 if ordered[32 * i:32 * i + 32] != ordered[32 * (i + 1):32 * (i + 2)]}
    return _Signed(sorted_seqs, ordered, frozenset(conflicts), newest)


def _raw_hash(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else b"\xff" * 32  # matches no event (event hashes are 64 hex digits)


def audit_verify(*, progress: Callable[[int], None] | None = None) -> ChainReport:
    """Every keyed link from the first event to the head, every signed checkpoint held against the chain
    (and against each other), rows past the head, and the checkpoint lag. Linear in events + checkpoints."""
    key = checkpoint_key()
    try:
        signed = _signed(checkpoint_all(key=key))
    except CheckpointForged:
        log.error("audit checkpoint with a bad signature", exc_info=True)
        return ChainReport(ok=False, events_checked=0, reason="checkpoint_forged")
    return _verify(signed, start=None, progress=progress)


def audit_verify_recent() -> ChainReport:
    """The chain's end only: from the oldest of the newest checkpoints (checkpoint_tail, a few hundred) to the
    head, each of those checkpoints held against the chain. Cost: the events since that checkpoint, not all
    of history; what lies before it is the scheduled full verification's (audit_results)."""
    key = checkpoint_key()
    try:
        signed = _signed(checkpoint_tail(key=key, near=_head_seq()))
    except CheckpointForged:
        log.error("audit checkpoint with a bad signature", exc_info=True)
        return ChainReport(ok=False, events_checked=0, reason="checkpoint_forged", full=False)
    start = int(signed.seqs[0]) if len(signed.seqs) else None
    if start is None and settings.AUDIT_REQUIRE_CHECKPOINT and AuditEvent.objects.exists():
        return ChainReport(ok=False, events_checked=0, reason="no_checkpoint", full=False)
    report = _verify(signed, start=start, progress=None)
    return report if report.full or start is None else replace(report, checked_from=start)


def _verify(signed: _Signed, *, start: int | None, progress: Callable[[int], None] | None) -> ChainReport:
    """Walk the links from `start` (a signed checkpoint's seq; None: the first event) to the head."""
    cp_seq = signed.newest.seq if signed.newest else None
    counted = {"checked": 0, "checkpoints": 0}

    def fail(reason: str, bad: int | None) -> ChainReport:
        return ChainReport(ok=False, events_checked=counted["checked"], first_bad_seq=bad, reason=reason,
                           checkpoint_seq=cp_seq, checkpoints_checked=counted["checkpoints"],
                           full=start is None)

    # Checkpoints, then head, then events: each is read no later than what it must not be ahead of, so
    # appends committing while this runs are simply not looked at (they are past the head read here).
    head = AuditHead.objects.filter(pk=1).first()
    if start is not None and head is not None and start > head.seq:
        return fail("truncated", head.seq + 1)  # every recent checkpoint is past the head: the end was cut
    if head is None:
        start = None  # head_missing or wiped: the whole walk tells which
    events = AuditEvent.objects.order_by("seq").values_list(
        "seq", "at", "action", "actor", "subject", "object_ref", "details", "prev_hash", "hash")
    if head is not None:
        events = events.filter(seq__lte=head.seq)
    if start is not None:
        events = events.filter(seq__gte=start)
    key, seqs, n = chain_key(), signed.seqs, len(signed.seqs)
    prev_hash: str | None = GENESIS if start is None else None  # from a checkpoint: its signed hash binds it
    expected_seq, k, last_seq = start or 1, 0, 0
    for seq, at, action, actor, subject, object_ref, details, event_prev, event_hash in events.iterator(
            chunk_size=2000):
        recomputed = _event_hash(seq=seq, at=at, action=action, actor=actor, subject=subject,
                                 object_ref=object_ref, details=details, prev_hash=event_prev, key=key)
        linked = prev_hash is None or event_prev == prev_hash
        if seq != expected_seq or not linked or not hmac.compare_digest(event_hash, recomputed):
            return fail("broken_link", expected_seq)
        while k < n and seqs[k] < seq:
            k += 1  # signed for a seq below the walk's start
        while k < n and seqs[k] == seq:
            if seq in signed.conflicts:
                return fail("checkpoint_conflict", seq)
            if not hmac.compare_digest(signed.hash_at(k), _raw_hash(event_hash)):
                return fail("checkpoint_mismatch", seq)
            counted["checkpoints"] += 1
            k += 1
        prev_hash, expected_seq, last_seq = event_hash, seq + 1, seq
        counted["checked"] += 1
        if progress and counted["checked"] % 1000 == 0:
            progress(1000)
    checked = counted["checked"]
    if checked == 0 and (head is None or head.seq == 0):
        if cp_seq is not None and cp_seq > 0:
            return fail("wiped", 1)
        return _past_head(fail) or ChainReport(ok=True, events_checked=0, checkpoint_seq=cp_seq,
                                               full=start is None)
    if head is None:
        return fail("head_missing", last_seq + 1)
    if head.seq != last_seq or head.hash != prev_hash:
        # Events were deleted from the end: the head remembers how long the chain was.
        return fail("head_mismatch", min(head.seq, last_seq) + 1)
    if k < n:
        # Cut from the end with the head moved back to match: only the checkpoints outside remember.
        if any(int(s) in signed.conflicts for s in seqs[k:]):
            return fail("checkpoint_conflict", int(min(s for s in seqs[k:] if int(s) in signed.conflicts)))
        return fail("truncated", last_seq + 1)
    if (planted := _past_head(fail)) is not None:
        return planted
    if signed.newest is None:
        if settings.AUDIT_REQUIRE_CHECKPOINT:
            return fail("no_checkpoint", None)
        return ChainReport(ok=True, events_checked=checked, full=start is None)
    lag = checkpoint_lag(head_seq=head.seq, checkpoint=signed.newest)
    report = ChainReport(ok=True, events_checked=checked, checkpoint_seq=cp_seq,
                         checkpoints_checked=counted["checkpoints"], checkpoint_lag=lag.events,
                         full=start is None)
    if lag.too_old:
        return replace(report, ok=False, reason="checkpoint_lag", first_bad_seq=signed.newest.seq + 1)
    return report


def _head_seq() -> int:
    return AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0


def _past_head(fail: Callable[[str, int | None], ChainReport]) -> ChainReport | None:
    """A row stored past the head: never a committed append (rows and head commit together, so reading the
    highest row before the head sees the head at or past it), so planted, or left by a head moved back."""
    highest = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    head = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    if highest is not None and highest > head:
        first = AuditEvent.objects.filter(seq__gt=head).order_by("seq").values_list("seq", flat=True).first()
        return fail("past_head", first)
    return None


@dataclass(frozen=True)
class Lag:
    events: int  # events past the newest checkpoint
    seconds: float  # how long the oldest of them has waited for a checkpoint (0 when none waits)
    too_old: bool  # seconds > AUDIT_CHECKPOINT_MAX_LAG_SECONDS


def checkpoint_lag(*, head_seq: int | None = None, checkpoint: Checkpoint | None = None) -> Lag:
    """How far the signed checkpoints trail the head. Commits racing this read are a few events and fresh;
    events that wait longer than the bound mean checkpoints are failing (a full or read-only store)."""
    if head_seq is None:
        head_seq = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        checkpoint = checkpoint_latest(key=checkpoint_key(), near=head_seq)
    anchored = checkpoint.seq if checkpoint else 0
    # Queued events (group commit) are unanchored too, and a queue that is not drained shows here.
    queued = AuditPending.objects.count()
    if head_seq <= anchored and not queued:
        return Lag(events=0, seconds=0.0, too_old=False)
    times = [AuditEvent.objects.filter(seq=anchored + 1).values_list("at", flat=True).first() if
             head_seq > anchored else None,
             AuditPending.objects.order_by("id").values_list("at", flat=True).first() if queued else None]
    waited = max((max(0.0, (clock.now() - at).total_seconds()) for at in times if at), default=0.0)
    return Lag(events=max(0, head_seq - anchored) + queued, seconds=waited,
               too_old=waited > settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS)
