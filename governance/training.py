"""Training governance: who may be trained on (the frozen manifest) and what it costs (the budget ledgers).

Two ledgers, both composed by an accountant that is an upper bound (never a sum, never a minimum):
the lineage's (every run of the lineage plus the parent model's whole ancestry) and each person's (every
run whose manifest held them). Both caps are checked when a run is reserved, under one lock.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from . import clock
from .audit import audit_append, pseudonym
from .audit_actions import AuditAction
from .consent import TRAINING
from .errors import BudgetExceeded, CohortTooSmall, Conflict, InvalidInput
from .models import (
    ConsentRecord,
    Lineage,
    ManifestEntry,
    PolicyVersion,
    PrivacyAudit,
    RunStatus,
    TrainingRun,
)


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
    content_sha256: str = ""  # of the decrypted image, for de-duplication across accounts; never stored


Step = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps), as inference.dp.accounting reads it
Composer = Callable[[list[Step], float], float]  # (history, delta) -> an upper bound on epsilon

# The accountant composing the ledgers. governance imports nothing of ours, so the training app installs
# inference.dp's compose_epsilon at start-up (webplatform.training.apps); tests may swap it like any
# attribute.
composer: Composer | None = None


def manifest_sha256(items: list[dict[str, str]]) -> str:
    """Hash of the canonical manifest (sorted entries): goes into the run and the model card."""
    body = json.dumps(sorted(items, key=lambda e: e["photo_id"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _compose(history: list[Step], delta: float) -> float:
    if composer is None:
        raise RuntimeError("governance.training.composer is not set: "
                           "add webplatform.training to INSTALLED_APPS")
    return composer(history, delta)


def run_history(run: TrainingRun) -> list[Step]:
    """What a run releases, as accountant entries: its DP-SGD steps, and its noisy participant count."""
    return [(run.noise_multiplier, run.sample_rate, run.steps), (run.count_noise, 1.0, 1)]


def composed_epsilon(runs: list[TrainingRun], extra: list[Step] | None = None,
                     delta: float | None = None) -> float:
    """Epsilon of all these runs (and `extra` entries) together, at `delta` or the smallest among the runs."""
    history = [step for run in runs for step in run_history(run)] + list(extra or [])
    if not history:
        return 0.0
    return _compose(history, delta if delta is not None else min(r.delta for r in runs))


def lineage_get_or_create(name: str) -> Lineage:
    """A lineage with the configured cap and delta."""
    lineage, _ = Lineage.objects.get_or_create(
        name=name, defaults={"epsilon_cap": settings.DP_EPSILON_CAP, "delta": settings.DP_DELTA,
                             "created_at": clock.now()})
    return lineage


def run_ancestry(version: str) -> list[TrainingRun]:
    """The runs that trained `version` and each of its DP ancestors, oldest first (a base model has none)."""
    chain: list[TrainingRun] = []
    seen: set[str] = set()
    while version and version not in seen:
        seen.add(version)
        run = TrainingRun.objects.filter(model_version=version).first()
        if run is None:
            break
        chain.append(run)
        version = run.parent_version
    return chain[::-1]


def _lineage_runs(lineage: Lineage, parent_version: str = "") -> list[TrainingRun]:
    """Every model-training run of the lineage (any status but refused: a reservation counts), and the
    whole ancestry of every model the lineage fine-tuned (`parent_version` too): what the lineage's models
    may reveal. The reservation and the compliance report compose this same set."""
    own = list(lineage.runs.exclude(status=RunStatus.REFUSED))
    parents = {r.parent_version for r in own} | {parent_version}
    runs = {r.pk: r for p in sorted(parents) for r in run_ancestry(p)}
    runs.update({r.pk: r for r in own})
    return sorted(runs.values(), key=lambda r: r.created_at)


def lineage_committed_epsilon(lineage: Lineage) -> float:
    """The lineage's runs, with the ancestry of each model they fine-tuned, composed as reservation
    checks them: the newest reservation's stored total (that set cannot change since), else composed."""
    newest = lineage.runs.exclude(status=RunStatus.REFUSED).order_by("-created_at", "-pk").first()
    if newest is not None and newest.lineage_epsilon_after is not None:
        return newest.lineage_epsilon_after
    runs = _lineage_runs(lineage)
    if not runs:
        return 0.0
    return composed_epsilon(runs, delta=min([lineage.delta, *(r.delta for r in runs)]))


def ancestry_epsilon(run: TrainingRun) -> tuple[float, float]:
    """(epsilon, delta) of the model a run produces: its own release composed with its whole ancestry."""
    chain = [*run_ancestry(run.parent_version), run]
    delta = min(r.delta for r in chain)
    return composed_epsilon(chain, delta=delta), delta


