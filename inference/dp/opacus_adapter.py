"""Where this package reaches past Opacus' public make_private, pinned to one Opacus version.

make_private would resample at 1/k, draw noise from a torch generator (32 bits of secrecy on the CPU) and
wrap the model in one go; training needs Poisson sampling at exactly the planned rate, noise from a
128-bit-keyed stream and its own book-keeping wrapper. So it uses PrivacyEngine's private
`_prepare_model` / `_prepare_optimizer` / `_prepare_criterion`, and mirrors `add_noise` with the noise
drawn from a SecretStream. tests/inference/test_dp_randomness.py pins OPACUS_VERSION and the source of
every Opacus method mirrored here: an upgrade fails there first, and this file is what to re-read.
"""

from __future__ import annotations

import warnings
from typing import Any

import opacus
import torch
from opacus import PrivacyEngine
from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
from opacus.optimizers.optimizer import DPOptimizer, _check_processed_flag, _mark_as_processed
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from .randomness import PoissonSampler, SecretStream

OPACUS_VERSION = "1.6.0"  # the version whose private methods and add_noise this module was written against


def _check_version() -> None:
    if opacus.__version__ != OPACUS_VERSION:
        raise RuntimeError(f"inference.dp.opacus_adapter was written for Opacus {OPACUS_VERSION}, found "
                           f"{opacus.__version__}: re-read its mirrored methods, then update OPACUS_VERSION")


def engine(accountant: str) -> PrivacyEngine:
    """An engine for its accountant and private preparers; its own secure RNG is unused (ours is keyed)."""
    _check_version()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        return PrivacyEngine(accountant=accountant, secure_mode=False)


def wrap_module(dp_engine: PrivacyEngine, module: nn.Module, *, max_grad_norm: float,
                opacus_mode: str) -> Any:
    """Opacus' per-sample wrapper for `module` (hooks, ghost, ...): one backward per Poisson batch."""
    wrapped = dp_engine._prepare_model(module, max_grad_norm=max_grad_norm, grad_sample_mode=opacus_mode)
    wrapped.forbid_grad_accumulation()
    return wrapped


class KeyedNoise:
    """Opacus' add_noise (DPOptimizer, its fast-gradient-clipping and distributed variants), the noise
    drawn from `noise_stream`."""

    noise_stream: SecretStream
    params: list[torch.Tensor]
    noise_multiplier: float
    max_grad_norm: float

    def add_noise(self) -> None:
        if getattr(self, "rank", 0) != 0:  # distributed: only the first worker adds noise, as in Opacus
            for p in self.params:
                p.grad = p.summed_grad.view_as(p)  # type: ignore[attr-defined]
            return
        # adaptive clipping keeps the accounted multiplier apart from the one noise is drawn at
        std = getattr(self, "_adjusted_noise_multiplier", self.noise_multiplier) * self.max_grad_norm
        for p in self.params:
            summed = p.summed_grad  # type: ignore[attr-defined]
            _check_processed_flag(summed)
            p.grad = (summed + self.noise_stream.normal_like(std, summed)).view_as(p)
            _mark_as_processed(summed)


_KEYED: dict[type, type] = {}


def noisy_optimizer(dp_engine: PrivacyEngine, optimizer: torch.optim.Optimizer, *, noise_multiplier: float,
                    max_grad_norm: float, expected_batch_size: float, opacus_mode: str,
                    stream: SecretStream, distributed: bool = False) -> DPOptimizer:
    """Opacus' DP optimizer for this mode (clip, sum, noise, divide by the public expected batch), with
    keyed noise; `distributed`: its DPDDP variant (noise on rank 0 only, then an all-reduce)."""
    dp_optimizer = dp_engine._prepare_optimizer(
        optimizer=optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size, grad_sample_mode=opacus_mode, distributed=distributed)
    cls = type(dp_optimizer)
    keyed = _KEYED.setdefault(cls, type(f"Keyed{cls.__name__}", (KeyedNoise, cls), {}))
    dp_optimizer.__class__ = keyed  # same object and state, add_noise drawn from the stream
    dp_optimizer.noise_stream = stream
    return dp_optimizer


def ghost_criterion(dp_engine: PrivacyEngine, module: nn.Module, optimizer: DPOptimizer,
                    objective: nn.Module) -> Any:
    """Opacus' two-pass loss for ghost clipping."""
    return dp_engine._prepare_criterion(module=module, optimizer=optimizer, criterion=objective)


def poisson_loader(dataset: Dataset, *, sample_rate: float, stream: SecretStream,
                   distributed: bool = False) -> DataLoader:
    """Poisson batches at exactly `sample_rate` (empty ones included), collated as DPDataLoader does;
    `distributed`: this rank samples only its shard (rows rank, rank + world, ...), as Opacus'
    DistributedPoissonBatchSampler does."""
    first = dataset[0]
    collate = wrap_collate_with_empty(collate_fn=default_collate,
                                      sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                                      dtypes=[dtype_safe(x) for x in first])
    rank, world = ((torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed
                   else (0, 1))
    sampler = PoissonSampler(num_samples=len(dataset), sample_rate=sample_rate,  # type: ignore[arg-type]
                             stream=stream, rank=rank, world_size=world)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
