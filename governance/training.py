"""Training governance: who may be trained on (the frozen manifest) and what it costs (the budget ledger)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from . import clock
from .audit import audit_append, pseudonym
from .consent import TRAINING
from .errors import BudgetExceeded, Conflict, InvalidInput
from .models import ConsentRecord, Lineage, ManifestEntry, PolicyVersion, RunStatus, TrainingRun


@dataclass(frozen=True)
class Candidate:
    """A user whose training consent is active now, with the record that grants it."""

    user_id: int
    consent_record_id: uuid.UUID


def training_candidates() -> list[Candidate]:
    """Users whose newest training record is a grant of the current policy version, right now."""
    current = (PolicyVersion.objects.filter(purpose__slug=TRAINING).order_by("-version")
               .values_list("pk", flat=True).first())
    latest: dict[int, ConsentRecord] = {}
    for record in (ConsentRecord.objects.filter(purpose__slug=TRAINING, user__is_active=True)
                   .order_by("at", "pk").only("id", "user_id", "granted", "policy_id").iterator()):
        latest[record.user_id] = record
    return [Candidate(user_id=uid, consent_record_id=r.id) for uid, r in latest.items()
            if r.granted and r.policy_id == current]


@dataclass(frozen=True)
class ManifestItem:
    user_id: int
    photo_id: uuid.UUID
    consent_record_id: uuid.UUID


def manifest_sha256(items: list[dict[str, str]]) -> str:
    """Hash of the canonical manifest (sorted entries): goes into the run and the model card."""
    body = json.dumps(sorted(items, key=lambda e: e["photo_id"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def lineage_get_or_create(name: str) -> Lineage:
    """A lineage with the configured cap and delta."""
    lineage, _ = Lineage.objects.get_or_create(
        name=name, defaults={"epsilon_cap": settings.DP_EPSILON_CAP, "delta": settings.DP_DELTA})
    return lineage


def lineage_committed_epsilon(lineage: Lineage) -> float:
    """Spent by finished runs plus reserved by unfinished ones (basic composition: a safe upper bound)."""
    spent = lineage.runs.filter(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).aggregate(
        s=Sum("epsilon_spent"))["s"] or 0.0
    reserved = lineage.runs.filter(status__in=[RunStatus.RESERVED, RunStatus.RUNNING]).aggregate(
        s=Sum("epsilon_reserved"))["s"] or 0.0
    return float(spent) + float(reserved)


def run_reserve(*, lineage_name: str, items: list[ManifestItem], epsilon: float, delta: float,
                sample_rate: float, noise_multiplier: float, max_grad_norm: float, steps: int,
                accountant: str, parent_version: str = "") -> TrainingRun:
    """Freeze the manifest and reserve the run's epsilon in one locked transaction, or refuse (409).

    Every item is re-checked against the consent ledger inside the transaction: an entry whose owner's
    newest training record is not the named grant is refused, so no manifest holds a photo whose owner
    lacked consent at snapshot time. One photo per user makes Opacus' example-level guarantee user-level.
    """
    if not items:
        raise InvalidInput("No eligible photos: nobody with training consent has a photo within retention.")
    if epsilon <= 0 or not (0 < delta < 1):
        raise InvalidInput("Epsilon must be positive and delta in (0, 1).")
    with transaction.atomic():
        lineage = lineage_get_or_create(lineage_name)
        # Lock the lineage row: two runs asked for at once queue here, so together they cannot pass the cap.
        lineage = Lineage.objects.select_for_update().get(pk=lineage.pk)
        committed = lineage_committed_epsilon(lineage)
        if committed + epsilon > lineage.epsilon_cap + 1e-9:
            raise BudgetExceeded(
                f"This run needs epsilon {epsilon:.3f} but lineage {lineage.name!r} has "
                f"{max(lineage.epsilon_cap - committed, 0):.3f} of {lineage.epsilon_cap} left; "
                "raise the noise multiplier, train fewer epochs, or start a new lineage.",
                details={"requested": epsilon, "committed": committed, "cap": lineage.epsilon_cap})
        _check_consents(items)
        entries = [{"subject": pseudonym(i.user_id), "photo_id": str(i.photo_id),
                    "consent_record_id": str(i.consent_record_id)} for i in items]
        run = TrainingRun.objects.create(
            lineage=lineage, created_at=clock.now(), manifest_sha256=manifest_sha256(entries),
            participants=len(items), sample_rate=sample_rate, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, steps=steps, delta=delta, accountant=accountant,
            epsilon_reserved=epsilon, parent_version=parent_version)
        ManifestEntry.objects.bulk_create([ManifestEntry(run=run, **e) for e in entries])
        audit_append(action="training.reserved", actor_id=None, subject="training", object_ref=f"run:{run.id}",
                     details={"manifest_sha256": run.manifest_sha256, "participants": run.participants,
                              "epsilon": epsilon, "delta": delta, "lineage": lineage.name})
    return run


def _check_consents(items: list[ManifestItem]) -> None:
    active = {c.user_id: c.consent_record_id for c in training_candidates()}
    users = [i.user_id for i in items]
    if len(set(users)) != len(users):
        raise Conflict("A manifest may hold at most one photo per user.")
    stale = [i.user_id for i in items if active.get(i.user_id) != i.consent_record_id]
    if stale:
        raise Conflict("Training consent changed while the manifest was built; build it again.",
                       details={"stale_entries": len(stale)})


def run_entries(run: TrainingRun) -> list[dict[str, str]]:
    """The frozen manifest: what the data loader reads, and nothing else."""
    return [{k: str(v) for k, v in entry.items()}
            for entry in run.entries.order_by("photo_id").values("subject", "photo_id", "consent_record_id")]


def run_start(run: TrainingRun) -> None:
    run.status = RunStatus.RUNNING
    run.save(update_fields=["status"])


def run_finish(run: TrainingRun, *, epsilon_spent: float, model_version: str = "", metrics: dict[str, Any],
               error: str = "") -> None:
    """Record what the run actually spent (its reservation is released) and how it ended."""
    with transaction.atomic():
        run.status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
        run.epsilon_spent = epsilon_spent
        run.model_version, run.metrics, run.error = model_version, metrics, error[:200]
        run.finished_at = clock.now()
        run.save(update_fields=["status", "epsilon_spent", "model_version", "metrics", "error", "finished_at"])
        audit_append(action="training.finished", actor_id=None, subject="training", object_ref=f"run:{run.id}",
                     details={"status": run.status, "epsilon_spent": epsilon_spent, "model_version": model_version})


def runs_for_subject(user_id: int) -> list[TrainingRun]:
    """Finished or running runs whose manifest held this user (by pseudonym)."""
    run_ids = ManifestEntry.objects.filter(subject=pseudonym(user_id)).values_list("run_id", flat=True)
    return list(TrainingRun.objects.filter(pk__in=run_ids).exclude(status=RunStatus.RESERVED)
                .order_by("created_at"))