def runs_for_subject(user_id: int) -> list[TrainingRun]:
    """Every run whose manifest held this user (by pseudonym), reserved ones included, oldest first."""
    run_ids = ManifestEntry.objects.filter(subject=pseudonym(user_id)).values_list("run_id", flat=True)
    return list(TrainingRun.objects.filter(pk__in=run_ids).select_related("lineage").order_by("created_at"))


def subject_running_epsilon(user_id: int) -> list[tuple[TrainingRun, float | None]]:
    """Each run that held this user, oldest first, with their composed epsilon after it as stored at its
    reservation (None on rows from before it was stored)."""
    entries = (ManifestEntry.objects.filter(subject=pseudonym(user_id)).select_related("run__lineage")
               .order_by("run__created_at", "run__pk"))
    return [(e.run, e.epsilon_after) for e in entries]


def user_committed_epsilon(user_id: int) -> tuple[float, float]:
    """(epsilon, delta) of everything released about this user: all their runs composed (read as stored at
    the newest reservation; composed again only for rows from before it was stored)."""
    held = subject_running_epsilon(user_id)
    if not held:
        return 0.0, 0.0
    runs = [run for run, _ in held]
    delta = min(r.delta for r in runs)
    stored = held[-1][1]
    if stored is not None and all(after is not None for _, after in held):
        return stored, delta
    return composed_epsilon(runs, delta=delta), delta


def subjects_epsilon(subjects: list[str], extra: list[Step] | None = None,
                     delta: float | None = None) -> dict[str, float]:
    """Each subject's runs (plus `extra`) composed: one accountant call per distinct set of runs, not
    per person.

    At `delta` or, for each set, the smallest delta among its runs and `delta`.
    """
    held: dict[str, set[uuid.UUID]] = {s: set() for s in subjects}
    for subject, run_id in (ManifestEntry.objects.filter(subject__in=subjects)
                            .values_list("subject", "run_id")):
        held[subject].add(run_id)
    runs = {r.pk: r for r in TrainingRun.objects.filter(pk__in=set().union(*held.values()))}
    by_history: dict[frozenset[uuid.UUID], float] = {}
    for held_ids in {frozenset(ids) for ids in held.values()}:
        past = [runs[i] for i in held_ids]
        deltas = [r.delta for r in past] + ([delta] if delta is not None else [])
        by_history[held_ids] = composed_epsilon(past, extra, delta=min(deltas)) if past or extra else 0.0
    return {s: by_history[frozenset(ids)] for s, ids in held.items()}


def users_with_budget(user_ids: list[int]) -> set[int]:
    """Those of these users whose ledger stays within DP_USER_EPSILON_CAP after one more noisy count (at
    DP_DELTA): counting them is itself a release, charged even if the run is then refused."""
    by_subject = {pseudonym(u): u for u in user_ids}
    spent = subjects_epsilon(list(by_subject), [(settings.DP_COUNT_NOISE, 1.0, 1)], settings.DP_DELTA)
    return {u for s, u in by_subject.items() if spent[s] <= settings.DP_USER_EPSILON_CAP}


