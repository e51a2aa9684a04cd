"""A DP training run end to end: eligible set → budget reservation → DP fine-tune → registered version."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image

from governance import clock
from governance.audit import audit_append
from governance.errors import InvalidInput
from governance.models import TrainingRun
from governance.training import (
    ManifestItem,
    run_entries,
    run_finish,
    run_reserve,
    run_start,
    training_candidates,
)
from webplatform.models_registry import model_registry
from webplatform.objects import object_get
from webplatform.photos.models import Photo


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
    seed: int = 0


def eligible_items() -> list[ManifestItem]:
    """One photo per user with active training consent: the one kept for training, else their newest."""
    now = clock.now()
    items = []
    for candidate in training_candidates():
        photo = (Photo.objects.filter(owner_id=candidate.user_id, expires_at__gt=now)
                 .order_by("-kept_for_training", "-created_at").only("id").first())
        if photo is not None:
            items.append(ManifestItem(user_id=candidate.user_id, photo_id=photo.id,
                                      consent_record_id=candidate.consent_record_id))
    return items


def run_plan(request: RunRequest, participants: int) -> dict[str, float | int | str]:
    """Sample rate, steps, delta, noise and the accountant's epsilon for a run over N participants."""
    from inference.dp import effective_sample_rate, epsilon_for, noise_for_epsilon

    if (request.target_epsilon is None) == (request.noise_multiplier is None):
        raise InvalidInput("Give exactly one of target_epsilon or noise_multiplier.")
    # The rate Opacus' Poisson loader really samples at (1/k): what is reserved is what gets spent.
    sample_rate = effective_sample_rate(n=participants, sample_rate=min(1.0, request.batch_size / participants))
    steps = max(1, math.ceil(request.epochs / sample_rate))
    delta = min(settings.DP_DELTA, 1.0 / (10 * participants))  # delta well below 1/N
    accountant = settings.DP_ACCOUNTANT
    noise = request.noise_multiplier or noise_for_epsilon(
        target_epsilon=float(request.target_epsilon or 0), sample_rate=sample_rate, steps=steps, delta=delta,
        accountant=accountant)
    epsilon = epsilon_for(noise_multiplier=noise, sample_rate=sample_rate, steps=steps, delta=delta,
                          accountant=accountant)
    return {"sample_rate": sample_rate, "steps": steps, "delta": delta, "noise_multiplier": noise,
            "epsilon": epsilon, "accountant": accountant}


def training_run_create(request: RunRequest) -> TrainingRun:
    """Freeze the manifest and reserve the epsilon (refused before anything trains if over budget)."""
    items = eligible_items()
    if not items:
        raise InvalidInput("No eligible photos: nobody with training consent has a photo within retention.")
    plan = run_plan(request, len(items))
    return run_reserve(
        lineage_name=request.lineage or settings.DP_LINEAGE, items=items, epsilon=float(plan["epsilon"]),
        delta=float(plan["delta"]), sample_rate=float(plan["sample_rate"]),
        noise_multiplier=float(plan["noise_multiplier"]), max_grad_norm=request.max_grad_norm,
        steps=int(plan["steps"]), accountant=str(plan["accountant"]),
        parent_version=model_registry().promoted_version() or "",
    )


def _load_faces(run: TrainingRun, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decrypt the manifest's photos in memory; their faces registered by the mesh (N, size, size, 3) uint8,
    and each face's current age as the real-face estimator reads it (N,)."""
    from inference.apparent_age import estimate_age
    from inference.faces import NoFaceFound, find_face, registered_crop

    faces, ages = [], []
    for entry in run_entries(run):
        photo = Photo.objects.filter(pk=entry["photo_id"]).first()
        if photo is None:
            continue  # erased or expired since the snapshot: dropping a user only strengthens the bound
        try:
            data = object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                              name=photo.storage_name)
        except Exception:  # key destroyed by an erasure after the snapshot
            continue
        image = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
        del data
        try:
            face = find_face(image)
        except NoFaceFound:
            continue
        faces.append(registered_crop(image, face, size))
        ages.append(estimate_age(image, face))
    if not faces:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32)
    return np.stack(faces), np.array(ages, np.float32)


def training_run_execute(run: TrainingRun, request: RunRequest, *, progress: bool = True) -> TrainingRun:
    """Train the reserved run under DP, register the version with its card, record what was spent."""
    from inference.age_estimator import AgeEstimator
    from inference.dp import DPConfig, train_dp
    from inference.model import AgeGenerator
    from inference.quality import benchmark, heldout_pairs

    registry = model_registry()
    run_start(run)
    try:
        if not run.parent_version:
            raise InvalidInput("No promoted base model to fine-tune; run `manage.py train_base` first.")
        model, card = registry.load(run.parent_version)
        # The age estimator was trained on synthetic faces only: never on private data.
        estimator, _ = registry.load(card["age_estimator"])
        if not isinstance(model, AgeGenerator) or not isinstance(estimator, AgeEstimator):
            raise InvalidInput(f"{run.parent_version} is not a generator with an age estimator.")
        faces, source_ages = _load_faces(run, model.config.image_size)
        if len(faces) == 0:
            run_finish(run, epsilon_spent=0.0, metrics={}, error="no usable faces in the manifest")
            return run
        config = DPConfig(noise_multiplier=run.noise_multiplier, max_grad_norm=run.max_grad_norm,
                          sample_rate=run.sample_rate, steps=run.steps, delta=run.delta, accountant=run.accountant,
                          lr=request.lr, seed=request.seed)
        pairs = heldout_pairs(8, size=model.config.image_size)
        before = benchmark(model, estimator, pairs)
        result = train_dp(model=model, faces=faces, source_ages=source_ages,
                          estimator=estimator, config=config, progress=progress)
        after = benchmark(result.model.eval(), estimator, pairs)
        metrics = {"before": before, "after": after, "training": result.metrics}
        version = registry.register(result.model, model.config, {
            "dp": True, "lineage": run.lineage.name, "parent": run.parent_version, "training_run": str(run.id),
            "age_estimator": card["age_estimator"], "manifest_sha256": run.manifest_sha256,
            "participants": run.participants, "epsilon": result.epsilon_spent, "delta": run.delta,
            "noise_multiplier": run.noise_multiplier, "max_grad_norm": run.max_grad_norm,
            "sample_rate": run.sample_rate, "steps": run.steps, "accountant": run.accountant, "metrics": metrics,
            "training_data": "one photo per user with active training consent, decrypted in memory only",
        }, version=f"{run.lineage.name}-dp-{str(run.id)[:8]}")
        run_finish(run, epsilon_spent=result.epsilon_spent, model_version=version, metrics=metrics)
    except Exception as exc:
        # Data may have been touched: the whole reservation counts as spent.
        run_finish(run, epsilon_spent=run.epsilon_reserved, metrics={}, error=f"{type(exc).__name__}: {exc}")
        raise
    return run


def model_promote(*, version: str, actor_id: int | None = None) -> None:
    """Make a version the one that serves; a DP version must carry its privacy fields."""
    from inference.registry import RegistryError

    try:
        model_registry().promote(version, require_privacy_fields=True)
    except RegistryError as exc:
        raise InvalidInput(str(exc)) from exc
    audit_append(action="model.promoted", actor_id=actor_id, subject="model", object_ref=f"model:{version}")
