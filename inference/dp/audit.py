"""An empirical privacy audit in one training run (Steinke, Nasr & Jagielski 2023, arXiv 2305.08846).

White-box, with gradient canaries, on the code path training uses (`make_private`: Poisson sampling, clipping,
noise, the public divisor, the accountant). Each of m canaries is included with probability 1/2; canary i's
gradient is C times the i-th unit vector (a one-hot input, scaled past the clip, into a linear layer). The
auditor sees every noisy gradient, scores each canary by the sum of its coordinate over the steps, guesses
"in" for the top r/2 scores and "out" for the bottom r/2, and turns the number of right guesses into an
epsilon lower bound at 95% confidence. A sound implementation never shows a lower bound above its claim.
The same guesses on a no-noise control must reach the test's maximum against the canaries actually drawn
(the test has the power to see a leak), and the noise multiplier and sample rate are measured from the
gradients and compared with the plan.

The linear canaries test the noise, the sampling and the accounting; they never pass a Conv2d or a
GroupNorm. `clipping_probe` covers those: people sent one at a time through the real generator and
make_private with no noise and a loss scaled far past the clip, so each person's contribution to the update
must be exactly C, and every layer type with parameters must carry part of it (a conv-norm bug that halves
Conv2d's norms lets a contribution reach about 2C). `audit` runs both at the pinned settings.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset

from inference.generator.certificates import MINIMUMS, PINNED_CLAIMS, code_version
from inference.generator.model import AgeGenerator

from .accounting import epsilon_for, noise_for_epsilon
from .config import DEFAULT_GRAD_SAMPLE_MODE, GRAD_SAMPLE_MODES, NOISE_ON_GRAD, DPConfig
from .trainer import make_private

__all__ = ["PINNED_CLAIMS", "AuditConfig", "AuditResult", "ProbeResult", "audit", "audit_one_run",
           "clipping_probe", "code_version", "epsilon_lower_bound", "meets_minimums", "p_value"]

CANARY_SCALE = 10.0  # canary input norm in units of the clip: every canary gradient is clipped to exactly C
PROBE_LOSS_SCALE = 1e4  # the probe's loss multiplier: every person's gradient is far past the clip
PROBE_TOLERANCE = 1e-5  # relative: a clipped contribution is C up to float32 rounding (about 1e-7 measured)
PROBE_MIN_SHARE = 1e-3  # each layer type must carry at least this share of some contribution to be covered


@dataclass(frozen=True)
class AuditConfig:
    canaries: int = 1000  # m: each included with probability 1/2
    sample_rate: float = 0.25  # q of the audited DP-SGD run
    steps: int = 40  # T
    delta: float = 1e-5
    guesses: int = 100  # r: r/2 "in" guesses (top scores) and r/2 "out" guesses (bottom scores)
    confidence: float = 0.95
    max_grad_norm: float = 1.0
    probe_people: int = 4  # people sent one at a time through the real generator by clipping_probe


@dataclass
class AuditResult:
    claimed_epsilon: float
    noise_multiplier: float
    noise_measured: float
    sample_rate: float
    sample_rate_measured: float
    correct: int
    guesses: int
    epsilon_lower_bound: float
    ideal_lower_bound: float  # the same test on a simulation of the ideal mechanism
    control_lower_bound: float  # the same test without noise
    max_lower_bound: float  # what r right guesses out of r give
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with `passed`."""
        return {**asdict(self), "passed": self.passed}


PINNED = AuditConfig()  # the defaults are the pinned settings: a certificate needs at least these


