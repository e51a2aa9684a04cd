"""A whole DP fine-tuning run of the age generator: `train_dp`, its input checks, and its DPResult.

Nothing derived from the private data leaves as a figure to publish: `DPResult.metrics` (losses, batch
sizes, timing) are computed from the private data and are for the operator's console only.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import nn
from tqdm import tqdm

from inference.generator.model import AgeGenerator

from .accounting import Step
from .config import DPConfig, _check_config
from .trainer import PrivateTrainer


@dataclass
class DPResult:
    model: AgeGenerator  # plain, on the CPU, eval mode; state_dict keys those of a fresh AgeGenerator
    epsilon_spent: float  # upper bound at `delta` over `history`
    delta: float
    steps: int
    metrics: dict[str, float | None]  # PRIVATE (losses, batch sizes, timing from the data): never publish
    # the accountant's (noise, sample_rate, steps): feed compose_epsilon
    history: list[Step]
    per_step: list[dict[str, float | None]] = field(default_factory=list)  # PRIVATE: step, batch, loss terms
    config: DPConfig | None = None


def _check_data(model: nn.Module, faces: np.ndarray, source_ages: np.ndarray, renders: np.ndarray,
                render_ages: np.ndarray) -> None:
    if not isinstance(model, AgeGenerator):
        raise ValueError("model must be an inference.generator.model.AgeGenerator, "
                         f"got {type(model).__name__}")
    size = model.config.image_size
    if not isinstance(faces, np.ndarray) or faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (
            size, size, 3):
        got = f"{faces.dtype} {faces.shape}" if isinstance(faces, np.ndarray) else type(faces).__name__
        raise ValueError(f"faces must be a uint8 array (N, {size}, {size}, 3) of registered RGB faces at the "
                         f"model's size, got {got}: crop them with "
                         "inference.serving.faces.registered_crop first")
    if len(faces) == 0:
        raise ValueError("faces is empty: a DP run needs at least one participant")
    ages = np.asarray(source_ages)
    if (ages.shape != (len(faces),) or not np.issubdtype(ages.dtype, np.number)
            or not np.all(np.isfinite(ages))):
        raise ValueError(f"source_ages must be {len(faces)} finite numbers (years), one per face, "
                         f"got shape {ages.shape}")
    if ages.min() < 0 or ages.max() > 120:
        raise ValueError("source_ages must be years in [0, 120]; use the estimator's reading where unknown")
    if (not isinstance(renders, np.ndarray) or renders.dtype != np.uint8 or renders.ndim != 5
            or renders.shape[0] != len(faces) or renders.shape[2:] != (size, size, 3)
            or renders.shape[1] < 1):
        got = (f"{renders.dtype} {renders.shape}" if isinstance(renders, np.ndarray)
               else type(renders).__name__)
        raise ValueError(f"renders must be a uint8 array (N, K, {size}, {size}, 3): each face rendered by "
                         f"the teacher at K ages (inference.generator.teacher.teacher_pairs), got {got}")
    targets = np.asarray(render_ages)
    if targets.shape != renders.shape[:2] or not np.all(np.isfinite(targets)):
        raise ValueError(f"render_ages must be {renders.shape[:2]} finite years, the age of each rendering")


def train_dp(*, model: AgeGenerator, faces: np.ndarray, source_ages: np.ndarray, renders: np.ndarray,
             render_ages: np.ndarray, config: DPConfig, progress: bool = True,
             on_step: Callable[[int, dict[str, float]], None] | None = None) -> DPResult:
    """Fine-tune a copy of `model` with DP-SGD on opted-in faces; the caller's model is left untouched.

    Args:
        model: the generator to start from (an AgeGenerator; copied, never modified).
        faces: (N, H, W, 3) uint8 registered faces at the model's image size, one per person.
        source_ages: (N,) each face's age in years (known, or the real-face estimator's reading).
        renders: (N, K, H, W, 3) uint8: each face as the teacher (the mesh-placed aging layers) renders it at
            K other ages, registered the same way (inference.generator.teacher.teacher_pairs).
        render_ages: (N, K) the age of each rendering, in years.
        config: the run's DPConfig; reserve its epsilon in the budget ledger before calling.
        progress: show a tqdm bar (step count only: losses are private).
        on_step: called after every step with (step, private metrics), e.g. for the operator's console.

    Each of the `config.steps` steps is one DP-SGD step:
      1. Sample: every person joins the batch independently with probability q = sample_rate (Poisson,
         from a 128-bit-keyed secret stream). The batch may be empty, and an empty batch is still a step.
      2. Objective: a coin sends each row to reconstruction (generate at its own source age, L1 to the
         input) or to aging (one of its teacher renderings, drawn secretly: generate at that age, L1 to the
         rendering). One forward pass per row, so one gradient per person. No estimator is a loss.
      3. Per-sample norms: bookkeeping (the default) takes one backward pass to the layers' outputs, no
         weight gradients, sums each person's norm from the layers' activations and output gradients, then
         computes each layer's weight gradient once with the backprops scaled by the clip factors;
         hooks_conv builds each person's gradient (Conv2d's by one grouped convolution); ghost_conv computes
         only norms and a second backward pass sums the clipped gradients.
      4. Clip: each person's whole gradient is scaled to L2 norm <= max_grad_norm (C).
      5. Noise: Gaussian noise of std noise_multiplier * C is added to the sum of clipped gradients, from a
         stream keyed with 128 fresh bits from the OS CSPRNG.
      6. Average and update: the noisy sum is divided by the public expected batch size and Adam steps;
         the accountant records (noise_multiplier, q) for the step.
    After the last step, epsilon_spent is the accountant's upper bound at config.delta.
    """
    _check_data(model, faces, source_ages, renders, render_ages)
    _check_config(config, len(faces))
    if config.delta >= 1.0 / len(faces):
        warnings.warn(f"delta={config.delta} is not below 1/N: a mechanism that leaks one random person's "
                      "data entirely would meet it; choose delta well below 1/N", stacklevel=2)
    if config.noise_multiplier == 0:
        warnings.warn("noise_multiplier=0: clipping without noise gives NO differential privacy guarantee "
                      "(epsilon is infinite)", stacklevel=2)
    if config.expected_batch_size is None:
        warnings.warn("expected_batch_size is None: the update is divided by q*N, a function of the private "
                      "participant count; pass a public expected batch size", stacklevel=2)
    trainer = PrivateTrainer(model=model, faces=faces, source_ages=source_ages, renders=renders,
                             render_ages=render_ages, config=config)
    per_step: list[dict[str, float]] = []
    smooth: dict[str, float] = {}
    start = time.perf_counter()
    for step in tqdm(range(config.steps), desc="DP fine-tune", disable=not progress, dynamic_ncols=True):
        metrics = {"step": float(step), **trainer.step(*trainer.next_batch())}
        per_step.append(metrics)
        for k in ("loss", "recon", "teacher"):
            if not math.isnan(metrics.get(k, math.nan)):
                smooth[k] = metrics[k] if k not in smooth else 0.9 * smooth[k] + 0.1 * metrics[k]
        if on_step is not None:
            on_step(step, metrics)
    seconds = time.perf_counter() - start
    epsilon = trainer.epsilon()
    sizes = [m["batch"] for m in per_step]
    summary = {"final_loss": smooth.get("loss", math.nan), "final_recon": smooth.get("recon", math.nan),
               "final_teacher": smooth.get("teacher", math.nan), "epsilon": epsilon,
               "train_seconds": seconds, "seconds_per_step": seconds / config.steps,
               "mean_batch_size": float(np.mean(sizes)), "empty_batches": float(sizes.count(0.0))}
    return DPResult(model=trainer.plain_model(model), epsilon_spent=epsilon, delta=config.delta,
                    steps=config.steps, metrics=_json_safe(summary), history=trainer.history(),
                    per_step=[_json_safe(m) for m in per_step], config=config)


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN / inf (a metric with no rows behind it, epsilon without noise) -> None: JSON has neither."""
    return {k: v if math.isfinite(v) else None for k, v in metrics.items()}
