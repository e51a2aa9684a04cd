"""Training governance: who may be trained on (the frozen manifest) and what it costs (the budget ledgers).

Two ledgers, each a Rényi filter (Feldman & Zrnic 2021) over a fixed set of orders: the lineage's (every run
of the lineage plus the parent model's whole ancestry) and each account's (every release that counted it).
A filter stays valid when each run's parameters and participants are chosen adaptively, as ours are (q, T
and delta follow a noisy count; who joins follows the ledger). Both caps are checked when a run is
reserved, under one lock, on RDP sums of plain numbers; the DP library that computes a release's RDP and
converts a sum to (epsilon, delta) is passed in by the caller (`Accountant`): governance imports none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction

from . import clock
from .audit import audit_append, image_digest_key, pseudonym
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
    SubjectLedger,
    TrainingDigest,
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
    digests: tuple[str, ...] = ()  # keyed parts of its perceptual hash (image_digests); () if too flat


def image_digests(parts: Sequence[bytes]) -> tuple[str, ...]:
    """The keyed digest of each part of a perceptual hash (inference.serving.phash.hash_blocks): HMAC-SHA256
    of (part index, part bits) under a key from the keyring. Only these are stored, never the hash."""
    key = image_digest_key()
    return tuple(hmac.new(key, bytes([k]) + part, hashlib.sha256).hexdigest() for k, part in enumerate(parts))


def _digests_store(items: Sequence[ManifestItem]) -> None:
    """Keep the digests of these counted photos (under the ledger lock, as their owners are charged): a
    later copy of the image in another account is then matched to this account's spend."""
    TrainingDigest.objects.bulk_create(
        [TrainingDigest(subject=pseudonym(i.user_id), photo_id=i.photo_id, digest=d)
         for i in items for d in i.digests], ignore_conflicts=True)


def training_digests_erase(*, user_id: int | None = None, photo_ids: Sequence[uuid.UUID] = ()) -> int:
    """Forget the digests of a person (erasure, withdrawal of training consent) or of these photos (deleted):
    a later copy of the image is no longer linked to that spend."""
    erased = 0
    if user_id is not None:
        erased += TrainingDigest.objects.filter(subject=pseudonym(user_id)).delete()[0]
    if photo_ids:
        erased += TrainingDigest.objects.filter(photo_id__in=list(photo_ids)).delete()[0]
    return erased


def duplicate_images(items: Sequence[ManifestItem]) -> bool:
    """Whether two of these photos are one image: the same pixels, or a perceptual-hash part in common."""
    hashes = [i.content_sha256 for i in items if i.content_sha256]
    digests = [d for i in items for d in set(i.digests)]
    return len(set(hashes)) != len(hashes) or len(set(digests)) != len(digests)


def image_sums(items: Sequence[ManifestItem], sums: dict[str, Curve],
               accountant: Accountant) -> dict[str, Curve]:
    """For each item's subject, its own RDP sums plus those of every other account holding a stored digest
    in common with its photo: together they bound what the image has released so far (each run that used a
    copy charged one of those accounts), so the filter checks the image, not only the account.

    Direct matches only, not their closure: a chain of false matches cannot join the whole population.
    A false match only makes the check stricter (a larger sum): it costs budget, never privacy.
    """
    own = {pseudonym(i.user_id): i for i in items}
    wanted = {d for i in items for d in i.digests}
    holders: dict[str, set[str]] = {}
    rows = TrainingDigest.objects.filter(digest__in=list(wanted)).values_list("subject", "digest")
    for subject, digest in rows:
        holders.setdefault(digest, set()).add(subject)
    others = {s: set().union(*(holders.get(d, set()) for d in i.digests)) - {s} for s, i in own.items()}
    stored = subject_sums(sorted(set().union(*others.values()) - set(sums)), accountant) if others else {}
    stored.update(sums)
    return {s: curve_add(sums[s], *(stored[o] for o in sorted(others[s]))) for s in own}


class Accountant(Protocol):
    """What the ledgers need of a DP library, in plain numbers (webplatform.training.ledger passes Opacus'
    through inference.dp): a release's RDP at the filter's fixed orders, and a sum's conversion."""

    def release_rdp(self, noise_multiplier: float, sample_rate: float, steps: int) -> list[float]:
        """RDP at each order of `steps` Poisson-sampled Gaussian steps (a count: noise, 1.0, 1)."""
        ...

    def epsilon(self, rdp: Sequence[float], delta: float) -> float:
        """Epsilon at `delta` of the Rényi filter holding these sums (0 for no release)."""
        ...


