"""A DP training run end to end: eligible set → noisy count and plan → budget reservation → DP fine-tune →
version.

The privacy unit is an account's photo with its near copies: one photo per account, none showing more than
one face, and an image held by several accounts (the same pixels, or a perceptual-hash match: a re-encode,
a mild resize) enters a run once and is capped as one across accounts and runs; a crop, or one person's
other photos, are not matched (docs/training.md). What leaves a run (model, card, API rows) is either
DP-accounted or public: the participant count is released with Gaussian noise and the plan is made from
that noisy count, so the sample rate, steps and delta it fixes reveal nothing further; losses and batch
statistics are not kept.
"""

from __future__ import annotations

import hashlib
import io
import math
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from PIL import Image

from governance import clock
from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.errors import CohortTooSmall, IntegrityFailure, InvalidInput, TimeveilError
from governance.models import PrivacyAudit, RunStatus, TrainingRun
from governance.training import (
    ManifestItem,
    count_release_charge,
    image_digests,
    ledger_lock,
    privacy_audit_record,
    run_ancestry,
    run_beat,
    run_entries,
    run_fail_stale,
    run_finish,
    run_reserve,
    run_start,
    training_candidates,
    users_with_budget,
)
from inference.generator.age_estimator import AgeEstimator
from inference.generator.model import AgeGenerator
from inference.generator.registry import SHIPPED, ModelRegistry, RegistryError
from inference.generator.teacher import TEACHER_OFFSETS, teacher_pairs
from inference.serving.apparent_age import estimate_age
from inference.serving.faces import NoFaceFound, find_face
from inference.serving.phash import hash_blocks, perceptual_hash
from webplatform.encrypted_store import object_get
from webplatform.heartbeat import heartbeat
from webplatform.models_registry import model_registry
from webplatform.photos.models import Photo
from webplatform.taskqueue import TRAINING, publish

from .ledger import ancestry_epsilon, ancestry_filter_epsilon, ledger_accountant

PRIVACY_UNIT = ("one account's photo with its near copies: at most one photo per account, no photo showing "
                "more than one face, and an image held by several accounts (the same pixels, or a "
                "perceptual-hash match such as a re-encode or a mild resize) used once per run and capped as "
                "one across runs; a cropped or edited copy, or one person's different photos in several "
                "accounts, count as different people")


@dataclass(frozen=True)
class RunRequest:
    """What an operator asks for: a target epsilon or a noise multiplier, and how long to train."""

    epochs: float = 1.0
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    batch_size: int = 16
    max_grad_norm: float = 1.0
    lr: float = 1e-4
    lineage: str = ""


@dataclass(frozen=True)
class RunPlan:
    """A run's public parameters, all derived from the noisy participant count."""

    participants: int  # released: exact count + Gaussian noise of std count_noise, rounded, >= 0
    count_noise: float
    sample_rate: float
    steps: int
    delta: float
    noise_multiplier: float
    epsilon: float  # the run's own release (DP-SGD steps and the count) composed
    accountant: str


@dataclass(frozen=True)
class Fingerprint:
    sha256: str  # of the decoded pixels: the same pixels in another container or with other metadata
    digests: tuple[str, ...]  # keyed parts of the perceptual hash: a re-encode, a flipped bit, a mild resize


def _fingerprint(photo: Photo) -> Fingerprint | None:
    """What identifies a photo's image across accounts, from its decrypted pixels; None if unreadable.
    Neither matches a crop or a real edit; an image too flat to hash perceptually has no digests."""
    try:
        data = object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                          name=photo.storage_name)
    except TimeveilError:  # key destroyed by an erasure, or the object failed its integrity check
        return None
    try:
        pixels = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
    except (OSError, Image.DecompressionBombError):  # not an image we can read: it could not be trained on
        return None
    finally:
        del data
    bits = perceptual_hash(pixels)
    return Fingerprint(sha256=hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest(),
                       digests=image_digests(hash_blocks(bits)) if bits is not None else ())


