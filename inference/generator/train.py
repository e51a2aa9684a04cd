"""Training the base generator and the age estimator on synthetic faces, optionally with a licensed folder."""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from inference.generator.age_estimator import AgeEstimator, EstimatorConfig
from inference.generator.model import AgeGenerator, GeneratorConfig, to_tensor
from inference.generator.quality import benchmark, heldout_pairs
from inference.generator.registry import ModelRegistry
from inference.generator.synthetic import DETECTOR_JITTER, SyntheticFaces, make_dataset

# ages every training identity is rendered at
AGE_GRID = (3.0, 14.0, 25.0, 36.0, 47.0, 58.0, 69.0, 80.0, 91.0)
AGE_JITTER = 5.5  # years around each grid age, so that together they cover every age from 1 to 96
SSIM_WEIGHT = 0.3  # of (1 - SSIM) in the generator loss, next to squared errors of about 0.03
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
SYNTHETIC_DATA = ("procedural synthetic faces (inference.generator.synthetic), "
                  "seed {seed}, {n} identities x {a} ages")

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]  # (model inputs, target)


@dataclass(frozen=True)
class AgedImages:
    """Face crops with known ages, e.g. a licensed dataset."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    ages: np.ndarray  # (N,) float32 years


def _labelled_files(root: Path) -> list[tuple[Path, float]]:
    """(path, age) from labels.csv (columns filename,age) if present, else from names like `34_any.jpg`."""
    labels = root / "labels.csv"
    if labels.exists():
        with labels.open(newline="") as f:
            rows = [(root / r["filename"], float(r["age"])) for r in csv.DictReader(f)]
        outside = [str(p) for p, _ in rows if not p.resolve().is_relative_to(root.resolve())]
        if outside:
            raise ValueError(f"labels.csv names files outside {root}: {outside[:3]}")
        return rows
    named = ((p, re.match(r"(\d+(?:\.\d+)?)_", p.name)) for p in sorted(root.iterdir()))
    return [(p, float(m.group(1))) for p, m in named if m and p.suffix.lower() in IMAGE_SUFFIXES]


def load_age_folder(data_dir: str | Path, size: int) -> AgedImages:
    """Load face crops with ages, EXIF-rotated, centre-cropped square and resized to `size`."""
    root = Path(data_dir)
    rows = _labelled_files(root)
    if not rows:
        raise ValueError(
            f"no labelled images in {root}: add labels.csv (filename,age) or name files <age>_*.png"
        )
    images = np.empty((len(rows), size, size, 3), np.uint8)
    for i, (path, _) in enumerate(rows):
        with Image.open(path) as im:
            square = ImageOps.fit(
                ImageOps.exif_transpose(im).convert("RGB"), (size, size), Image.Resampling.LANCZOS
            )
        images[i] = np.asarray(square)
    return AgedImages(images=images, ages=np.array([a for _, a in rows], np.float32))


def render_training_faces(n_identities: int, seed: int, size: int) -> SyntheticFaces:
    """The synthetic training set: each identity at every grid age (jittered), framing jittered."""
    return make_dataset(n_identities, AGE_GRID, seed, size=size, age_jitter=AGE_JITTER,
                        framing_jitter=DETECTOR_JITTER)


def _mirror(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Mirror the images (B, H, W, 3) where `flip` (B,) is set: faces are left-right symmetric enough."""
    images[flip] = images[flip, :, ::-1]
    return images


