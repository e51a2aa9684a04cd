"""Differentially private fine-tuning of the age generator (Opacus DP-SGD), and the privacy accounting around it.

Three accounting helpers answer the questions governance asks before and after a run, with Opacus'
own accountants: `epsilon_for` (what will this run spend?), `noise_for_epsilon` (how much noise for a
budget?) and `compose_epsilon` (what has one person spent over several runs?). `train_dp` fine-tunes a
copy of a generator on opted-in photos with `PrivacyEngine.make_private` and returns the plain model,
the epsilon actually spent and the accountant history, ready for the model card and the budget ledger.

Privacy unit: one row of `faces` (governance guarantees at most one photo per user per run, so the
example-level guarantee is a user-level one).
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
from opacus import PrivacyEngine
from opacus.accountants import PRVAccountant, create_accountant
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV
from opacus.accountants.utils import MAX_SIGMA
from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.utils.tensor_utils import unfold2d
from torch import nn
from torch.nn import functional as F
from torch.nn.grad import conv2d_weight
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from inference.model import AgeGenerator

ACCOUNTANTS = ("prv", "rdp", "gdp")
# "hooks_conv" is Opacus' hooks with this module's Conv2d grad sampler; "ghost_conv" is Opacus' ghost
# clipping with this module's Conv2d and GroupNorm norm samplers (see "custom samplers" below).
GRAD_SAMPLE_MODES = ("hooks", "hooks_conv", "functorch", "ghost", "ghost_conv")
# The default is the fastest mode that works, measured with bench/train.py on the small generator at
# 128x128 on a shared 2-core CPU, 1 thread, DP step time / non-private step time (peak RSS growth ratio):
#   batch 16: hooks 1.77x (1.44), hooks_conv 1.56x (1.42), functorch 1.84x (1.25), ghost 2.34x (1.35),
#             ghost_conv 2.10x (1.15);  batch 32: 1.83x, 1.57x, 1.85x, 2.45x, 2.04x (memory alike).
# hooks_conv wins: one backward pass, and a third of the hooks overhead was Opacus' unfold + einsum conv
# sampler, which one grouped-convolution weight gradient replaces. Ghost clipping pays a second backward
# pass; ghost_conv has the smallest memory (no per-sample gradient outlives its layer): the choice where
# memory binds (hooks keeps batch x parameters floats, 9 GB for the base model at batch 64). Not yet
# measured on a GPU, where cuDNN's grouped weight gradient may rank differently: rerun the bench there.
DEFAULT_GRAD_SAMPLE_MODE = "hooks_conv"
AGE_SCALE = 100.0  # years per unit of the age term: a 10-year miss weighs 0.1, like a 0.1 mean L1 pixel error
AGE_RANGE = (1.0, 100.0)  # target ages drawn for the age-correctness term, uniformly, in years
PRV_MAX_POINTS = 1 << 22  # largest PRV grid accepted (~700 MB peak); past it epsilon comes from RDP
MAX_NOISE = MAX_SIGMA  # noise_for_epsilon gives up past Opacus' own limit
EPSILON_TOLERANCE = 0.01  # noise_for_epsilon's answer spends within this of the target (Opacus' default)
RATE_TOLERANCE = 1e-9  # float slack when reading a sample rate as 1/k (1/3 must give k = 3, not 4)


# ---------------------------------------------------------------------------------------------- accounting

def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r} is not one of {ACCOUNTANTS}: use 'prv' (tightest, the "
                         "default), 'rdp' (composes across heterogeneous runs) or 'gdp' (experimental)")


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, int | float) and 0.0 < delta < 1.0):
        raise ValueError(f"delta={delta!r} must be in (0, 1); use well below 1/N for N participants, e.g. 1e-6")


def _check_run(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (isinstance(noise_multiplier, int | float) and math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier={noise_multiplier!r} must be a finite number >= 0 (typically 0.5-5)")
    if not (isinstance(sample_rate, int | float) and 0.0 < sample_rate <= 1.0):
        raise ValueError(f"sample_rate={sample_rate!r} must be in (0, 1]: the expected batch size over N")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a whole number >= 0 (optimizer steps, not epochs)")


def _epsilon(history: list[tuple[float, float, int]], delta: float, accountant: str) -> float:
    """Epsilon of a (noise, sample rate, steps) history under one of Opacus' accountants."""
    history = [(float(s), float(q), int(k)) for s, q, k in history if k > 0]
    if not history:
        return 0.0
    if any(s == 0.0 for s, _, _ in history):
        return math.inf  # no noise: no finite guarantee
    with warnings.catch_warnings():
        _quiet_prv_domain(accountant)
        if accountant == "prv" and not _prv_fits(history, delta):
            warnings.warn(f"the PRV accountant would need more than {PRV_MAX_POINTS} grid points (about 160 bytes "
                          f"each) for {history}; using RDP, a looser but valid upper bound", stacklevel=3)
            accountant = "rdp"
        acc = create_accountant(mechanism=accountant)
        acc.history = history
        return float(acc.get_epsilon(delta=delta))


