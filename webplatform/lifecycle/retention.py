"""Retention: delete every object past its deadline — ciphertext first, then the row — idempotently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate

from governance import clock
from governance.audit import AuditEntry, audit_append, audit_append_many
from governance.audit_actions import AuditAction
from governance.training import training_digests_erase
from webplatform import metrics
from webplatform.encrypted_store import StorageUnavailable, object_delete, object_modified, object_names
from webplatform.jobs.models import TransformationResult
from webplatform.photos.models import DueReason, Photo, StoredObject

# Results before photos: a photo's deletion cascades to its results, whose ciphertext must go first.
HELD_MODELS: tuple[type[StoredObject], ...] = (TransformationResult, Photo)
BATCH = 500
# The action a held object's deletion writes, by its kind and why it fell due: each cause its own action (and
# actor, below), so a chart of expiries counts deadlines only.
PURGE_ACTIONS: dict[tuple[str, str], AuditAction] = {
    (Photo.KIND, DueReason.DEADLINE): AuditAction.PHOTO_EXPIRED,
    (Photo.KIND, DueReason.OWNER_DELETED): AuditAction.PHOTO_PURGED_ON_REQUEST,
    (Photo.KIND, DueReason.CONSENT_WITHDRAWN): AuditAction.PHOTO_PURGED_ON_WITHDRAWAL,
    (TransformationResult.KIND, DueReason.DEADLINE): AuditAction.RESULT_EXPIRED,
    (TransformationResult.KIND, DueReason.OWNER_DELETED): AuditAction.RESULT_PURGED_ON_REQUEST,
    (TransformationResult.KIND, DueReason.CONSENT_WITHDRAWN): AuditAction.RESULT_PURGED_ON_WITHDRAWAL,
}


@dataclass
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())


def expired(model: type[StoredObject], *, now: datetime, owner_id: int | None = None) -> QuerySet:
    """Objects of one kind past their deadline, oldest deadline first."""
    rows = model.objects.filter(expires_at__lte=now)
    if owner_id is not None:
        rows = rows.filter(owner_id=owner_id)
    return rows.order_by("expires_at", "pk")


def retention_enforce(*, now: datetime | None = None, owner_id: int | None = None,
                      progress: Callable[[int], None] | None = None) -> RetentionReport:
    """Delete everything past its deadline. Safe to run twice at once; catches up after downtime.

    Each batch runs in a transaction that locks its rows (skipping rows another runner holds on
    PostgreSQL), deletes their ciphertext, then their rows, and audits each deletion. A storage failure
    keeps that row, counts the attempt and moves on: the next run retries it.
    """
    now = now or clock.now()
    report = RetentionReport()
    failed_ids: set = set()  # across kinds: a photo whose result failed this run is not retried twice
    for model in HELD_MODELS:
        while True:
            deleted, failed, tried = _purge_batch(model, now=now, owner_id=owner_id, skip=failed_ids)
            report.deleted[model.KIND] = report.deleted.get(model.KIND, 0) + deleted
            report.failed[model.KIND] = report.failed.get(model.KIND, 0) + len(failed)
            metrics.RETENTION_DELETED.labels(model.KIND).inc(deleted)
            metrics.RETENTION_FAILED.labels(model.KIND).inc(len(failed))
            failed_ids |= failed
            if progress:
                progress(tried)
            if tried < BATCH:
                break
    return report


def _purge_batch(model: type[StoredObject], *, now: datetime, owner_id: int | None, skip: set
                 ) -> tuple[int, set, int]:
    """One locked batch: returns (objects of this kind deleted, pks that failed, rows taken)."""
    with transaction.atomic():
        rows = expired(model, now=now, owner_id=owner_id).exclude(pk__in=skip)
        if connection.features.has_select_for_update_skip_locked:
            # Fixed order + skip_locked: concurrent runners split the backlog instead of deadlocking.
            rows = rows.select_for_update(skip_locked=True)
        batch = list(rows[:BATCH])
        purged = objects_purge(model, batch, skip=skip)
        gone: list[AuditEntry] = [
            {
                "action": PURGE_ACTIONS[o.KIND, o.due_reason],
                "actor_id": None if o.due_reason == DueReason.DEADLINE else o.owner_id,
                "subject_id": o.owner_id,
                "object_ref": o.ref,
                "details": {"expires_at": o.expires_at.isoformat(), "reason": o.due_reason},
            }
            for o in purged.gone
        ]
        dependents: list[AuditEntry] = [
            {
                "action": AuditAction.RESULT_DELETED,
                "actor_id": None,
                "subject_id": r.owner_id,
                "object_ref": r.ref,
                "details": {"reason": "photo_deleted", "photo": f"photo:{r.photo_id}"},
            }
            for r in purged.dependents
        ]
        audit_append_many(gone + dependents)
    return len(purged.gone), purged.failed, len(batch)


@dataclass
class Purged:
    gone: list[StoredObject] = field(default_factory=list)  # the objects asked for, now deleted
    # results deleted along with their photo
    dependents: list[TransformationResult] = field(default_factory=list)
    failed: set = field(default_factory=set)  # pks kept because some ciphertext could not be deleted
    errors: list[str] = field(default_factory=list)  # what storage said, per failed delete


def objects_purge(model: type[StoredObject], batch: list[StoredObject], *, skip: frozenset | set = frozenset()
                  ) -> Purged:
    """Delete these objects' ciphertext, then their rows, in the caller's transaction (rows already chosen).

    A photo's row deletion cascades to its results' rows, so its results' ciphertext goes first; if any
    of it cannot be deleted (or already failed this run: `skip`) the photo stays too, so that no
    ciphertext is ever left without a row pointing at it for the retry.
    """
    purged = Purged()
    results = _results_of(batch) if model is Photo else {}
    for obj in batch:
        dependents = results.get(obj.pk, [])
        if any(r.pk in skip for r in dependents):
            purged.failed.add(obj.pk)  # one of its results failed earlier in this run: no second try now
            continue
        errors = []
        for result in dependents:
            if error := _ciphertext_delete(TransformationResult, result):
                errors.append(error)
            else:
                purged.dependents.append(result)
        if not errors and (error := _ciphertext_delete(model, obj)):
            errors.append(error)
        if errors:
            purged.failed.add(obj.pk)
            purged.errors += errors
        else:
            purged.gone.append(obj)
    TransformationResult.objects.filter(pk__in=[r.pk for r in purged.dependents]).delete()
    model.objects.filter(pk__in=[o.pk for o in purged.gone]).delete()
    if model is Photo:  # a deleted photo's perceptual-hash digests go with it
        training_digests_erase(photo_ids=[o.pk for o in purged.gone])
    return purged


def _results_of(photos: list[StoredObject]) -> dict:
    """The results of these photos, locked (waiting for a runner that holds them, then seeing them gone)."""
    rows = TransformationResult.objects.filter(photo_id__in=[p.pk for p in photos]).order_by("pk")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update()
    by_photo: dict = {}
    for result in rows:
        by_photo.setdefault(result.photo_id, []).append(result)
    return by_photo


def _ciphertext_delete(model: type[StoredObject], obj: StoredObject) -> str | None:
    """Delete one object's ciphertext; on a storage fault count the attempt on its row, return the error."""
    try:
        object_delete(obj.storage_name)
    except Exception as exc:  # any storage fault: keep the row, retry next run
        # what the store said
        cause = exc.__cause__ if isinstance(exc, StorageUnavailable) and exc.__cause__ else exc
        obj.deletion_attempts += 1
        obj.last_deletion_error = f"{type(cause).__name__}: {cause}"[:200]
        model.objects.filter(pk=obj.pk).update(deletion_attempts=obj.deletion_attempts,
                                               last_deletion_error=obj.last_deletion_error)
        return obj.last_deletion_error
    return None