def run_reserve(*, lineage_name: str, items: list[ManifestItem], epsilon: float, delta: float,
                sample_rate: float, noise_multiplier: float, max_grad_norm: float, steps: int,
                accountant: str, participants: int, count_noise: float,
                parent_version: str = "") -> TrainingRun:
    """Freeze the manifest and reserve the run's epsilon in one locked transaction, or refuse (409).

    Refused when fewer than DP_MIN_PARTICIPANTS people are in it, when the lineage's ledger (its runs and
    the parent's ancestry, composed with this run) would pass the lineage cap, or when any participant's
    ledger would pass DP_USER_EPSILON_CAP. Every item is re-checked against the consent ledger inside the
    transaction. `participants` is the noisy count the plan was made from (the floor applies to it); the
    exact count is len(items).
    """
    if not items:
        raise InvalidInput("No eligible photos: nobody with training consent has a photo within retention.")
    if participants < settings.DP_MIN_PARTICIPANTS:
        # On the released count, never the exact one; says neither the count nor how far below.
        raise CohortTooSmall(f"A DP training run needs at least {settings.DP_MIN_PARTICIPANTS} "
                             "eligible people; wait until more have opted in (DP_MIN_PARTICIPANTS).",
                             details={"minimum": settings.DP_MIN_PARTICIPANTS})
    if epsilon <= 0 or not (0 < delta < 1) or count_noise <= 0:
        raise InvalidInput("Epsilon and the count's noise must be positive and delta in (0, 1).")
    this_run = [(noise_multiplier, sample_rate, steps), (count_noise, 1.0, 1)]
    with transaction.atomic():
        lineage = lineage_get_or_create(lineage_name)
        # Lock every lineage row, in pk order (no deadlocks): reservations queue here, so two of them can
        # pass neither a lineage cap nor a person's cap together, even in different lineages.
        list(Lineage.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        lineage.refresh_from_db()
        committed_runs = _lineage_runs(lineage, parent_version)
        at = min([lineage.delta, delta, *(r.delta for r in committed_runs)])
        total = composed_epsilon(committed_runs, this_run, delta=at)
        if total > lineage.epsilon_cap + 1e-9:
            committed = composed_epsilon(committed_runs, delta=at) if committed_runs else 0.0
            raise BudgetExceeded(
                f"This run would bring lineage {lineage.name!r} (with its parent model's ancestry) to "
                f"epsilon {total:.3f}, past its cap {lineage.epsilon_cap}; raise the noise multiplier or "
                "train fewer epochs. A new lineage does not help: it composes the ancestry of the model it "
                "fine-tunes.",
                details={"requested": epsilon, "committed": committed, "total": total,
                         "cap": lineage.epsilon_cap})
        _check_consents(items)
        ledgers = subjects_epsilon([pseudonym(i.user_id) for i in items], this_run, delta)
        over = sum(e > settings.DP_USER_EPSILON_CAP + 1e-9 for e in ledgers.values())
        if over:
            raise BudgetExceeded(
                f"This run would take {over} participant(s) past the per-person cap "
                f"{settings.DP_USER_EPSILON_CAP}; raise the noise multiplier or train fewer epochs.",
                details={"participants_over_cap": over, "user_cap": settings.DP_USER_EPSILON_CAP})
        entries = [{"subject": pseudonym(i.user_id), "photo_id": str(i.photo_id),
                    "consent_record_id": str(i.consent_record_id)} for i in items]
        run = TrainingRun.objects.create(
            lineage=lineage, created_at=clock.now(), manifest_sha256=manifest_sha256(entries),
            participants=participants, count_noise=count_noise, sample_rate=sample_rate,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, steps=steps, delta=delta,
            accountant=accountant, epsilon_reserved=epsilon, parent_version=parent_version,
            lineage_epsilon_after=total)
        # Each person's total with this run, composed above under the lock: stored once, read by pages
        ManifestEntry.objects.bulk_create([ManifestEntry(run=run, epsilon_after=ledgers[e["subject"]], **e)
                                           for e in entries])
        audit_append(action=AuditAction.TRAINING_RESERVED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}",
                     details={"manifest_sha256": run.manifest_sha256, "participants_released": participants,
                              "epsilon": epsilon, "delta": delta, "lineage": lineage.name})
    return run


def count_release_charge(*, lineage_name: str, items: list[ManifestItem], participants: int,
                         count_noise: float, delta: float, epsilon: float, accountant: str) -> TrainingRun:
    """Record a refused run: its noisy count was released, so every person it counted is charged for it.

    No training happened: the row's DP-SGD entry has 0 steps, and the lineage's models are not charged.
    """
    entries = [{"subject": pseudonym(i.user_id), "photo_id": str(i.photo_id),
                "consent_record_id": str(i.consent_record_id)} for i in items]
    with transaction.atomic():
        lineage = lineage_get_or_create(lineage_name)
        list(Lineage.objects.select_for_update().order_by("pk").values_list("pk", flat=True))  # ledger lock
        ledgers = subjects_epsilon([e["subject"] for e in entries], [(count_noise, 1.0, 1)], delta)
        now = clock.now()
        run = TrainingRun.objects.create(
            lineage=lineage, status=RunStatus.REFUSED, created_at=now, finished_at=released_time(now),
            manifest_sha256=manifest_sha256(entries), participants=participants, count_noise=count_noise,
            sample_rate=1.0, noise_multiplier=0.0, max_grad_norm=0.0, steps=0, delta=delta,
            accountant=accountant, epsilon_reserved=epsilon, epsilon_spent=epsilon)
        ManifestEntry.objects.bulk_create([ManifestEntry(run=run, epsilon_after=ledgers[e["subject"]], **e)
                                           for e in entries])
        audit_append(action=AuditAction.TRAINING_REFUSED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}",
                     details={"participants_released": participants, "epsilon": epsilon, "delta": delta,
                              "lineage": lineage.name})
    return run