def meets_minimums(config: AuditConfig, claims: list[float]) -> bool:
    """Whether an audit at these settings can certify code (certificates.MINIMUMS and PINNED_CLAIMS)."""
    fields = asdict(config)
    return (set(PINNED_CLAIMS) <= set(claims) and all(fields[k] >= v for k, v in MINIMUMS.items())
            and config.delta <= PINNED.delta)


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least v of r guesses right] under (epsilon, delta)-DP with m canaries (the paper's
    Theorem 3.3)."""
    q = 1 / (1 + math.exp(-epsilon))  # accuracy of epsilon-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, q))
    alpha, total = 0.0, 0.0
    for i in range(1, v + 1):
        total += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, total / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(*, m: int, r: int, v: int, delta: float, confidence: float) -> float:
    """The largest epsilon that v right guesses out of r refute at this confidence (0 if none)."""
    alpha = 1 - confidence
    if p_value(m=m, r=r, v=v, epsilon=0.0, delta=delta) >= alpha:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m=m, r=r, v=v, epsilon=high, delta=delta) < alpha and high < 1e3:
        low, high = high, high * 2
    for _ in range(40):
        mid = (low + high) / 2
        if p_value(m=m, r=r, v=v, epsilon=mid, delta=delta) < alpha:
            low = mid
        else:
            high = mid
    return low


def _guess(scores: np.ndarray, included: np.ndarray, r: int, rng: np.random.Generator) -> int:
    """Right guesses among the top r/2 ("in") and bottom r/2 ("out") scores; ties broken at random."""
    order = np.lexsort((rng.random(len(scores)), scores))  # ascending score, random among equals
    k = r // 2
    return int(np.sum(~included[order[:k]]) + np.sum(included[order[len(order) - k:]]))


def control_right_guesses(scores: np.ndarray, included: np.ndarray, r: int, rng: np.random.Generator) -> int:
    """Right guesses on the no-noise control, where a canary's score is its number of appearances. An
    in-canary the sampler never drew (probability (1-q)^T each) is out as far as the mechanism is concerned,
    so the guesses are judged against the canaries drawn; a pipeline that lost or misplaced the signal
    still misses."""
    return _guess(scores, included & (scores > 0.5), r, rng)


class _CanaryLoss(nn.Module):
    """The canaries' loss: the layer's output itself, so each canary's gradient is its own input."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"  # what the clipping wrappers switch to "none" for per-sample losses

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        per_sample = out.sum(dim=1)  # (B,)
        return per_sample.mean() if self.reduction == "mean" else per_sample