def eligible_items() -> list[ManifestItem]:
    """One photo per person with active training consent, with budget left, showing one face, each image once.

    Per account: only the photo its owner chose to keep for training, within retention; an account that
    chose none is left out (the consent's words: "one photo of yours, which you choose"). A photo counted
    with more than one face at upload is refused (another face is somebody else's data). Each photo is
    decrypted in memory to hash its pixels and its perceptual hash; an image already taken from another
    account (the same pixels or a hash part in common) is dropped.
    """
    now = clock.now()
    items: list[ManifestItem] = []
    seen: set[str] = set()  # pixel hashes and perceptual-hash digests already taken
    candidates = training_candidates()
    # Whose budget is spent: the Rényi filter reading the ledger, never their data
    with_budget = users_with_budget([c.user_id for c in candidates], ledger_accountant())
    for candidate in candidates:
        if candidate.user_id not in with_budget:
            continue
        photo = Photo.objects.filter(owner_id=candidate.user_id, expires_at__gt=now,
                                     kept_for_training=True).first()
        if photo is None or (photo.face_count or 0) > 1:  # None: not counted at upload; _load_faces checks
            continue  # the chosen photo shows somebody else too: refused, not swapped for another photo
        found = _fingerprint(photo)
        if found is None or found.sha256 in seen or seen.intersection(found.digests):
            continue
        seen.update((found.sha256, *found.digests))
        items.append(ManifestItem(user_id=candidate.user_id, photo_id=photo.id,
                                  consent_record_id=candidate.consent_record_id, content_sha256=found.sha256,
                                  digests=found.digests))
    return items


def released_count(n: int) -> int:
    """The participant count with Gaussian noise (std DP_COUNT_NOISE), rounded, >= 0.

    Drawn from a SecretStream (a fresh 128-bit key from the OS CSPRNG), like every other noise of a run.
    """
    from inference.dp.randomness import SecretStream  # Opacus stays out of workers' start-up

    return max(0, round(n + SecretStream().normal(settings.DP_COUNT_NOISE)))


def _check_request(request: RunRequest) -> None:
    """What is wrong with the request itself, before anything is counted."""
    if (request.target_epsilon is None) == (request.noise_multiplier is None):
        raise InvalidInput("Give exactly one of target_epsilon or noise_multiplier.")
    if request.batch_size < 1 or request.epochs <= 0:
        raise InvalidInput("batch_size must be at least 1 and epochs positive.")
    if request.noise_multiplier is not None and not request.noise_multiplier > 0:
        raise InvalidInput("noise_multiplier must be positive.")
    if request.target_epsilon is not None and not request.target_epsilon > 0:
        raise InvalidInput("target_epsilon must be positive.")


def run_delta(participants: int) -> float:
    """A run's delta from its released count: DP_DELTA, or well below 1/N for a large N."""
    return min(settings.DP_DELTA, 1.0 / (10 * max(participants, 1)))


def run_plan(request: RunRequest, participants: int) -> RunPlan:
    """Sample rate, steps, delta, noise and epsilon from the released (noisy) participant count.

    The cohort floor is applied to that released count, never to the exact one, and a target epsilon
    covers the whole release: the steps composed with the count. A refusal names no figure derived from the
    count (sample rate, steps, delta).
    """
    from inference.dp import compose_epsilon, noise_for_epsilon  # Opacus stays out of workers' start-up

    _check_request(request)
    if participants < settings.DP_MIN_PARTICIPANTS:
        raise CohortTooSmall(f"A DP training run needs at least {settings.DP_MIN_PARTICIPANTS} "
                             "eligible people; wait until more have opted in (DP_MIN_PARTICIPANTS).",
                             details={"minimum": settings.DP_MIN_PARTICIPANTS})
    sample_rate = min(1.0, request.batch_size / max(participants, 1))  # Poisson at exactly this rate
    steps = max(1, math.ceil(request.epochs / sample_rate))
    delta = run_delta(participants)
    accountant, count = settings.DP_ACCOUNTANT, (settings.DP_COUNT_NOISE, 1.0, 1)
    try:
        noise = request.noise_multiplier if request.noise_multiplier is not None else noise_for_epsilon(
            target_epsilon=float(request.target_epsilon or 0), sample_rate=sample_rate, steps=steps,
            delta=delta, accountant=accountant, extra=[count])
        epsilon = compose_epsilon(history=[(noise, sample_rate, steps), count], delta=delta,
                                  accountant=accountant)
    except ValueError as exc:  # the accountant's own message names the sample rate: not shown
        raise InvalidInput("No noise level reaches this target epsilon over this many epochs: raise the "
                           "target or train fewer epochs.") from exc
    return RunPlan(participants=participants, count_noise=settings.DP_COUNT_NOISE, sample_rate=sample_rate,
                   steps=steps, delta=delta, noise_multiplier=noise, epsilon=epsilon, accountant=accountant)