def released_time(at: datetime) -> datetime:
    """A run's finishing time as shown: rounded down to DP_RUN_TIME_GRANULARITY, so its duration (linear
    in the number of faces loaded) is not shown to the second."""
    step = settings.DP_RUN_TIME_GRANULARITY.total_seconds()
    return datetime.fromtimestamp(at.timestamp() // step * step, tz=at.tzinfo)


def _check_consents(items: list[ManifestItem]) -> None:
    active = {c.user_id: c.consent_record_id for c in training_candidates()}
    users = [i.user_id for i in items]
    if len(set(users)) != len(users):
        raise Conflict("A manifest may hold at most one photo per user.")
    hashes = [i.content_sha256 for i in items if i.content_sha256]
    if len(set(hashes)) != len(hashes):
        raise Conflict("A manifest may hold an exact pixel copy only once, whichever account uploaded it.")
    stale = [i.user_id for i in items if active.get(i.user_id) != i.consent_record_id]
    if stale:
        raise Conflict("Training consent changed while the manifest was built; build it again.",
                       details={"stale_entries": len(stale)})


def run_entries(run: TrainingRun) -> list[dict[str, str]]:
    """The frozen manifest: what the data loader reads, and nothing else."""
    return [{k: str(v) for k, v in entry.items()}
            for entry in run.entries.order_by("photo_id").values("subject", "photo_id", "consent_record_id")]


def run_start(run: TrainingRun) -> TrainingRun:
    """RESERVED -> RUNNING, once: under a row lock, so a run is executed at most once whoever asks."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RESERVED:
            raise Conflict(f"Run {run.id} is {locked.status}, not reserved: it cannot be executed (again). "
                           "Reserve a new run instead.", details={"status": locked.status})
        locked.status, locked.heartbeat_at = RunStatus.RUNNING, clock.now()
        locked.save(update_fields=["status", "heartbeat_at"])
        audit_append(action=AuditAction.TRAINING_STARTED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}")
    run.status = RunStatus.RUNNING
    return run


def run_finish(run: TrainingRun, *, model_version: str = "", metrics: dict[str, Any] | None = None,
               error: str = "") -> None:
    """RUNNING -> SUCCEEDED | FAILED; either way the whole reservation is spent (the plan is fixed)."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            raise Conflict(f"Run {run.id} is {locked.status}, not running.",
                           details={"status": locked.status})
        run.status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
        run.epsilon_spent = run.epsilon_reserved
        run.model_version, run.metrics, run.error = model_version, metrics or {}, error[:200]
        run.finished_at = released_time(clock.now())
        run.save(update_fields=["status", "epsilon_spent", "model_version", "metrics", "error",
                                "finished_at"])
        audit_append(action=AuditAction.TRAINING_FINISHED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}",
                     details={"status": run.status, "epsilon_spent": run.epsilon_spent,
                              "model_version": model_version})


WORKER_LOST = "worker_lost"  # the error prefix of a run whose worker stopped heartbeating


def run_beat(run_id: uuid.UUID) -> None:
    """The training process is alive: bump a running run's heartbeat."""
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=clock.now())


def run_fail_stale(run_id: uuid.UUID, *, stale_before: datetime) -> bool:
    """RUNNING -> FAILED when the heartbeat is older than `stale_before`: its worker died mid-run.

    The whole reservation stays spent (the data may have been touched) and the run is never executed again
    (run_start admits RESERVED only). False when it finished or beat again meanwhile.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id, status=RunStatus.RUNNING).first()
        if run is None or (run.heartbeat_at is not None and run.heartbeat_at >= stale_before):
            return False
        run.status, run.epsilon_spent, run.finished_at = RunStatus.FAILED, run.epsilon_reserved, clock.now()
        seen = f"since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if run.heartbeat_at else "ever"
        run.error = (f"{WORKER_LOST}: the training worker stopped (no heartbeat {seen}); its epsilon stays "
                     "spent and the run is never executed again")[:200]
        run.save(update_fields=["status", "epsilon_spent", "finished_at", "error"])
        audit_append(action=AuditAction.TRAINING_FINISHED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}",
                     details={"status": run.status, "epsilon_spent": run.epsilon_spent, "model_version": "",
                              "reason": WORKER_LOST})
    return True


def privacy_audit_record(*, code_version: str, passed: bool, report: dict[str, Any]) -> PrivacyAudit:
    """Store an empirical audit of a DP code version, and put it on the audit trail."""
    with transaction.atomic():
        audit = PrivacyAudit.objects.create(code_version=code_version, passed=passed, report=report,
                                            at=clock.now())
        audit_append(action=AuditAction.TRAINING_PRIVACY_AUDIT, actor_id=None, subject="training",
                     object_ref=f"dp-code:{code_version[:16]}", details={"passed": passed})
    return audit
