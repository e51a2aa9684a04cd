"""The private step: make_private wraps a module for DP-SGD, PrivateTrainer takes one step at a time.

Randomness is secret: every PrivateTrainer draws Poisson sampling, noise and the objective's coins from
streams keyed with 128 fresh bits from the OS CSPRNG (randomness.SecretStream), never torch's generator
(whose CPU seed keeps 32 bits); the keys live only inside the streams, never returned, logged or stored.
The sample rate and the divisor of the noisy gradient sum (the expected batch size) are public inputs,
never functions of N.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from opacus.accountants import IAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from inference.generator.model import AgeGenerator

from . import distributed as ddp
from . import opacus_adapter
from .accounting import Step, _epsilon
from .config import GRAD_SAMPLE_MODES, NOISE_ON_GRAD, DPConfig, _check_config
from .objective import DPObjective, _to_model
from .randomness import SecretStream
from .samplers import BookKeepingModule


class _ClippedLoss:
    """What BookKeepingLoss returns: `.backward()` runs book-keeping clipping instead of autograd's
    backward."""

    def __init__(self, module: BookKeepingModule, per_sample: torch.Tensor) -> None:
        self.module, self.per_sample = module, per_sample

    def backward(self) -> None:
        self.module.clipped_backward(self.per_sample)

    def item(self) -> float:
        return float(self.per_sample.detach().mean())


class BookKeepingLoss:
    """The objective for book-keeping clipping: asks it for per-sample losses, backward clips as it goes."""

    def __init__(self, module: BookKeepingModule, objective: nn.Module) -> None:
        self.module, self.objective = module, objective

    def __call__(self, *args: Any) -> _ClippedLoss:
        setattr(self.objective, "reduction", "none")  # noqa: B010 - DPObjective's switch, as Opacus' ghost uses it
        return _ClippedLoss(self.module, self.objective(*args))


@dataclass
class PrivateParts:
    """What DP-SGD needs around a module: its wrapper, the noisy optimizer, the Poisson loader, the loss."""

    module: nn.Module
    optimizer: Any  # an Opacus DPOptimizer (or its fast-gradient-clipping variant), noise keyed
    loader: DataLoader  # Poisson batches at exactly config.sample_rate, drawn from a SecretStream
    criterion: Any  # the objective, or a wrapper whose result's .backward() clips (ghost, bookkeeping)
    accountant: IAccountant  # its history records every step


def make_private(*, module: nn.Module, dataset: TensorDataset, config: DPConfig, objective: nn.Module,
                 device: torch.device) -> PrivateParts:
    """Wrap a module for DP-SGD as training runs it: the one code path the trainer and the privacy audit
    share.

    Poisson sampling at exactly config.sample_rate and Gaussian noise, each from its own SecretStream (a
    fresh 128-bit key); per-sample clipping to max_grad_norm; the noisy sum divided by the public expected
    batch size; every step recorded by the accountant at (noise_multiplier, sample_rate).
    """
    # Poisson sampling at exactly the public rate q (Opacus' make_private would resample at 1/k)
    loader = opacus_adapter.poisson_loader(dataset, sample_rate=config.sample_rate, stream=SecretStream(),
                                           distributed=ddp.active())  # several ranks: each samples its shard
    expected = config.expected_batch_size or config.sample_rate * len(dataset)
    opacus_mode, install = GRAD_SAMPLE_MODES[config.grad_sample_mode]
    engine = opacus_adapter.engine(config.accountant)
    module = ddp.wrap(module)  # DPDDP when several ranks run: all start from rank 0's weights
    wrapped: Any
    if opacus_mode == "bookkeeping":
        wrapped = BookKeepingModule(module, config.max_grad_norm)
    else:  # ghost clips inside the module
        wrapped = opacus_adapter.wrap_module(engine, module, max_grad_norm=config.max_grad_norm,
                                             opacus_mode=opacus_mode)
    optimizer = opacus_adapter.noisy_optimizer(
        engine, torch.optim.Adam(wrapped.parameters(), lr=config.lr),
        noise_multiplier=config.noise_multiplier, max_grad_norm=config.max_grad_norm,
        expected_batch_size=ddp.share_of_batch(expected), stream=SecretStream(),
        distributed=ddp.active(),  # noise on rank 0 only, then all_reduce (distributed.py)
        opacus_mode="ghost" if opacus_mode in NOISE_ON_GRAD else opacus_mode)
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=config.sample_rate))
    criterion: Any = objective
    if opacus_mode == "bookkeeping":
        criterion = BookKeepingLoss(wrapped, objective)
    elif opacus_mode == "ghost":
        criterion = opacus_adapter.ghost_criterion(engine, wrapped, optimizer, objective)
    if install is not None:
        install(wrapped)
    return PrivateParts(wrapped, optimizer, loader, criterion, engine.accountant)


class PrivateTrainer:
    """One DP fine-tuning session: the private module, optimizer, Poisson loader and objective.

    train_dp drives it; tests and the privacy audit use it to take single steps on chosen batches.
    """

    def __init__(self, *, model: AgeGenerator, faces: np.ndarray, source_ages: np.ndarray,
                 renders: np.ndarray, render_ages: np.ndarray, config: DPConfig,
                 objective: nn.Module | None = None) -> None:
        _check_config(config, len(faces))
        self.config, self.mode = config, config.grad_sample_mode
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.coins = SecretStream()  # the recon coin and which rendering teaches
        generator = copy.deepcopy(model).to(self.device).train()
        self.objective = objective if objective is not None else DPObjective()
        # One row per person: their face, its age, and its teacher renderings travel together.
        dataset = TensorDataset(torch.from_numpy(np.ascontiguousarray(faces)),
                                torch.as_tensor(np.asarray(source_ages), dtype=torch.float32),
                                torch.from_numpy(np.ascontiguousarray(renders)),
                                torch.as_tensor(np.asarray(render_ages), dtype=torch.float32))
        parts = make_private(module=generator, dataset=dataset, config=config, objective=self.objective,
                             device=self.device)
        self.module, self.optimizer, self.loader = parts.module, parts.optimizer, parts.loader
        self.criterion, self.accountant = parts.criterion, parts.accountant
        self.batches = iter(self.loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next Poisson-sampled batch: uint8 faces (B, H, W, 3), ages (B,), the teacher's renderings
        (B, K, H, W, 3) and their ages (B, K); B may be 0."""
        try:
            return next(self.batches)
        except StopIteration:  # the DP loader yields 1/q batches per pass; keep drawing fresh ones
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self, faces: torch.Tensor, ages: torch.Tensor, renders: torch.Tensor,
             render_ages: torch.Tensor) -> dict[str, float]:
        """One DP-SGD step on this batch (see train_dp for its parts); returns the step's private metrics."""
        b = len(faces)
        if b == 0:
            self._empty_step()
            return {"batch": 0.0, "loss": math.nan, "recon": math.nan, "teacher": math.nan}
        x = _to_model(faces, self.device)
        recon = torch.from_numpy(self.coins.bernoulli(b, self.config.recon_fraction)).float()
        # one rendering per row: one example per person
        pick = torch.from_numpy(self.coins.integers(renders.shape[1], b))
        rows = torch.arange(b)
        taught = _to_model(renders[rows, pick], self.device)  # (B, 3, H, W)
        keep = recon.bool().to(self.device)
        age = torch.where(recon.bool(), ages.float(), render_ages[rows, pick].float()).to(self.device)  # (B,)
        target = torch.where(keep[:, None, None, None], x, taught)
        loss = self.criterion(self.module(x, age), target, recon.to(self.device))
        # torch notes the input needs no grad: true, and Opacus' hooks don't care
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()  # ghost modes: two passes inside (norms, then the clipped-loss backward)
        self.optimizer.step()  # clip, sum, add noise, divide by the public expected batch, Adam; accounted
        self.optimizer.zero_grad(set_to_none=True)
        return {"batch": float(b), **getattr(self.objective, "last", {})}

    def _empty_step(self) -> None:
        """Poisson sampling drew nobody: still a noisy step, so the accountant's count stays right."""
        for p in self.optimizer.params:
            if GRAD_SAMPLE_MODES[self.mode][0] in NOISE_ON_GRAD:
                p.grad = torch.zeros_like(p)  # the fast-clipping optimizer noises p.grad
            else:
                p.grad_sample = p.new_zeros((0, *p.shape))  # Opacus clips an empty batch to zero
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def history(self) -> list[Step]:
        """The accountant's (noise, sample_rate, steps) record of the steps taken so far."""
        return [(float(s), float(q), int(k)) for s, q, k in self.accountant.history]

    def epsilon(self) -> float:
        """Epsilon spent so far: an upper bound (inf without noise)."""
        return _epsilon(self.history(), self.config.delta, self.config.accountant)

    def plain_model(self, like: AgeGenerator) -> AgeGenerator:
        """A fresh CPU copy of the trained generator without Opacus' wrapper, hooks or per-sample state."""
        state = {ddp.plain_key(k): v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        out = type(like)(like.config)
        out.load_state_dict(state)
        return out.eval()