def _prv_fits(history: list[tuple[float, float, int]], delta: float) -> bool:
    """Whether Opacus' PRV accountant discretises this history on at most PRV_MAX_POINTS points.

    Long, low-noise runs can ask it for billions (10 GB+ at once); the grid is cheap to size beforehand
    with the same (private) method and get_epsilon's default errors.
    """
    prvs = [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history]
    domain = PRVAccountant()._get_domain(prvs=prvs, num_self_compositions=[k for _, _, k in history],
                                         eps_error=0.01, delta_error=delta / 1000)
    return domain.size <= PRV_MAX_POINTS


def _quiet_prv_domain(accountant: str) -> None:
    """PRV sizes its grid with an RDP bound, whose 'optimal order' hint says nothing about PRV's epsilon."""
    if accountant == "prv":
        warnings.filterwarnings("ignore", message="Optimal order is the")


def epsilon_for(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = "prv") -> float:
    """Epsilon spent by `steps` Poisson-sampled DP-SGD steps at `noise_multiplier` and `sample_rate`.

    Computed by Opacus' accountant (`prv` by default, `rdp` or `gdp`) from the history
    [(noise_multiplier, sample_rate, steps)], exactly what the PrivacyEngine would record. Zero steps
    spend 0; zero noise has no finite bound and returns `math.inf`.
    """
    _check_run(noise_multiplier, sample_rate, steps)
    _check_delta(delta)
    _check_accountant(accountant)
    return _epsilon([(noise_multiplier, sample_rate, steps)], delta, accountant)