Curve = list[float]  # RDP at each of the accountant's orders, in its order


def curve_dump(curve: Sequence[float]) -> list[float | None]:
    """A curve as JSON can hold it: an infinite order (no noise) as None."""
    return [None if math.isinf(v) else float(v) for v in curve]


def curve_load(stored: Sequence[float | None]) -> Curve:
    return [math.inf if v is None else float(v) for v in stored]


def curve_add(*curves: Sequence[float]) -> Curve:
    """RDP sums order by order: how RDP composes, adaptively too."""
    return [math.fsum(values) for values in zip(*curves, strict=True)]


def manifest_sha256(items: list[dict[str, str]]) -> str:
    """Hash of the canonical manifest (sorted entries): goes into the run and the model card."""
    body = json.dumps(sorted(items, key=lambda e: e["photo_id"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def run_rdp(run: TrainingRun, accountant: Accountant) -> Curve:
    """What a run releases as an RDP curve: its DP-SGD steps and its noisy participant count (stored at
    reservation; computed from the row's parameters where a row was written without the ledger)."""
    if run.rdp is not None:
        return curve_load(run.rdp)
    return curve_add(accountant.release_rdp(run.noise_multiplier, run.sample_rate, run.steps),
                     accountant.release_rdp(run.count_noise, 1.0, 1))


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


def lineage_committed_epsilon(lineage: Lineage, accountant: Accountant) -> float:
    """The lineage's runs, with the ancestry of each model they fine-tuned, under the lineage's filter, as
    reservation checks them: the newest reservation's stored total (that set cannot change since)."""
    newest = lineage.runs.exclude(status=RunStatus.REFUSED).order_by("-created_at", "-pk").first()
    if newest is not None and newest.lineage_epsilon_after is not None:
        return newest.lineage_epsilon_after
    runs = _lineage_runs(lineage)
    return accountant.epsilon(_lineage_rdp(runs, accountant), lineage.delta) if runs else 0.0


def lineage_totals(lineage: Lineage, accountant: Accountant) -> dict[uuid.UUID, float]:
    """The lineage's filter epsilon after each of its model runs, by run: the totals stored at reservation,
    or, for a row written without the ledger, the same set reservation composes (the lineage's runs so far
    with the ancestry of every model they fine-tuned) under the filter."""
    own = list(lineage.runs.exclude(status=RunStatus.REFUSED).order_by("created_at", "pk"))
    totals: dict[uuid.UUID, float] = {}
    for i, run in enumerate(own):
        if run.lineage_epsilon_after is not None:
            totals[run.pk] = run.lineage_epsilon_after
            continue
        parents = sorted({r.parent_version for r in own[:i + 1]})
        chain = {r.pk: r for p in parents for r in run_ancestry(p)} | {r.pk: r for r in own[:i + 1]}
        totals[run.pk] = accountant.epsilon(_lineage_rdp(list(chain.values()), accountant), lineage.delta)
    return totals


def _lineage_rdp(runs: list[TrainingRun], accountant: Accountant, extra: Curve | None = None) -> Curve:
    curves = [run_rdp(r, accountant) for r in runs] + ([extra] if extra is not None else [])
    return curve_add(*curves) if curves else []


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


def subject_sums(subjects: list[str], accountant: Accountant) -> dict[str, Curve]:
    """Each subject's stored running RDP sums (zeros for a subject never counted): one row each."""
    zero = accountant.release_rdp(1.0, 1.0, 0)  # no step released: zero at every order
    stored = dict(SubjectLedger.objects.filter(subject__in=subjects).values_list("subject", "rdp"))
    return {s: curve_load(stored[s]) if s in stored else list(zero) for s in subjects}


def _charge(sums: dict[str, Curve], release: Curve) -> dict[str, Curve]:
    """Add a release to these subjects' running sums and store them; call under the ledger lock."""
    after = {s: curve_add(curve, release) for s, curve in sums.items()}
    rows = list(SubjectLedger.objects.filter(subject__in=list(after)))
    for row in rows:
        row.rdp = curve_dump(after[row.subject])
    SubjectLedger.objects.bulk_update(rows, ["rdp"])
    held = {row.subject for row in rows}
    SubjectLedger.objects.bulk_create([SubjectLedger(subject=s, rdp=curve_dump(c))
                                       for s, c in after.items() if s not in held])
    return after


def _filter_epsilons(sums: dict[str, Curve], accountant: Accountant) -> dict[str, float]:
    """Each subject's filter epsilon at DP_DELTA (fixed in advance): one conversion per distinct sum."""
    by_curve = {tuple(c): 0.0 for c in sums.values()}
    for curve in by_curve:
        by_curve[curve] = accountant.epsilon(list(curve), settings.DP_DELTA)
    return {s: by_curve[tuple(c)] for s, c in sums.items()}


def users_with_budget(user_ids: list[int], accountant: Accountant,
                      items: Sequence[ManifestItem] = ()) -> set[int]:
    """Those of these users whose filter stays within DP_USER_EPSILON_CAP after one more noisy count:
    counting them is itself a release, charged even if the run is then refused. With their `items`, the
    filter checked is their image's (image_sums: with the accounts holding a copy of it)."""
    by_subject = {pseudonym(u): u for u in user_ids}
    count = accountant.release_rdp(settings.DP_COUNT_NOISE, 1.0, 1)
    held = subject_sums(list(by_subject), accountant)
    held.update(image_sums([i for i in items if i.user_id in set(user_ids)], held, accountant))
    sums = {s: curve_add(c, count) for s, c in held.items()}
    spent = _filter_epsilons(sums, accountant)
    return {u for s, u in by_subject.items() if spent[s] <= settings.DP_USER_EPSILON_CAP}


def ledger_lock(lineage_name: str) -> Lineage:
    """Take the ledgers' lock inside the caller's transaction, and return the lineage (made if new).

    Every lineage row is locked, in pk order (no deadlocks): reservations and count releases queue here, so
    two of them can pass neither a lineage cap nor a person's cap together, even in different lineages.
    """
    lineage = lineage_get_or_create(lineage_name)
    list(Lineage.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
    lineage.refresh_from_db()
    return lineage


def run_reserve(*, lineage_name: str, items: list[ManifestItem], epsilon: float, delta: float,
                sample_rate: float, noise_multiplier: float, max_grad_norm: float, steps: int,
                accountant: str, participants: int, count_noise: float, ledger: Accountant,
                parent_version: str = "") -> TrainingRun:
    """Freeze the manifest and reserve the run in both Rényi filters in one locked transaction, or refuse
    (409).

    Refused when fewer than DP_MIN_PARTICIPANTS people are in it, when the lineage's filter (its runs and
    the parent's ancestry, with this run) would pass the lineage cap, or when every participant's would pass
    DP_USER_EPSILON_CAP. A person whose filter this run would take past that cap is left out of the
    manifest (Feldman & Zrnic's individual filter) and charged only the released count, which counted them
    (a refused run row holds that charge). Every item is re-checked against the consent ledger inside the
    transaction. `participants` is the noisy count the plan was made from (the floor applies to it); the
    exact count is len(items). `accountant` names the accountant of the run's own epsilon (PRV); `ledger`
    computes the filters' RDP.
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
    count = ledger.release_rdp(count_noise, 1.0, 1)
    this_run = curve_add(ledger.release_rdp(noise_multiplier, sample_rate, steps), count)
    with transaction.atomic():
        lineage = ledger_lock(lineage_name)
        committed_runs = _lineage_runs(lineage, parent_version)
        total = ledger.epsilon(_lineage_rdp(committed_runs, ledger, this_run), lineage.delta)
        if total > lineage.epsilon_cap + 1e-9:
            committed = (ledger.epsilon(_lineage_rdp(committed_runs, ledger), lineage.delta)
                         if committed_runs else 0.0)
            raise BudgetExceeded(
                f"This run would bring lineage {lineage.name!r} (with its parent model's ancestry) to "
                f"epsilon {total:.3f}, past its cap {lineage.epsilon_cap}; raise the noise multiplier or "
                "train fewer epochs. A new lineage does not help: it composes the ancestry of the model it "
                "fine-tunes.",
                details={"requested": epsilon, "committed": committed, "total": total,
                         "cap": lineage.epsilon_cap})
        _check_consents(items)
        by_subject = {pseudonym(i.user_id): i for i in items}
        sums = subject_sums(list(by_subject), ledger)
        # Checked on the image (this account and those holding a copy), shown per account
        image = _filter_epsilons(
            {s: curve_add(c, this_run) for s, c in image_sums(items, sums, ledger).items()}, ledger)
        over = {s for s, e in image.items() if e > settings.DP_USER_EPSILON_CAP + 1e-9}
        after = _filter_epsilons({s: curve_add(c, this_run) for s, c in sums.items()}, ledger)
        if len(over) == len(by_subject):
            raise BudgetExceeded(
                f"This run would take every participant past the per-account cap "
                f"{settings.DP_USER_EPSILON_CAP}; raise the noise multiplier or train fewer epochs.",
                details={"participants_over_cap": len(over), "user_cap": settings.DP_USER_EPSILON_CAP})
        included = [i for s, i in by_subject.items() if s not in over]
        entries = _entries(included)
        run = TrainingRun.objects.create(
            lineage=lineage, created_at=clock.now(), manifest_sha256=manifest_sha256(entries),
            participants=participants, count_noise=count_noise, sample_rate=sample_rate,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, steps=steps, delta=delta,
            accountant=accountant, epsilon_reserved=epsilon, parent_version=parent_version,
            rdp=curve_dump(this_run), lineage_epsilon_after=total)
        _charge({s: sums[s] for s in by_subject if s not in over}, this_run)
        _digests_store(items)
        # Each person's filter epsilon with this run, computed above under the lock: stored, read by pages
        ManifestEntry.objects.bulk_create([ManifestEntry(run=run, epsilon_after=after[e["subject"]], **e)
                                           for e in entries])
        audit_append(action=AuditAction.TRAINING_RESERVED, actor_id=None, subject="training",
                     object_ref=f"run:{run.id}",
                     details={"manifest_sha256": run.manifest_sha256, "participants_released": participants,
                              "epsilon": epsilon, "delta": delta, "lineage": lineage.name,
                              "left_out_over_cap": len(over)})
        if over:
            _record_count_charge(lineage=lineage, items=[by_subject[s] for s in sorted(over)],
                                 sums={s: sums[s] for s in over}, participants=participants,
                                 count_noise=count_noise, delta=delta, accountant=accountant, ledger=ledger)
    return run


def _entries(items: list[ManifestItem]) -> list[dict[str, str]]:
    return [{"subject": pseudonym(i.user_id), "photo_id": str(i.photo_id),
             "consent_record_id": str(i.consent_record_id)} for i in items]


def count_release_charge(*, lineage_name: str, items: list[ManifestItem], participants: int,
                         count_noise: float, delta: float, accountant: str,
                         ledger: Accountant) -> TrainingRun:
    """Record a refused run: its noisy count was released, so every person it counted is charged for it.

    No training happened: the row's DP-SGD entry has 0 steps, and the lineage's models are not charged.
    """
    with transaction.atomic():
        lineage = ledger_lock(lineage_name)
        sums = subject_sums([pseudonym(i.user_id) for i in items], ledger)
        return _record_count_charge(lineage=lineage, items=items, sums=sums, participants=participants,
                                    count_noise=count_noise, delta=delta, accountant=accountant,
                                    ledger=ledger)


def _record_count_charge(*, lineage: Lineage, items: list[ManifestItem], sums: dict[str, Curve],
                         participants: int, count_noise: float, delta: float, accountant: str,
                         ledger: Accountant) -> TrainingRun:
    """A refused run row charging these people the released count; under the ledger lock."""
    entries = _entries(items)
    count = ledger.release_rdp(count_noise, 1.0, 1)
    after = _filter_epsilons(_charge(sums, count), ledger)
    _digests_store(items)
    now = clock.now()
    # The count's own epsilon at the run's delta, as the run's row states a release (the filter is above)
    epsilon = ledger.epsilon(count, delta)
    run = TrainingRun.objects.create(
        lineage=lineage, status=RunStatus.REFUSED, created_at=now, finished_at=released_time(now),
        manifest_sha256=manifest_sha256(entries), participants=participants, count_noise=count_noise,
        sample_rate=1.0, noise_multiplier=0.0, max_grad_norm=0.0, steps=0, delta=delta,
        accountant=accountant, epsilon_reserved=epsilon, epsilon_spent=epsilon, rdp=curve_dump(count))
    ManifestEntry.objects.bulk_create([ManifestEntry(run=run, epsilon_after=after[e["subject"]], **e)
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
    if duplicate_images(items):
        raise Conflict("A manifest may hold an image only once (an exact or a near copy: one perceptual-hash "
                       "part in common), whichever account uploaded it.")
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