def _canary_scores(config: AuditConfig, noise: float,
                   included: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Run DP-SGD through make_private on the included canaries; each canary's score, measured sigma and q."""
    m, c = config.canaries, config.max_grad_norm
    expected = config.sample_rate * m / 2  # public: the expected number of included canaries in a batch
    dp_config = DPConfig(noise_multiplier=noise, max_grad_norm=c, sample_rate=config.sample_rate,
                         steps=config.steps, delta=config.delta, expected_batch_size=expected, lr=1e-3)
    inputs = torch.eye(m)[torch.from_numpy(np.flatnonzero(included))] * CANARY_SCALE * c  # (m_in, m)
    layer = nn.Linear(m, 1, bias=False)
    parts = make_private(module=layer, dataset=TensorDataset(inputs), config=dp_config,
                         objective=_CanaryLoss(), device=torch.device("cpu"))
    seen: list[torch.Tensor] = []
    hook = parts.optimizer.step_hook

    def capture(optimizer: Any) -> None:
        seen.append(optimizer.params[0].grad.detach().reshape(-1).clone())  # the noisy, averaged gradient
        hook(optimizer)

    parts.optimizer.step_hook = capture
    batches = iter(parts.loader)
    for _ in range(config.steps):
        try:
            (x,) = next(batches)
        except StopIteration:
            batches = iter(parts.loader)
            (x,) = next(batches)
        if len(x) == 0:  # nobody sampled: a noise-only step, as in training
            for p in parts.optimizer.params:
                if GRAD_SAMPLE_MODES[dp_config.grad_sample_mode][0] in NOISE_ON_GRAD:
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = p.new_zeros((0, *p.shape))
        else:
            with warnings.catch_warnings():  # the canaries' inputs need no gradient; Opacus' hooks don't care
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                # per-sample gradient of canary j: its input, clipped to C e_j by whichever mode is configured
                parts.criterion(parts.module(x)).backward()
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
    grads = torch.stack(seen).numpy() * expected / c  # (T, m): canary appearances + N(0, sigma^2)
    out = grads[:, ~included]
    noise_measured = float(out.std()) if out.size else math.nan
    sample_rate_measured = float(grads[:, included].mean()) if included.any() else math.nan
    return grads.sum(axis=0), noise_measured, sample_rate_measured


def _ideal_scores(config: AuditConfig, noise: float, included: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """The same scores from the ideal mechanism, simulated: Poisson appearances plus exact Gaussian noise."""
    t, m = config.steps, config.canaries
    appearances = rng.binomial(t, config.sample_rate, m) * included
    return appearances + rng.normal(0.0, noise * math.sqrt(t), m)


def audit_one_run(*, claimed_epsilon: float, config: AuditConfig = AuditConfig()) -> AuditResult:
    """Audit the DP-SGD code path at the noise that claims `claimed_epsilon`; see the module docstring."""
    m, r = config.canaries, config.guesses
    noise = noise_for_epsilon(target_epsilon=claimed_epsilon, sample_rate=config.sample_rate,
                              steps=config.steps, delta=config.delta)
    claim = epsilon_for(noise_multiplier=noise, sample_rate=config.sample_rate, steps=config.steps,
                        delta=config.delta)
    rng = np.random.default_rng()  # fresh OS entropy: which canaries are in is unknown to the code audited
    included = rng.random(m) < 0.5

    def bound(right: int) -> float:
        return epsilon_lower_bound(m=m, r=r, v=right, delta=config.delta, confidence=config.confidence)

    scores, noise_measured, rate_measured = _canary_scores(config, noise, included)
    correct = _guess(scores, included, r, rng)
    control, _, _ = _canary_scores(config, 0.0, included)
    ideal = _ideal_scores(config, noise, included, rng)
    result = AuditResult(
        claimed_epsilon=claim, noise_multiplier=noise, noise_measured=noise_measured,
        sample_rate=config.sample_rate, sample_rate_measured=rate_measured, correct=correct, guesses=r,
        epsilon_lower_bound=bound(correct), ideal_lower_bound=bound(_guess(ideal, included, r, rng)),
        control_lower_bound=bound(control_right_guesses(control, included, r, rng)), max_lower_bound=bound(r))
    # Tolerances: five standard errors of each estimate over m/2 canaries and T steps
    n_out, n_in = max(int((~included).sum()) * config.steps, 1), max(int(included.sum()) * config.steps, 1)
    if not abs(noise_measured - noise) <= 5 * noise / math.sqrt(2 * n_out) + 1e-9:
        result.failures.append(f"measured noise multiplier {noise_measured:.4f}, configured {noise:.4f}")
    q = config.sample_rate
    if not abs(rate_measured - q) <= 5 * math.sqrt((noise ** 2 + q * (1 - q)) / n_in):
        result.failures.append(f"measured sample rate {rate_measured:.4f}, configured {q:.4f}")
    if result.epsilon_lower_bound > claim:
        result.failures.append(f"epsilon lower bound {result.epsilon_lower_bound:.3f} "
                               f"above the claim {claim:.3f}")
    if result.control_lower_bound < result.max_lower_bound - 1e-6:
        result.failures.append(f"the no-noise control reached {result.control_lower_bound:.3f}, "
                               f"not the test's maximum {result.max_lower_bound:.3f}: the audit cannot see "
                               "a leak")
    return result


@dataclass
class ProbeResult:
    max_grad_norm: float
    contributions: list[float]  # each person's contribution to the update (L2), C when clipping is right
    layer_types: dict[str, float]  # each parameterised layer type: the largest share of a contribution
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with `passed`."""
        return {**asdict(self), "passed": self.passed}


class _ProbeLoss(nn.Module):
    """Per-person L1 to a target, scaled far past the clip; `reduction` as DPObjective's."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = (out - target).abs().mean(dim=(1, 2, 3)) * PROBE_LOSS_SCALE
        return per_sample.mean() if self.reduction == "mean" else per_sample


def clipping_probe(model: AgeGenerator, *, people: int = PINNED.probe_people,
                   max_grad_norm: float = PINNED.max_grad_norm,
                   grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE) -> ProbeResult:
    """Each person's clipped contribution through the real generator and make_private, without noise."""
    rng = np.random.default_rng()
    size = model.config.image_size
    images = torch.from_numpy(rng.integers(0, 256, (people, 3, size, size)).astype(np.float32) / 127.5 - 1)
    targets = torch.from_numpy(rng.integers(0, 256, (people, 3, size, size)).astype(np.float32) / 127.5 - 1)
    ages = torch.from_numpy(rng.uniform(5, 90, people).astype(np.float32))
    module = copy.deepcopy(model).cpu().train()
    owner = {id(p): type(m).__name__ for m in module.modules() for p in m.parameters(recurse=False)
             if p.requires_grad}
    config = DPConfig(noise_multiplier=0.0, max_grad_norm=max_grad_norm, sample_rate=0.5, steps=people,
                      delta=1e-5, expected_batch_size=1.0, lr=1e-12, grad_sample_mode=grad_sample_mode)
    parts = make_private(module=module, dataset=TensorDataset(images), config=config, objective=_ProbeLoss(),
                         device=torch.device("cpu"))
    seen: list[dict[str, float]] = []
    hook = parts.optimizer.step_hook

    def capture(optimizer: Any) -> None:  # after clipping, (no) noise and the division by 1
        squares: dict[str, float] = {}
        for p in optimizer.params:
            kind = owner[id(p)]
            squares[kind] = squares.get(kind, 0.0) + float(p.grad.detach().double().square().sum())
        seen.append(squares)
        hook(optimizer)

    parts.optimizer.step_hook = capture
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="noise_multiplier=0")
        for i in range(people):  # one person a step: the update is that person's clipped gradient
            parts.criterion(parts.module(images[i:i + 1], ages[i:i + 1]), targets[i:i + 1]).backward()
            parts.optimizer.step()
            parts.optimizer.zero_grad(set_to_none=True)
    contributions = [math.sqrt(sum(s.values())) for s in seen]
    kinds = sorted(set(owner.values()))
    shares = {k: max((math.sqrt(s.get(k, 0.0)) / c if c else 0.0) for s, c in zip(seen, contributions,
                                                                                  strict=True))
              for k in kinds}
    result = ProbeResult(max_grad_norm=max_grad_norm, contributions=contributions, layer_types=shares)
    off = [c for c in contributions if abs(c - max_grad_norm) > PROBE_TOLERANCE * max_grad_norm]
    if off:
        result.failures.append(f"{len(off)} of {people} people contributed {max(off, key=abs):.4f}, not the "
                               f"clip {max_grad_norm}: per-person clipping is wrong")
    silent = [k for k, share in shares.items() if share < PROBE_MIN_SHARE]
    if silent:
        result.failures.append(f"no contribution reached {', '.join(silent)}: the probe does not cover them")
    return result


def audit(*, model: AgeGenerator, claims: tuple[float, ...] = PINNED_CLAIMS,
          config: AuditConfig = PINNED) -> dict[str, Any]:
    """The linear-canary audit at each claim and the clipping probe through `model`; JSON-ready, with
    `passed` and whether these settings may certify the code (`certifying`)."""
    results = [audit_one_run(claimed_epsilon=claim, config=config) for claim in claims]
    probe = clipping_probe(model, people=config.probe_people, max_grad_norm=config.max_grad_norm)
    return {"config": asdict(config), "claims": list(claims), "results": [r.to_dict() for r in results],
            "clipping_probe": probe.to_dict(), "certifying": meets_minimums(config, list(claims)),
            "passed": all(r.passed for r in results) and probe.passed}