def training_run_create(request: RunRequest) -> TrainingRun:
    """Freeze the manifest and reserve the epsilon (refused before anything trains if over a cap or too
    few).

    Once the noisy count is drawn it is released, whatever follows: a refusal after it (cohort floor,
    target out of reach, a cap, a consent that changed) is recorded as a refused run that charges the
    count's epsilon to every person it counted, so repeated attempts cannot average it for free.
    """
    _check_request(request)
    items = eligible_items()
    lineage = request.lineage or settings.DP_LINEAGE
    failure: TimeveilError | None = None
    with transaction.atomic():
        ledger_lock(lineage)
        # Under the lock, the filter admits the count for each person before it is drawn: two attempts at
        # once cannot both release a count for somebody whom only one more fits.
        # Checked on each image: with the spend of other accounts holding a copy of it (stored digests)
        with_budget = users_with_budget([i.user_id for i in items], ledger_accountant(), items)
        items = [i for i in items if i.user_id in with_budget]
        if not items:  # says only that nobody at all is eligible (docs/training.md: what remains)
            raise InvalidInput("No eligible photos: nobody with training consent has a photo within "
                               "retention.")
        participants = released_count(len(items))
        try:
            with transaction.atomic():
                plan = run_plan(request, participants)
                return run_reserve(
                    lineage_name=lineage, items=items, epsilon=plan.epsilon,
                    delta=plan.delta, sample_rate=plan.sample_rate, noise_multiplier=plan.noise_multiplier,
                    max_grad_norm=request.max_grad_norm, steps=plan.steps, accountant=plan.accountant,
                    participants=plan.participants, count_noise=plan.count_noise, ledger=ledger_accountant(),
                    parent_version=model_registry().promoted_version() or "",
                )
        except TimeveilError as exc:
            count_release_charge(lineage_name=lineage, items=items, participants=participants,
                                 count_noise=settings.DP_COUNT_NOISE, delta=run_delta(participants),
                                 accountant=settings.DP_ACCOUNTANT, ledger=ledger_accountant())
            failure = exc  # raised once the charge is committed
    assert failure is not None  # the block either returned the run or recorded the refusal
    raise failure


@dataclass(frozen=True)
class TrainingFaces:
    """The run's faces, decrypted in memory only, with what the teacher makes of each."""

    faces: np.ndarray  # (N, S, S, 3) uint8, registered by the mesh
    ages: np.ndarray  # (N,) current age as the real-face estimator reads it
    renders: np.ndarray  # (N, K, S, S, 3) uint8: the aging layers' rendering at K other ages
    render_ages: np.ndarray  # (N, K)


def _load_faces(run: TrainingRun, size: int) -> TrainingFaces:
    """Decrypt the manifest's photos in memory: each face registered by the mesh, its current age, and the
    aging layers' renderings of it at ages around its own (what the generator learns from)."""
    faces, ages, renders, render_ages = [], [], [], []
    for entry in run_entries(run):
        photo = Photo.objects.filter(pk=entry["photo_id"]).first()
        if photo is None:
            continue  # erased or expired since the snapshot: dropping a user only strengthens the bound
        try:
            data = object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                              name=photo.storage_name)
        except (IntegrityFailure, FileNotFoundError):  # erased (key destroyed) or purged since the snapshot
            continue  # a storage outage is not swallowed: it fails the run, which spends its reservation
        image = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
        del data
        try:
            face = find_face(image)
        except NoFaceFound:
            continue
        if face.faces_in_photo > 1:  # somebody else's face too (a photo uploaded before faces were counted)
            continue
        age = estimate_age(image, face)
        x, taught, taught_ages = teacher_pairs(image, face, age, size)
        faces.append(x)
        ages.append(age)
        renders.append(taught)
        render_ages.append(taught_ages)
    if not faces:
        k = len(TEACHER_OFFSETS)
        return TrainingFaces(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32),
                             np.zeros((0, k, size, size, 3), np.uint8), np.zeros((0, k), np.float32))
    return TrainingFaces(np.stack(faces), np.array(ages, np.float32), np.stack(renders),
                         np.stack(render_ages))