def overdue_by_deadline_day(*, now: datetime) -> dict[date, int]:
    """Objects held past their retention deadline, counted by that deadline's day (the officer's backlog).

    Only deadlines: an object its owner deleted, or withdrew consent for, is due at once and is not overdue.
    """
    counts: dict[date, int] = {}
    for model in HELD_MODELS:
        rows = (expired(model, now=now).filter(due_reason=DueReason.DEADLINE)
                .order_by().annotate(day=TruncDate("expires_at")).values("day").annotate(n=Count("pk")))
        for row in rows:
            counts[row["day"]] = counts.get(row["day"], 0) + row["n"]
    return counts


def retention_backlog(*, now: datetime | None = None, limit: int = 100) -> list[dict]:
    """Objects past deadline not yet deleted, oldest first (for the compliance report)."""
    now = now or clock.now()
    rows: list[dict] = []
    for model in HELD_MODELS:
        for obj in expired(model, now=now)[:limit]:
            rows.append({"kind": model.KIND, "id": str(obj.pk), "expires_at": obj.expires_at.isoformat(),
                         "overdue_seconds": int((now - obj.expires_at).total_seconds()),
                         "deletion_attempts": obj.deletion_attempts, "last_error": obj.last_deletion_error,
                         "reason": obj.due_reason})
    return sorted(rows, key=lambda r: r["expires_at"])[:limit]


def orphans_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Delete ciphertext that no row claims once it is older than ORPHAN_GRACE_SECONDS, auditing each one.

    Orphans come from a PUT whose row never landed (a storage response lost, a crash between the two); the
    grace period leaves uploads in flight alone, since their object is stored before their row commits.
    """
    now = now or clock.now()
    cutoff = now - timedelta(seconds=settings.ORPHAN_GRACE_SECONDS)
    deleted: dict[str, int] = {}
    for model in HELD_MODELS:
        deleted[model.KIND] = 0
        names = list(object_names(model.KIND))
        claimed: set[str] = set()
        for start in range(0, len(names), BATCH):
            claimed |= set(model.objects.filter(storage_name__in=names[start:start + BATCH])
                           .values_list("storage_name", flat=True))
        for name in names:
            if name in claimed or object_modified(name) > cutoff:
                continue
            if model.objects.filter(storage_name=name).exists():
                continue  # its row landed after the listing
            try:
                object_delete(name)
            except StorageUnavailable:
                break  # the store went away: the next run goes on
            audit_append(action=AuditAction.OBJECT_ORPHAN_DELETED, actor_id=None,
                         object_ref=f"{model.KIND}:orphan",
                         details={"storage_name": name, "kind": model.KIND})
            deleted[model.KIND] += 1
    return deleted


def photo_delete(*, user_id: int, photo: Photo) -> None:
    """Make the photo and its results due now; retention deletes ciphertext then rows once this commits."""
    with transaction.atomic():
        now = clock.now()
        deleted = {"expires_at": now, "due_reason": DueReason.OWNER_DELETED}
        TransformationResult.objects.filter(photo_id=photo.pk).update(**deleted)
        Photo.objects.filter(pk=photo.pk).update(**deleted)
        audit_append(action=AuditAction.PHOTO_DELETED, actor_id=user_id, subject_id=photo.owner_id,
                     object_ref=f"photo:{photo.id}", details={"reason": "owner_request"})
    transaction.on_commit(lambda: retention_enforce(owner_id=photo.owner_id, now=now))
