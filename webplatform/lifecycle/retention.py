"""Retention: delete every object past its deadline — ciphertext first, then the row — idempotently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import QuerySet

from governance import clock
from governance.audit import audit_append_many
from webplatform.jobs.models import TransformationResult
from webplatform.objects import object_delete
from webplatform.photos.models import Photo, StoredObject

# Results before photos: a photo's deletion cascades to its results, whose ciphertext must go first.
HELD_MODELS: tuple[type[StoredObject], ...] = (TransformationResult, Photo)
BATCH = 500


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
    for model in HELD_MODELS:
        failed_ids: set = set()
        while True:
            deleted, failed = _purge_batch(model, now=now, owner_id=owner_id, skip=failed_ids)
            report.deleted[model.KIND] = report.deleted.get(model.KIND, 0) + deleted
            report.failed[model.KIND] = report.failed.get(model.KIND, 0) + len(failed)
            failed_ids |= failed
            if progress:
                progress(deleted + len(failed))
            if deleted + len(failed) < BATCH:
                break
    return report


def _purge_batch(model: type[StoredObject], *, now: datetime, owner_id: int | None, skip: set
                 ) -> tuple[int, set]:
    with transaction.atomic():
        rows = expired(model, now=now, owner_id=owner_id).exclude(pk__in=skip)
        if connection.features.has_select_for_update_skip_locked:
            # Fixed order + skip_locked: concurrent runners split the backlog instead of deadlocking.
            rows = rows.select_for_update(skip_locked=True)
        batch = list(rows[:BATCH])
        gone, failed = [], set()
        for obj in batch:
            try:
                object_delete(obj.storage_name)
            except Exception as exc:  # any storage fault: keep the row, retry next run
                failed.add(obj.pk)
                model.objects.filter(pk=obj.pk).update(
                    deletion_attempts=obj.deletion_attempts + 1,
                    last_deletion_error=f"{type(exc).__name__}: {exc}"[:200],
                )
                continue
            gone.append(obj)
        model.objects.filter(pk__in=[o.pk for o in gone]).delete()
        audit_append_many([
            {"action": f"{model.KIND}.expired", "actor_id": None, "subject_id": o.owner_id, "object_ref": o.ref,
             "details": {"expires_at": o.expires_at.isoformat()}}
            for o in gone
        ])
    return len(gone), failed


def retention_backlog(*, now: datetime | None = None, limit: int = 100) -> list[dict]:
    """Objects past deadline not yet deleted, oldest first (for the compliance report)."""
    now = now or clock.now()
    rows: list[dict] = []
    for model in HELD_MODELS:
        for obj in expired(model, now=now)[:limit]:
            rows.append({"kind": model.KIND, "id": str(obj.pk), "expires_at": obj.expires_at.isoformat(),
                         "overdue_seconds": int((now - obj.expires_at).total_seconds()),
                         "deletion_attempts": obj.deletion_attempts, "last_error": obj.last_deletion_error})
    return sorted(rows, key=lambda r: r["expires_at"])[:limit]