def sample_pairs(faces: SyntheticFaces, batch_size: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source (B, 3, H, W), target age (B,), target (B, 3, H, W)): one identity at two random ages."""
    n, a = faces.ages.shape
    ids = rng.integers(n, size=batch_size)
    src, dst = rng.integers(a, size=batch_size), rng.integers(a, size=batch_size)
    flip = rng.random(batch_size) < 0.5  # mirror source and target together
    x, y = _mirror(faces.images[ids, src], flip), _mirror(faces.images[ids, dst], flip)
    return to_tensor(x), torch.from_numpy(faces.ages[ids, dst]), to_tensor(y)


def sample_reconstructions(real: AgedImages, batch_size: int,
                           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpaired real photos asked for their own age: the target is the input (teaches real texture)."""
    ids = rng.integers(len(real.ages), size=batch_size)
    x = to_tensor(_mirror(real.images[ids], rng.random(batch_size) < 0.5))
    return x, torch.from_numpy(real.ages[ids]), x


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of (B, C, H, W) images in [-1, 1], as the benchmark computes it (7x7 mean window)."""
    a, b = (a + 1.0) / 2.0, (b + 1.0) / 2.0  # to [0, 1], where the usual constants apply

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=1)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b, cov = mean(a * a) - mu_a**2, mean(b * b) - mu_b**2, mean(a * b) - mu_a * mu_b
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def generator_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error on pixels and on image gradients, plus structural dissimilarity.

    Squared, not absolute: most pixels do not change with age, and L1's pull towards the median keeps the
    residual at zero (the identity); squared error moves it to the conditional mean. That mean is blurry
    where the future is uncertain, so the SSIM term asks for local structure (edges, lines) to be kept.
    """
    def grads(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return t[..., 1:, :] - t[..., :-1, :], t[..., :, 1:] - t[..., :, :-1]

    (oy, ox), (ty, tx) = grads(out), grads(target)
    squared = F.mse_loss(out, target) + 0.5 * (F.mse_loss(oy, ty) + F.mse_loss(ox, tx))
    return squared + SSIM_WEIGHT * (1.0 - ssim(out, target))


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def fit(
    model: nn.Module,
    batches: Callable[[], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    lr: float,
    device: torch.device,
    progress: bool,
    desc: str,
) -> dict[str, float]:
    """AdamW over `steps` batches; returns the final (smoothed) loss and the wall time."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    smoothed, start = float("nan"), time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 20))
        inputs, target = batches()
        loss = loss_fn(model(*(t.to(device) for t in inputs)), target.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smoothed = loss.item() if math.isnan(smoothed) else 0.98 * smoothed + 0.02 * loss.item()
        bar.set_postfix(loss=f"{smoothed:.4f}")
    return {"final_loss": smoothed, "train_seconds": time.perf_counter() - start, "steps": steps}


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def train_base(config: GeneratorConfig, *, steps: int, batch_size: int, seed: int, progress: bool = True,
               data_dir: str | Path | None = None, identities: int = 400, lr: float = 3e-4,
               device: str | None = None) -> tuple[AgeGenerator, dict[str, Any]]:
    """Train the generator from scratch on synthetic pairs (identity at source age -> same at target age).

    With `data_dir` (see load_age_folder), half of every batch is real photos reconstructed at their own
    age, so the model learns real skin and light while aging is still taught by the synthetic pairs.
    Returns the model in eval mode and training metrics for its card.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    faces = render_training_faces(identities, seed, config.image_size)
    real = load_age_folder(data_dir, config.image_size) if data_dir is not None else None
    n_real = batch_size // 2 if real is not None else 0

    def batches() -> Batch:
        x, age, y = sample_pairs(faces, batch_size - n_real, rng)
        if real is not None:
            rx, rage, ry = sample_reconstructions(real, n_real, rng)
            x, age, y = torch.cat([x, rx]), torch.cat([age, rage]), torch.cat([y, ry])
        return (x, age), y

    model = AgeGenerator(config)
    metrics = fit(model, batches, generator_loss, steps=steps, lr=lr, device=_device(device),
                  progress=progress, desc=f"train {config.name} generator")
    data = SYNTHETIC_DATA.format(seed=seed, n=identities, a=len(AGE_GRID))
    if real is not None:
        data += f"; plus {len(real.ages)} real photos from {Path(data_dir).name} (reconstruction at own age)"  # type: ignore[arg-type]
    return model.cpu().eval(), {**metrics, "batch_size": batch_size, "lr": lr, "training_data": data}


def train_age_estimator(config: EstimatorConfig | None = None, *, steps: int, batch_size: int, seed: int,
                        progress: bool = True, data_dir: str | Path | None = None, identities: int = 300,
                        lr: float = 1e-3, device: str | None = None) -> tuple[AgeEstimator, dict[str, Any]]:
    """Train the age regressor (L1 in years) on synthetic faces, and on a labelled folder if given."""
    config = config or EstimatorConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    faces = render_training_faces(identities, seed, config.image_size)
    flat = AgedImages(images=faces.images.reshape(-1, *faces.images.shape[2:]), ages=faces.ages.reshape(-1))
    real = load_age_folder(data_dir, config.image_size) if data_dir is not None else None

    def batches() -> Batch:
        source = real if real is not None and rng.random() < 0.5 else flat
        ids = rng.integers(len(source.ages), size=batch_size)
        x = to_tensor(_mirror(source.images[ids], rng.random(batch_size) < 0.5))
        return (x,), torch.from_numpy(source.ages[ids])

    model = AgeEstimator(config)
    metrics = fit(model, batches, lambda out, age: (out - age).abs().mean(), steps=steps, lr=lr,
                  device=_device(device), progress=progress, desc="train age estimator")
    data = SYNTHETIC_DATA.format(seed=seed, n=identities, a=len(AGE_GRID))
    if real is not None:
        data += f"; plus {len(real.ages)} labelled photos from {Path(data_dir).name}"  # type: ignore[arg-type]
    return model.cpu().eval(), {**metrics, "batch_size": batch_size, "lr": lr, "training_data": data}


def build_base_model(out: str | Path, *, preset: str = "small", steps: int = 1500, estimator_steps: int = 400,
                     batch_size: int = 16, seed: int = 0, data_dir: str | Path | None = None,
                     identities: int = 400, bench_identities: int = 24, promote: bool = True,
                     progress: bool = True) -> dict[str, Any]:
    """Reproduce the shipped base model: what `manage.py train_base` runs.

    Trains the age estimator and the generator on disjoint synthetic identities, benchmarks the generator
    against the identity baseline on held-out identities, registers both in the registry at `out` with
    their cards, and promotes the generator. Returns the two versions and the benchmark.
    """
    config = {"small": GeneratorConfig.small, "base": GeneratorConfig.base}[preset]()
    registry = ModelRegistry(out)
    estimator, est_train = train_age_estimator(
        EstimatorConfig(image_size=config.image_size), steps=estimator_steps, batch_size=32, seed=seed + 1,
        progress=progress, data_dir=data_dir)
    generator, gen_train = train_base(
        config,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        data_dir=data_dir,
        identities=identities,
    )
    pairs = heldout_pairs(bench_identities, size=config.image_size)
    metrics = benchmark(generator, estimator, pairs)
    est_version = registry.register(estimator, estimator.config, {
        "training_data": est_train.pop("training_data"), "training": est_train,
        "metrics": {"heldout_age_error": metrics["estimator_error_on_ground_truth"]},
        "intended_use": "scoring generated faces for age on the synthetic benchmark; never a training loss",
    })
    gen_version = registry.register(generator, config, {
        "training_data": gen_train.pop("training_data"), "training": gen_train, "metrics": metrics,
        "age_estimator": est_version, "lineage": config.name, "parent": None,
        "intended_use": "aging / rejuvenating an aligned face crop to a target age (1-100 years)",
        "limitations": (
            "trained on procedural synthetic faces only; on real photos it smears and does not age a "
            "face (measured for issue 8), so it is not in the serving path: jobs use the mesh-placed "
            "aging layers (inference/serving/aging.py). It stays as the starting point "
            "of DP fine-tuning. Real-photo quality needs a licensed face dataset with ages "
            "(train_base --data-dir)."
        ),
        "serves": False,
    })
    if promote:
        registry.promote(gen_version)
    return {"generator": gen_version, "estimator": est_version, "metrics": metrics}
