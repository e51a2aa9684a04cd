"""DP-SGD fine-tuning of the age generator (Opacus): the run's config, the private trainer, `train_dp`.

Randomness is secret: every PrivateTrainer draws Poisson sampling, noise and the objective's coins from
streams keyed with 128 fresh bits from the OS CSPRNG (randomness.SecretStream), never torch's generator
(whose CPU seed keeps 32 bits); the keys live only inside the streams, never returned, logged or stored.

Nothing derived from the private data leaves as a figure to publish: the sample rate and the divisor of
the noisy gradient sum (the expected batch size) are public inputs, never functions of N; `DPResult.metrics`
(losses, batch sizes, timing) are computed from the private data and are for the operator's console only.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from opacus.accountants import IAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from inference.generator.model import AgeGenerator

from . import distributed as ddp
from . import opacus_adapter
from .accounting import _check_accountant, _check_delta, _check_run, _epsilon, epsilon_for
from .randomness import SecretStream
from .samplers import BookKeepingModule, install_ghost_conv, install_hooks_conv

# Book-keeping clipping (samplers.BookKeepingModule): measured with bench/train.py on the small generator at
# 128 px, batch 16, one thread, shared 2-core CPU: 1.36-1.41x the time and 0.97-1.09x the peak memory (five
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


@dataclass
class DPResult:
    model: AgeGenerator  # plain, on the CPU, eval mode; state_dict keys those of a fresh AgeGenerator
    epsilon_spent: float  # upper bound at `delta` over `history`
    delta: float
    steps: int
    metrics: dict[str, float | None]  # PRIVATE (losses, batch sizes, timing from the data): never publish
    # the accountant's (noise, sample_rate, steps): feed compose_epsilon
    history: list[tuple[float, float, int]]
    per_step: list[dict[str, float | None]] = field(default_factory=list)  # PRIVATE: step, batch, loss terms
    config: DPConfig | None = None


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


class DPObjective(nn.Module):
    """Per-sample L1 to a target image: the face itself at its own age, or the teacher's rendering of it.

    For row i the generator ran at age a_i: its own source age when `recon[i]` (target: the input), else the
    age of one of its teacher renderings (target: that rendering; the teacher is the mesh-placed aging
    layers). loss_i = mean |out_i - target_i|. No age estimator scores the output: a few painted lines move
    one by years, and a generator trained against it learns to fool it rather than to age a face.
    `reduction` is what Opacus' ghost-clipping wrapper toggles to get the per-sample vector.
    Swappable: PrivateTrainer takes any module with this forward signature and `reduction` attribute.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"
        self.last: dict[str, float] = {}

    def forward(self, out: torch.Tensor, target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        per_sample = (out - target).abs().mean(dim=(1, 2, 3))  # (B,)
        with torch.no_grad():
            rows = recon.sum().item()  # rows asked for their own age this step
            taught = len(recon) - rows
            self.last = {"loss": per_sample.mean().item(),
                         "recon": (recon * per_sample).sum().item() / rows if rows else math.nan,
                         "teacher": ((1 - recon) * per_sample).sum().item() / taught if taught else math.nan}
        return per_sample.mean() if self.reduction == "mean" else per_sample


def _to_model(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], contiguous.

    Contiguous matters: from the permute it would be channels-last strided, and Opacus 1.6's unfold2d (hooks
    and ghost conv grad samplers) reads such activations as if they were NCHW, silently giving wrong
    per-sample conv gradients.
    """
    return (images.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


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

    def history(self) -> list[tuple[float, float, int]]:
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