def noise_for_epsilon(*, target_epsilon: float, sample_rate: float, steps: int, delta: float,
                      accountant: str = "prv") -> float:
    """The noise multiplier whose run spends at most target_epsilon, and within 0.01 of it (Opacus' search)."""
    if not (isinstance(target_epsilon, int | float) and math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target_epsilon={target_epsilon!r} must be a finite number > 0, e.g. 1, 4 or 8")
    _check_run(1.0, sample_rate, steps)
    if steps == 0:
        raise ValueError("steps=0 spends nothing at any noise: ask for a run of at least one step")
    _check_delta(delta)
    _check_accountant(accountant)
    # Opacus' get_noise_multiplier search (double sigma from 20 until under budget, then bisect to within
    # 0.01 epsilon, answering the upper end), over this module's epsilon: PRV can need gigabytes at the
    # low-noise points it probes, and _epsilon falls back to RDP there instead.
    def eps(sigma: float) -> float:
        return _epsilon([(sigma, sample_rate, int(steps))], delta, accountant)

    low, high, eps_high = 0.0, 10.0, math.inf
    while eps_high > target_epsilon:
        high *= 2
        eps_high = eps(high)
        if high > MAX_NOISE:
            raise ValueError(f"no noise multiplier up to {MAX_NOISE:g} reaches epsilon {target_epsilon} at delta "
                             f"{delta} over {steps} steps at sample rate {sample_rate}: raise the budget or run "
                             "fewer steps or a lower sample rate")
    while target_epsilon - eps_high > EPSILON_TOLERANCE:
        mid = (low + high) / 2
        eps_mid = eps(mid)
        if eps_mid < target_epsilon:
            high, eps_high = mid, eps_mid
        else:
            low = mid
    return high


def compose_epsilon(*, history: list[tuple[float, float, int]], delta: float, accountant: str = "rdp") -> float:
    """One person's total epsilon over several runs: each entry is a run's (noise, sample_rate, steps).

    Pass the `DPResult.history` of every run whose manifest held the person. RDP (the default) and PRV
    compose runs with different noise and sample rates; GDP only composes identical ones.
    """
    _check_delta(delta)
    _check_accountant(accountant)
    if not isinstance(history, list | tuple):
        raise ValueError(f"history must be a list of (noise_multiplier, sample_rate, steps), got {type(history)}")
    for i, entry in enumerate(history):
        if not (isinstance(entry, list | tuple) and len(entry) == 3):
            raise ValueError(f"history[{i}]={entry!r} is not a (noise_multiplier, sample_rate, steps) triple")
        _check_run(*entry)
    runs = [tuple(e) for e in history if e[2] > 0]
    if accountant == "gdp" and len({(s, q) for s, q, _ in runs}) > 1:
        raise ValueError("the gdp accountant cannot compose runs with different noise or sample rates: "
                         "use accountant='rdp' or 'prv'")
    if accountant == "gdp" and runs:
        runs = [(runs[0][0], runs[0][1], sum(k for _, _, k in runs))]
    return _epsilon(runs, delta, accountant)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- custom samplers
#
# Ghost clipping needs each example's gradient NORM, not the gradient. Opacus 1.6 ships norm samplers for
# Linear and Embedding only, so in its "ghost" mode every Conv2d and GroupNorm still builds per-sample
# gradients. The norm samplers below fill the gap, and a faster Conv2d grad sampler serves the hooks mode.
# "ghost_conv" / "hooks_conv" install them on one wrapped module, not globally (as register_norm_sampler
# would), so Opacus' stock modes stay what they are and all can be measured side by side.

MATERIALISE_CHUNK = 1 << 24  # elements of per-sample conv gradient built at once on the materialise path


def _conv_patches(layer: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """Activations (B, C_in, H, W) -> the patches each output position sees, (B, C_in*kh*kw, P)."""
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding in ((0, 0), "valid"):
        return a.reshape(a.shape[0], a.shape[1], -1)  # 1x1 conv: the patches are the pixels
    return unfold2d(a, kernel_size=layer.kernel_size, padding=layer.padding, stride=layer.stride,
                    dilation=layer.dilation)


def conv2d_weight_sq_norms(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norms (B,) of the per-sample weight gradients G_i = g_i U_i^T of a Conv2d.

    a: activations (B, C_in, H, W); g: backprops (B, C_out, H', W'), P = H'W' output positions; U_i: the
    patches (D, P), D = C_in*kh*kw. Two exact ways, chosen per layer by their cost:
      ghost norm: ||g_i U_i^T||^2 = sum_pq (U_i^T U_i)_pq (g_i^T g_i)_pq   B*P^2*(C_out + D) flops, B*P^2 memory
      materialise: G_i (C_out, D), squared and summed                      B*P*C_out*D flops,   C_out*D memory
    Ghost wins where P*(C_out + D) < C_out*D: the coarse, wide levels of a U-Net. The materialise path
    gets G_i for a chunk of the batch as the weight gradient of one grouped convolution (the chunk folded
    into the groups: no unfolded k*k copy of the activations, 2-3x faster than unfold + bmm on CPU), so at
    most MATERIALISE_CHUNK gradient elements exist at once and none outlives the call (Opacus' hooks mode
    keeps every layer's (B, *weight) until the optimizer step).
    """
    n, c_out, h_out, w_out = g.shape
    c_in, (kh, kw) = layer.in_channels, layer.kernel_size
    p, d = h_out * w_out, c_in * kh * kw
    if p * (c_out + d) < c_out * d:
        u = _conv_patches(layer, a)  # (B, D, P)
        gf = g.reshape(n, c_out, p)  # (B, C_out, P)
        aat = torch.bmm(u.transpose(1, 2), u)  # (B, P, P)
        ggt = torch.bmm(gf.transpose(1, 2), gf)  # (B, P, P)
        return (aat * ggt).sum(dim=(1, 2)).clamp_(min=0.0)
    step = max(1, MATERIALISE_CHUNK // (c_out * d))
    return torch.cat([conv2d_weight_per_sample(layer, a[i:i + step], g[i:i + step]).flatten(1).square().sum(dim=1)
                      for i in range(0, n, step)])


def conv2d_weight_per_sample(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients (B, C_out, C_in, kh, kw) of a Conv2d (groups=1) from its activations
    (B, C_in, H, W) and backprops (B, C_out, H', W'): the weight gradient of ONE convolution whose groups
    are the samples (input (1, B*C_in, H, W), weight (B*C_out, C_in, kh, kw), groups=B), so no unfolded
    k*k copy of the activations is built as in Opacus' unfold + einsum sampler (2-3x faster on CPU)."""
    b, c_in, c_out = len(a), layer.in_channels, layer.out_channels
    grad = conv2d_weight(a.reshape(1, b * c_in, *a.shape[2:]), (b * c_out, c_in, *layer.kernel_size),
                         g.reshape(1, b * c_out, *g.shape[2:]), stride=layer.stride, padding=layer.padding,
                         dilation=layer.dilation, groups=b)  # (B*C_out, C_in, kh, kw): sample j is group j
    return grad.view(b, c_out, c_in, *layer.kernel_size)


def _plain_conv(layer: nn.Conv2d) -> bool:
    """Layouts the samplers below handle themselves; others get Opacus' own per-sample gradients."""
    return layer.groups == 1 and layer.padding_mode == "zeros" and not isinstance(layer.padding, str)


def compute_conv2d_grad_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus grad sampler for nn.Conv2d (the "hooks_conv" mode): per-sample grads of weight and bias."""
    a = activations[0].to(backprops.dtype).contiguous()  # (B, C_in, H, W)
    backprops = backprops.contiguous()  # (B, C_out, H', W')
    if len(a) == 0 or not _plain_conv(layer):
        return compute_conv_grad_sample(layer, [a], backprops)
    out: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight.requires_grad:
        out[layer.weight] = conv2d_weight_per_sample(layer, a, backprops)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3))  # (B, C_out)
    return out


def compute_conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus norm sampler for nn.Conv2d: per-sample gradient norms (B,) of weight and bias."""
    a = activations[0].to(backprops.dtype).contiguous()  # (B, C_in, H, W); unfold2d assumes NCHW strides
    backprops = backprops.contiguous()
    n = a.shape[0]
    if n == 0:  # Poisson sampling drew nobody
        return {p: backprops.new_zeros(0) for p in (layer.weight, layer.bias) if p is not None and p.requires_grad}
    if not _plain_conv(layer):  # rare layouts: norms of Opacus' per-sample gradients
        grads = compute_conv_grad_sample(layer, [a], backprops)
        return {p: gs.reshape(n, -1).norm(dim=1) for p, gs in grads.items()}
    out: dict[torch.Tensor, torch.Tensor] = {}
    if layer.weight.requires_grad:
        out[layer.weight] = conv2d_weight_sq_norms(layer, a, backprops).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3)).norm(dim=1)  # bias grad per sample: (B, C_out)
    return out


def compute_group_norm_norm_sample(layer: nn.GroupNorm, activations: list[torch.Tensor],
                                   backprops: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """Opacus norm sampler for nn.GroupNorm: its per-sample grads are only (B, C), so reduce then norm."""
    a = activations[0].to(backprops.dtype)  # (B, C, H, W)
    out: dict[torch.Tensor, torch.Tensor] = {}
    if len(a) == 0:  # Poisson sampling drew nobody
        return {p: backprops.new_zeros(0) for p in (layer.weight, layer.bias) if p is not None and p.requires_grad}
    if layer.weight is not None and layer.weight.requires_grad:
        xhat = F.group_norm(a, layer.num_groups, eps=layer.eps)  # what the affine weight multiplies
        out[layer.weight] = (xhat * backprops).flatten(2).sum(dim=2).norm(dim=1)  # (B,)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.flatten(2).sum(dim=2).norm(dim=1)  # (B,)
    return out


GHOST_CONV_NORM_SAMPLERS = {nn.Conv2d: compute_conv2d_norm_sample, nn.GroupNorm: compute_group_norm_norm_sample}


def install_ghost_conv(module: GradSampleModuleFastGradientClipping) -> None:
    """Give one ghost-clipping module the Conv2d and GroupNorm norm samplers (Linear's stay Opacus')."""
    if not isinstance(module, GradSampleModuleFastGradientClipping):
        raise ValueError("install_ghost_conv needs the module make_private(grad_sample_mode='ghost') returned")
    # An instance attribute shadows the class registry that opacus' register_norm_sampler writes to.
    module.NORM_SAMPLERS = {**type(module).NORM_SAMPLERS, **GHOST_CONV_NORM_SAMPLERS}


def install_hooks_conv(module: GradSampleModule) -> None:
    """Give one hooks-mode module the grouped-convolution Conv2d grad sampler (the rest stay Opacus')."""
    if type(module) is not GradSampleModule:
        raise ValueError("install_hooks_conv needs the module make_private(grad_sample_mode='hooks') returned")
    module.GRAD_SAMPLERS = {**type(module).GRAD_SAMPLERS, nn.Conv2d: compute_conv2d_grad_sample}


# ------------------------------------------------------------------------------------------- training

@dataclass
class DPConfig:
    noise_multiplier: float = 1.0  # sigma: Gaussian noise std in units of max_grad_norm (noise_for_epsilon finds it)
    max_grad_norm: float = 1.0  # C: every user's per-sample gradient is clipped to this L2 norm
    sample_rate: float = 1 / 16  # q: each user's chance to be in a step's batch; exact when 1/k, else just below
    steps: int = 200  # optimizer steps; expected batch is q*N, so epochs = steps*q
    delta: float = 1e-6  # the delta of (epsilon, delta)-DP; keep it below 1/N
    accountant: str = "prv"  # "prv" (tightest), "rdp" or "gdp": Opacus' accountant for epsilon_spent
    lr: float = 2e-4  # Adam learning rate: a gentle fine-tune of a trained generator
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE  # one of GRAD_SAMPLE_MODES; hooks_conv was fastest here
    secure_mode: bool = False  # cryptographic RNG for noise and sampling (needs torchcsprng); turn on for production
    seed: int = 0  # seeds sampling, noise and target ages when secure_mode is off, so runs reproduce
    age_weight: float = 1.0  # weight of the age-correctness term (years / AGE_SCALE) against the L1 reconstruction
    recon_fraction: float = 0.5  # share of each batch asked for its own age (reconstruction), the rest a random age
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
    epsilon_spent: float  # from the PrivacyEngine's accountant at `delta`
    delta: float
    steps: int
    metrics: dict[str, float | None]  # final smoothed loss terms, timing, batches, epsilon; None if undefined
    history: list[tuple[float, float, int]]  # the accountant's (noise, sample_rate, steps): feed compose_epsilon
    per_step: list[dict[str, float | None]] = field(default_factory=list)  # step, batch, loss, recon, age_error
    config: DPConfig | None = None


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
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"lr={config.lr!r} must be > 0 (try 2e-4)")
    if not (math.isfinite(config.age_weight) and config.age_weight >= 0):
        raise ValueError(f"age_weight={config.age_weight!r} must be >= 0 (0 turns the age term off)")
    if not 0.0 <= config.recon_fraction <= 1.0:
        raise ValueError(f"recon_fraction={config.recon_fraction!r} must be in [0, 1]")
    if config.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode={config.grad_sample_mode!r} is not one of {GRAD_SAMPLE_MODES}; "
                         f"{DEFAULT_GRAD_SAMPLE_MODE!r} was fastest for this model")
    if config.secure_mode:
        try:
            import torchcsprng  # noqa: F401
        except ImportError as e:
            raise ValueError("secure_mode=True needs the torchcsprng package for cryptographic noise and "
                             "sampling: install it on the training workers, or set secure_mode=False for "
                             "experiments only") from e
    loader_batch_size(n=n, sample_rate=config.sample_rate)


def loader_batch_size(*, n: int, sample_rate: float) -> int:
    """The DataLoader batch size that makes Opacus' Poisson loader run at `sample_rate`, or just below it.

    make_private samples at 1/len(data_loader) = 1/k with k = ceil(n / batch_size) batches per epoch, so
    only rates 1/k exist; and its accountant records 1/int(1/(1/k)), which float rounding makes 1/(k-1)
    for some k (93, 99, 105, ...). This picks the highest rate 1/k <= sample_rate for which both agree, so
    a run never spends more than `epsilon_for` promised for it (exactly as much when sample_rate is 1/k).
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate={sample_rate!r} must be in (0, 1]")

    def usable(k: int) -> bool:
        return math.ceil(n / math.ceil(n / k)) == k and int(1 / (1 / k)) == k

    k_min = n + 1 if sample_rate * n < 1 else max(1, math.ceil(1.0 / sample_rate - RATE_TOLERANCE))
    for k in range(k_min, n + 1):  # k_min: the fewest batches per epoch that keep the rate <= sample_rate
        if usable(k):
            return math.ceil(n / k)
    higher = next(k for k in range(min(k_min, n), 0, -1) if usable(k))  # k = 1 always is
    raise ValueError(f"sample_rate={sample_rate!r} is too low for N={n} rows: Opacus needs at least one row per "
                     f"batch on average; use sample_rate=1/{higher} or more participants")


def effective_sample_rate(*, n: int, sample_rate: float) -> float:
    """The Poisson rate Opacus will actually run (and account) at for this request: 1/ceil(n / batch)."""
    return 1.0 / math.ceil(n / loader_batch_size(n=n, sample_rate=sample_rate))


def _check_data(model: nn.Module, faces: np.ndarray, source_ages: np.ndarray, estimator: nn.Module) -> None:
    if not isinstance(model, AgeGenerator):
        raise ValueError(f"model must be an inference.model.AgeGenerator, got {type(model).__name__}")
    if not isinstance(estimator, nn.Module):
        raise ValueError(f"estimator must be an nn.Module (an AgeEstimator), got {type(estimator).__name__}")
    size = model.config.image_size
    if not isinstance(faces, np.ndarray) or faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (
            size, size, 3):
        got = f"{faces.dtype} {faces.shape}" if isinstance(faces, np.ndarray) else type(faces).__name__
        raise ValueError(f"faces must be a uint8 array (N, {size}, {size}, 3) of aligned RGB crops at the model's "
                         f"size, got {got}: crop and resize with inference.faces first")
    if len(faces) == 0:
        raise ValueError("faces is empty: a DP run needs at least one participant")
    ages = np.asarray(source_ages)
    if ages.shape != (len(faces),) or not np.issubdtype(ages.dtype, np.number) or not np.all(np.isfinite(ages)):
        raise ValueError(f"source_ages must be {len(faces)} finite numbers (years), one per face, "
                         f"got shape {ages.shape}")
    if ages.min() < 0 or ages.max() > 120:
        raise ValueError("source_ages must be years in [0, 120]; use the estimator's reading where unknown")


class DPObjective(nn.Module):
    """Per-sample loss needing no paired data: L1 reconstruction at the source age + age-correctness.

    For row i the generator ran at age a_i: its own source age when `recon[i]`, else a random target age.
    loss_i = recon_i * mean|out_i - x_i| + age_weight * |estimator(out_i) - a_i| / AGE_SCALE.
    The estimator is frozen and outside the DP module: gradients flow through it, never into it.
    `reduction` is what Opacus' ghost-clipping wrapper toggles to get the per-sample vector.
    """

    def __init__(self, estimator: nn.Module, age_weight: float) -> None:
        super().__init__()
        self.estimator = estimator
        self.age_weight = age_weight
        self.reduction = "mean"
        self.last: dict[str, float] = {}

    def forward(self, out: torch.Tensor, x: torch.Tensor, age: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        l1 = (out - x).abs().mean(dim=(1, 2, 3))  # (B,)
        size = getattr(getattr(self.estimator, "config", None), "image_size", out.shape[-1])
        seen = out if out.shape[-1] == size else F.interpolate(out, size=(size, size), mode="area")
        age_error = (self.estimator(seen) - age).abs()  # (B,) years
        per_sample = recon * l1 + self.age_weight * age_error / AGE_SCALE  # (B,)
        with torch.no_grad():
            rows = recon.sum().item()  # rows asked for their own age this step
            self.last = {"loss": per_sample.mean().item(),
                         "recon": (recon * l1).sum().item() / rows if rows else math.nan,
                         "age_error": age_error.mean().item()}
        return per_sample.mean() if self.reduction == "mean" else per_sample


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


class PrivateTrainer:
    """One DP fine-tuning session: the private module, optimizer, loader and objective from make_private.

    train_dp drives it; tests use it to take single steps on chosen batches.
    """

    def __init__(self, *, model: AgeGenerator, faces: np.ndarray, source_ages: np.ndarray, estimator: nn.Module,
                 config: DPConfig) -> None:
        self.config, self.mode = config, config.grad_sample_mode
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        seed = None if config.secure_mode else config.seed
        self.rng = torch.Generator().manual_seed(config.seed)  # target ages and task split: not data-dependent
        generator = copy.deepcopy(model).to(self.device).train()
        frozen = copy.deepcopy(estimator).to(self.device).eval().requires_grad_(False)
        self.objective = DPObjective(frozen, config.age_weight)
        dataset = TensorDataset(torch.from_numpy(np.ascontiguousarray(faces)),
                                torch.as_tensor(np.asarray(source_ages), dtype=torch.float32))
        loader = DataLoader(dataset, batch_size=loader_batch_size(n=len(faces), sample_rate=config.sample_rate),
                            generator=_generator(seed, torch.device("cpu")))
        optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Secure RNG turned off")  # warned once, by train_dp
            self.engine = PrivacyEngine(accountant=config.accountant, secure_mode=config.secure_mode)
        ghost = self.mode.startswith("ghost")
        private = self.engine.make_private(
            module=generator, optimizer=optimizer, data_loader=loader, criterion=self.objective,
            noise_multiplier=config.noise_multiplier, max_grad_norm=config.max_grad_norm,
            poisson_sampling=True, grad_sample_mode="ghost" if ghost else self.mode.removesuffix("_conv"),
            noise_generator=_generator(seed, self.device))
        if ghost:
            self.module, self.optimizer, self.criterion, self.loader = private
        else:
            (self.module, self.optimizer, self.loader), self.criterion = private, self.objective
        if self.mode == "ghost_conv":
            install_ghost_conv(self.module)
        elif self.mode == "hooks_conv":
            install_hooks_conv(self.module)
        self.batches = iter(self.loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next Poisson-sampled batch: uint8 faces (B, H, W, 3) and ages (B,); B may be 0."""
        try:
            return next(self.batches)
        except StopIteration:  # the DP loader yields 1/q batches per pass; keep drawing fresh ones
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self, faces: torch.Tensor, ages: torch.Tensor) -> dict[str, float]:
        """One DP-SGD step on this batch (see train_dp for its parts); returns the step's metrics."""
        b = len(faces)
        if b == 0:
            self._empty_step()
            return {"batch": 0.0, "loss": math.nan, "recon": math.nan, "age_error": math.nan}
        # (B, 3, H, W) in [-1, 1], made contiguous: from the (B, H, W, 3) permute it would be channels-last
        # strided, and Opacus 1.6's unfold2d (hooks and ghost conv grad samplers) reads such activations
        # as if they were NCHW, silently giving wrong per-sample conv gradients.
        x = (faces.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()
        recon = (torch.rand(b, generator=self.rng) < self.config.recon_fraction).float()
        target = torch.empty(b).uniform_(*AGE_RANGE, generator=self.rng)
        age = torch.where(recon.bool(), ages.float(), target).to(self.device)  # (B,) years asked for
        loss = self.criterion(self.module(x, age), x, age, recon.to(self.device))
        with warnings.catch_warnings():  # torch notes the input needs no grad: true, and Opacus' hooks don't care
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()  # ghost modes: two passes inside (norms, then the clipped-loss backward)
        self.optimizer.step()  # clip, sum, add noise, average, Adam; the accountant records the step
        self.optimizer.zero_grad(set_to_none=True)
        return {"batch": float(b), **self.objective.last}

    def _empty_step(self) -> None:
        """Poisson sampling drew nobody: still a noisy step, so the accountant's count stays right."""
        for p in self.optimizer.params:
            if self.mode.startswith("ghost"):
                p.grad = torch.zeros_like(p)  # the fast-clipping optimizer noises p.grad
            else:
                p.grad_sample = p.new_zeros((0, *p.shape))  # Opacus clips an empty batch to zero
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def epsilon(self) -> float:
        """Epsilon spent so far, from the PrivacyEngine's accountant."""
        history, delta = self.engine.accountant.history, self.config.delta
        if not history:
            return 0.0
        if self.config.accountant == "prv" and not _prv_fits(history, delta):
            return _epsilon(history, delta, "prv")  # falls back to RDP, saying so
        with warnings.catch_warnings():
            _quiet_prv_domain(self.config.accountant)
            return float(self.engine.get_epsilon(delta))

    def plain_model(self, like: AgeGenerator) -> AgeGenerator:
        """A fresh CPU copy of the trained generator without Opacus' wrapper, hooks or per-sample state."""
        state = {k.removeprefix("_module."): v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        out = type(like)(like.config)
        out.load_state_dict(state)
        return out.eval()


def train_dp(*, model: AgeGenerator, faces: np.ndarray, source_ages: np.ndarray, estimator: nn.Module,
             config: DPConfig, progress: bool = True,
             on_step: Callable[[int, dict[str, float]], None] | None = None) -> DPResult:
    """Fine-tune a copy of `model` with DP-SGD on opted-in faces; the caller's model is left untouched.

    Args:
        model: the generator to start from (an AgeGenerator; copied, never modified).
        faces: (N, H, W, 3) uint8 aligned face crops at the model's image size, one per user.
        source_ages: (N,) each face's age in years (known, or the estimator's reading).
        estimator: a frozen AgeEstimator NOT trained on private data; copied, never updated.
        config: the run's DPConfig; reserve `config.epsilon()` in the budget ledger before calling.
        progress: show a tqdm bar.
        on_step: called after every step with (step, metrics), e.g. to report progress from a task.

    Each of the `config.steps` steps is one DP-SGD step:
      1. Sample: every user joins the batch independently with probability q (Poisson, Opacus' DPDataLoader):
         sample_rate, or the nearest rate below it that Opacus can run (see loader_batch_size). The batch
         may be empty, and an empty batch is still a step (noise only).
      2. Objective: a seeded coin sends each row to reconstruction (generate at its own source age, L1 to
         the input) or to aging (a uniform random target age); every row also pays age_weight * the frozen
         estimator's error in years / AGE_SCALE. One forward pass per row, so one gradient per user.
      3. Per-sample gradients: Opacus' hooks compute each user's gradient (hooks_conv: Conv2d's by one grouped
         convolution; functorch: by vmap); in the ghost modes only each user's gradient norm is computed
         (ghost_conv: for Conv2d and GroupNorm too), and a second backward pass sums the clipped gradients.
      4. Clip: each user's whole gradient is scaled to L2 norm <= max_grad_norm (C), bounding any one
         person's influence on the step.
      5. Noise: Gaussian noise of std noise_multiplier * C is added to the sum of clipped gradients (from a
         seeded generator when secure_mode is off, a cryptographic one when on).
      6. Average and update: the noisy sum is divided by the expected batch size q*N and Adam takes a step;
         the accountant records (noise_multiplier, q) for the step.
    After the last step, epsilon_spent is the PrivacyEngine accountant's epsilon at config.delta.
    """
    _check_data(model, faces, source_ages, estimator)
    _check_config(config, len(faces))
    if config.delta >= 1.0 / len(faces):
        warnings.warn(f"delta={config.delta} is not below 1/N = {1 / len(faces):.3g}: a mechanism that leaks one "
                      "random user's data entirely would meet it; choose delta well below 1/N", stacklevel=2)
    rate = effective_sample_rate(n=len(faces), sample_rate=config.sample_rate)
    if rate < config.sample_rate * (1 - RATE_TOLERANCE):
        warnings.warn(f"sample_rate={config.sample_rate:.4g} is not 1/k for a batch count k Opacus can make from "
                      f"N={len(faces)}: the run samples and is accounted at {rate:.4g}, so it spends less than "
                      "planned; pass sample_rate=1/k to spend exactly the plan", stacklevel=2)
    if config.noise_multiplier == 0:
        warnings.warn("noise_multiplier=0: clipping without noise gives NO differential privacy guarantee "
                      "(epsilon is infinite)", stacklevel=2)
    if not config.secure_mode:
        warnings.warn("secure_mode is off: noise and sampling come from a seeded pseudo-random generator, fine "
                      "for experiments; train production models with secure_mode=True (torchcsprng)",
                      stacklevel=2)
    trainer = PrivateTrainer(model=model, faces=faces, source_ages=source_ages, estimator=estimator,
                             config=config)
    planned = config.epsilon()
    per_step: list[dict[str, float]] = []
    smooth: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc=f"DP fine-tune (eps {planned:.2f})", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        metrics = {"step": float(step), **trainer.step(*trainer.next_batch())}
        per_step.append(metrics)
        for k in ("loss", "recon", "age_error"):
            if not math.isnan(metrics[k]):
                smooth[k] = metrics[k] if k not in smooth else 0.9 * smooth[k] + 0.1 * metrics[k]
        bar.set_postfix(loss=f"{smooth.get('loss', math.nan):.4f}", age=f"{smooth.get('age_error', math.nan):.1f}")
        if on_step is not None:
            on_step(step, metrics)
    seconds = time.perf_counter() - start
    epsilon = trainer.epsilon()
    sizes = [m["batch"] for m in per_step]
    summary = {"final_loss": smooth.get("loss", math.nan), "final_recon": smooth.get("recon", math.nan),
               "final_age_error": smooth.get("age_error", math.nan), "epsilon": epsilon,
               "epsilon_planned": planned, "train_seconds": seconds, "seconds_per_step": seconds / config.steps,
               "sample_rate_effective": rate, "mean_batch_size": float(np.mean(sizes)),
               "empty_batches": float(sizes.count(0.0)), "participants": float(len(faces))}
    return DPResult(model=trainer.plain_model(model), epsilon_spent=epsilon, delta=config.delta,
                    steps=config.steps, metrics=_json_safe(summary),
                    history=[(float(s), float(q), int(k)) for s, q, k in trainer.engine.accountant.history],
                    per_step=[_json_safe(m) for m in per_step], config=config)


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN / inf (a metric with no rows behind it, epsilon without noise) -> None: model cards are JSON."""
    return {k: v if math.isfinite(v) else None for k, v in metrics.items()}
