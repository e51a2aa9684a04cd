"""The synthetic quality benchmark: generator output against ground truth renderings of held-out people."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from inference.generator.age_estimator import AgeEstimator
from inference.generator.model import to_images, to_tensor
from inference.generator.synthetic import DETECTOR_JITTER, make_dataset

HELDOUT_SEED = 1_000_003  # a seed no training run uses: these identities are never trained on
BENCH_AGES = (5.0, 20.0, 35.0, 50.0, 65.0, 80.0)

Generator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, 3, H, W), (B,) -> (B, 3, H, W)


@dataclass(frozen=True)
class Pairs:
    """Held-out identities rendered at one age (source) and at another (target, the ground truth)."""

    sources: np.ndarray  # (P, H, W, 3) uint8
    target_ages: np.ndarray  # (P,) float32 years
    targets: np.ndarray  # (P, H, W, 3) uint8
    identities: int


def heldout_pairs(n_identities: int, *, size: int = 128, ages: Sequence[float] = BENCH_AGES,
                  seed: int = HELDOUT_SEED) -> Pairs:
    """Every ordered pair of distinct ages for `n_identities` identities the training never saw."""
    faces = make_dataset(n_identities, ages, seed, size=size, framing_jitter=DETECTOR_JITTER)
    idx = [
        (i, s, t) for i in range(n_identities) for s in range(len(ages)) for t in range(len(ages)) if s != t
    ]
    i, s, t = (np.array(v) for v in zip(*idx, strict=True))
    return Pairs(sources=faces.images[i, s], target_ages=faces.ages[i, t], targets=faces.images[i, t],
                 identities=n_identities)


@torch.inference_mode()
def generate(generator: Generator, sources: np.ndarray, ages: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run the generator over uint8 faces (P, H, W, 3) in batches: (P, H, W, 3) uint8."""
    out = [
        to_images(
            generator(to_tensor(sources[i : i + batch_size]), torch.from_numpy(ages[i : i + batch_size]))
        )
        for i in range(0, len(sources), batch_size)
    ]
    return np.concatenate(out)


@torch.inference_mode()
def estimate_ages(estimator: AgeEstimator, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Estimated ages (P,) of uint8 faces (P, H, W, 3)."""
    return np.concatenate([estimator(to_tensor(images[i:i + batch_size])).numpy()
                           for i in range(0, len(images), batch_size)])


def score(outputs: np.ndarray, pairs: Pairs, estimator: AgeEstimator) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM against the ground truth, and mean age error (years) by the estimator."""
    psnr = [
        peak_signal_noise_ratio(t, o, data_range=255) for o, t in zip(outputs, pairs.targets, strict=True)
    ]
    ssim = [structural_similarity(t, o, channel_axis=2, data_range=255)
            for o, t in zip(outputs, pairs.targets, strict=True)]
    age_error = np.abs(estimate_ages(estimator, outputs) - pairs.target_ages)
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "age_error": float(age_error.mean())}


def benchmark(generator: Generator, estimator: AgeEstimator, pairs: Pairs) -> dict[str, object]:
    """The model against the identity baseline (the input returned unchanged) on the same held-out pairs."""
    estimator.eval()
    return {
        "identities": pairs.identities,
        "pairs": len(pairs.target_ages),
        "model": score(generate(generator, pairs.sources, pairs.target_ages), pairs, estimator),
        "identity_baseline": score(pairs.sources, pairs, estimator),
        "estimator_error_on_ground_truth": float(
            np.abs(estimate_ages(estimator, pairs.targets) - pairs.target_ages).mean()),
    }
