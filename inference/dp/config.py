"""A DP run's configuration: DPConfig, its checks, and the grad-sample modes a run may choose."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .accounting import _check_accountant, _check_delta, _check_run, epsilon_for
from .samplers import install_ghost_conv, install_hooks_conv

# Book-keeping clipping (samplers.BookKeepingModule): measured with bench/train.py on the small generator at
# 128 px, batch 16, one thread, shared 2-core CPU: 1.36-1.41x the time and 0.97-1.19x the peak memory (ten
# runs; 1.02x by the CPU allocator, bench/dp_memory.py) of a non-private step, against 1.73x / 1.66x for
# hooks_conv and 2.30x / 1.33x for ghost_conv (docs/training.md). Not yet measured on a GPU.
DEFAULT_GRAD_SAMPLE_MODE = "bookkeeping"


@dataclass
class DPConfig:
    # sigma: Gaussian noise std in units of max_grad_norm (noise_for_epsilon finds it)
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0  # C: every user's per-sample gradient is clipped to this L2 norm
    sample_rate: float = 1 / 16  # q: each user's chance to be in a step's batch (Poisson, any q in (0, 1])
    steps: int = 200  # optimizer steps; expected batch is q*N, so epochs = steps*q
    delta: float = 1e-6  # the delta of (epsilon, delta)-DP; keep it below 1/N
    # divisor of the noisy sum: a PUBLIC number; None = q*N (leaks N)
    expected_batch_size: float | None = None
    accountant: str = "prv"  # "prv" (tightest upper bound) or "rdp"
    lr: float = 2e-4  # Adam learning rate: a gentle fine-tune of a trained generator
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE  # a key of GRAD_SAMPLE_MODES
    # share of each batch asked for its own age (reconstruction), the rest a teacher age
    recon_fraction: float = 0.5
    device: str | None = None  # "cuda", "cpu", ...; None picks CUDA when present

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for the model card."""
        return asdict(self)

    def epsilon(self) -> float:
        """The epsilon this run will spend, before it starts (reserve it in the budget ledger)."""
        return epsilon_for(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                           steps=self.steps, delta=self.delta, accountant=self.accountant)


# Production grad-sample modes: name -> (Opacus mode, installer of this package's samplers). Opacus' stock
# modes ("hooks", "functorch", "ghost") are slower here and live in bench/dp_modes.py, which registers them.
GRAD_SAMPLE_MODES: dict[str, tuple[str, Callable[[Any], None] | None]] = {
    "hooks_conv": ("hooks", install_hooks_conv),
    "ghost_conv": ("ghost", install_ghost_conv),
    "bookkeeping": ("bookkeeping", None),  # samplers.BookKeepingModule: one backward, no per-sample gradients
}
# modes whose optimizer noises p.grad (the clipped sum), not grad_sample
NOISE_ON_GRAD = ("ghost", "bookkeeping")


def register_grad_sample_mode(name: str, opacus_mode: str,
                              install: Callable[[Any], None] | None = None) -> None:
    """Make another grad-sample mode selectable (bench/ uses this for Opacus' stock modes)."""
    GRAD_SAMPLE_MODES[name] = (opacus_mode, install)


def _check_config(config: DPConfig, n: int) -> None:
    """Raise with what to change if a config field is unusable for a run over `n` users."""
    if not isinstance(config, DPConfig):
        raise ValueError(f"config must be a DPConfig, got {type(config).__name__}")
    _check_run(config.noise_multiplier, config.sample_rate, config.steps)
    if config.steps < 1:
        raise ValueError("config.steps must be >= 1")
    _check_delta(config.delta)
    _check_accountant(config.accountant)
    if not (math.isfinite(config.max_grad_norm) and config.max_grad_norm > 0):
        raise ValueError(f"max_grad_norm={config.max_grad_norm!r} must be > 0 (try 1.0)")
    if config.expected_batch_size is not None and not (
            math.isfinite(config.expected_batch_size) and config.expected_batch_size > 0):
        raise ValueError(f"expected_batch_size={config.expected_batch_size!r} must be > 0: sample_rate "
                         "times a public estimate of N")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"lr={config.lr!r} must be > 0 (try 2e-4)")
    if not 0.0 <= config.recon_fraction <= 1.0:
        raise ValueError(f"recon_fraction={config.recon_fraction!r} must be in [0, 1]")
    if config.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode={config.grad_sample_mode!r} is not one of "
                         f"{sorted(GRAD_SAMPLE_MODES)}; "
                         f"{DEFAULT_GRAD_SAMPLE_MODE!r} was fastest for this model")