def training_run_execute(run: TrainingRun, request: RunRequest, *, progress: bool = True) -> TrainingRun:
    """Train a RESERVED run under DP (once: any other state is refused), register the version with its
    card."""
    registry = model_registry()
    run = run_start(run)  # Conflict unless RESERVED; from here the reservation is spent whatever happens
    # The beat says this process still trains the run; once it stops, runs_sweep fails the run.
    with heartbeat(lambda: run_beat(run.id), every=settings.TRAINING_HEARTBEAT_SECONDS, name=f"run {run.id}"):
        return _train(run, request, registry, progress=progress)


def _train(run: TrainingRun, request: RunRequest, registry: Any, *, progress: bool) -> TrainingRun:
    """The body of a started run: fine-tune under DP, register the version, finish the run either way."""
    # Opacus and scikit-image load when a run trains: every worker imports this module (task discovery)
    from inference.dp import DPConfig, train_dp
    from inference.dp.audit import code_version
    from inference.generator.quality import benchmark, heldout_pairs

    try:
        if not run.parent_version:
            raise InvalidInput("No promoted base model to fine-tune; run `manage.py train_base` first.")
        model, card = registry.load(run.parent_version)
        # The synthetic age estimator only scores the public synthetic benchmark before and after:
        # never a loss.
        estimator, _ = registry.load(card["age_estimator"])
        if not isinstance(model, AgeGenerator) or not isinstance(estimator, AgeEstimator):
            raise InvalidInput(f"{run.parent_version} is not a generator with an age estimator.")
        data = _load_faces(run, model.config.image_size)
        if len(data.faces) == 0:
            run_finish(run, error="no usable faces in the manifest")
            return run
        # The divisor of the noisy sum is public: the sample rate times the released count.
        config = DPConfig(noise_multiplier=run.noise_multiplier, max_grad_norm=run.max_grad_norm,
                          sample_rate=run.sample_rate, steps=run.steps, delta=run.delta,
                          accountant=run.accountant,
                          expected_batch_size=max(1.0, run.sample_rate * run.participants), lr=request.lr)
        pairs = heldout_pairs(8, size=model.config.image_size)  # synthetic, public: scoring them is free
        before = benchmark(model, estimator, pairs)
        result = _dp_trainer(train_dp)(model=model, faces=data.faces, source_ages=data.ages,
                                       renders=data.renders, render_ages=data.render_ages, config=config,
                                       progress=progress)
        metrics = {"before": before, "after": benchmark(result.model.eval(), estimator, pairs)}
        epsilon, delta = ancestry_epsilon(run)
        version = registry.register(result.model, model.config, {
            "dp": True, "lineage": run.lineage.name, "parent": run.parent_version,
            "training_run": str(run.id),
            "ancestry": [str(r.id) for r in run_ancestry(run.parent_version)] + [str(run.id)],
            "age_estimator": card["age_estimator"], "manifest_sha256": run.manifest_sha256,
            # epsilon: PRV's, proven for runs fixed in advance; epsilon_filter: the Rényi filter's over the
            # same ancestry, proven for runs chosen adaptively (as ours are), the kind the lineage cap checks
            "epsilon": epsilon, "delta": delta, "epsilon_filter": ancestry_filter_epsilon(run, delta),
            "epsilon_this_run": run.epsilon_reserved,
            "delta_this_run": run.delta,
            "participants_released": run.participants, "participants_noise_std": run.count_noise,
            "noise_multiplier": run.noise_multiplier, "max_grad_norm": run.max_grad_norm,
            "sample_rate": run.sample_rate, "steps": run.steps, "accountant": run.accountant,
            "metrics": metrics,
            "privacy_unit": PRIVACY_UNIT, "dp_code_version": code_version(),
            "training_data": "one photo per person with active training consent, decrypted in memory only",
        }, version=f"{run.lineage.name}-dp-{str(run.id)[:8]}")
        run_finish(run, model_version=version, metrics=metrics)
    except Exception as exc:
        # Data may have been touched: the whole reservation counts as spent, and the run never runs again.
        run_finish(run, error=f"{type(exc).__name__}: {exc}")
        raise
    return run


def training_run_queue(run: TrainingRun, request: RunRequest) -> bool:
    """Hand a reserved run to the training workers through its row, the outbox; False if the broker is down.

    Refused by the broker, the run stays reserved with its request, and runs_sweep publishes it once the
    broker answers.
    """
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RESERVED).update(queued_request=asdict(request))
    return training_run_publish(run_id=run.pk)


def training_run_publish(*, run_id: uuid.UUID) -> bool:
    """Send a queued run's message (its id only); a duplicate is harmless: run_start admits a run once."""
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RESERVED).update(published_at=clock.now())
    if publish(TRAINING, str(run_id)):
        return True
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RESERVED).update(published_at=None)
    return False


def runs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fail running runs whose worker stopped heartbeating; publish queued runs that have no live message."""
    now = now or clock.now()
    counts = {"failed": 0, "published": 0, "unpublished": 0}
    stale_before = now - timedelta(seconds=settings.TRAINING_STALE_SECONDS)
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))
    for run_id in list(stale.values_list("pk", flat=True)):
        counts["failed"] += run_fail_stale(run_id, stale_before=stale_before)
    republish_before = now - timedelta(seconds=settings.TRAINING_REPUBLISH_SECONDS)
    pending = list(TrainingRun.objects.filter(status=RunStatus.RESERVED, queued_request__isnull=False).filter(
        Q(published_at__isnull=True) | Q(published_at__lt=republish_before)).order_by("created_at")
        .values_list("pk", flat=True))
    for run_id in pending:
        if not training_run_publish(run_id=run_id):
            break  # the broker is down: the next sweep tries again
        counts["published"] += 1
    counts["unpublished"] = len(pending) - counts["published"]
    return counts


def privacy_audit_run() -> PrivacyAudit:
    """Audit the DP code empirically at the pinned settings (inference.dp.audit.audit: linear canaries at
    each pinned claim, and the clipping probe through the shipped generator), record the verdict, and keep
    it in the registry as the certificate promotion needs."""
    from inference.dp.audit import audit, code_version  # Opacus stays out of workers' start-up

    # The generator DP training fine-tunes, with trained weights: a fresh one passes gradient to its last
    # layer only, and the probe would cover nothing else.
    model, _ = ModelRegistry(SHIPPED).load_promoted()
    if not isinstance(model, AgeGenerator):
        raise InvalidInput("The shipped promoted model is not a generator: the clipping probe needs one.")
    version = code_version()
    report = {"code_version": version, **audit(model=model)}
    recorded = privacy_audit_record(code_version=version, passed=report["passed"], report=report)
    model_registry().record_audit(report)
    return recorded


def model_promote(*, version: str, actor_id: int | None = None) -> None:
    """Make a version the promoted one (the next DP fine-tune starts from it; jobs are served by the aging
    layers). The registry refuses a DP version without its privacy fields or a passing audit of its code."""
    try:
        model_registry().promote(version)
    except RegistryError as exc:
        raise InvalidInput(str(exc)) from exc
    audit_append(action=AuditAction.MODEL_PROMOTED, actor_id=actor_id, subject="model",
                 object_ref=f"model:{version}")


def _dp_trainer(train_dp: Any) -> Any:
    """train_dp in this process, or over DP_TRAIN_PROCESSES local ranks (Opacus DPDDP,
    inference/dp/distributed.py): the same run, accounted once, the noise added once."""
    if settings.DP_TRAIN_PROCESSES <= 1:
        return train_dp
    from inference.dp.distributed import Ranks, train_dp_ranks  # Opacus' DPDDP: only for a run over ranks

    return partial(train_dp_ranks, ranks=Ranks(processes=settings.DP_TRAIN_PROCESSES,
                                               backend=settings.DP_TRAIN_BACKEND))
