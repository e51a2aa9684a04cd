"""Privacy accounting for DP-SGD: what a run spends, how much noise a budget needs, what runs cost together.

Every figure is an upper bound on the true epsilon: Opacus' PRV accountant answers its `eps_upper`
(Gopi et al. 2021, the discretisation error added, not subtracted), and where its grid would not fit in
memory the RDP accountant answers instead, a looser but valid bound. Nothing here takes a minimum with
anything: a smaller figure from a looser method is not evidence of a smaller loss. A history is a list of
(noise_multiplier, sample_rate, steps): Poisson-subsampled Gaussian steps under add/remove adjacency.
A released count (sensitivity 1, Gaussian noise of std sigma) is the entry (sigma, 1.0, 1).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from opacus.accountants import PRVAccountant, create_accountant
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.utils import MAX_SIGMA

Step = tuple[float, float, int]  # (noise_multiplier, sample_rate, steps)

# Both are upper bounds; GDP is not offered: its CLT approximation under-reports at the q and steps we run.
ACCOUNTANTS = ("prv", "rdp")
PRV_MAX_POINTS = 1 << 22  # largest PRV grid accepted (~700 MB peak); past it epsilon comes from RDP
MAX_NOISE = MAX_SIGMA  # noise_for_epsilon gives up past Opacus' own limit
EPSILON_TOLERANCE = 0.01  # noise_for_epsilon's answer spends within this of the target (Opacus' default)


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r} is not one of {ACCOUNTANTS}: use 'prv' (tightest "
                         "upper bound, the default) or 'rdp' (looser, cheaper); GDP was removed because it "
                         "under-reports")


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, int | float) and 0.0 < delta < 1.0):
        raise ValueError(f"delta={delta!r} must be in (0, 1); "
                         "use well below 1/N for N participants, e.g. 1e-6")


def _check_run(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (isinstance(noise_multiplier, int | float) and math.isfinite(noise_multiplier)
            and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier={noise_multiplier!r} must be a finite number >= 0 "
                         "(typically 0.5-5)")
    if not (isinstance(sample_rate, int | float) and 0.0 < sample_rate <= 1.0):
        raise ValueError(f"sample_rate={sample_rate!r} must be in (0, 1]: the expected batch size over N")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a whole number >= 0 (optimizer steps, not epochs)")


def _epsilon(history: list[Step], delta: float, accountant: str) -> float:
    """Epsilon of a (noise, sample rate, steps) history under one of Opacus' accountants."""
    history = [(float(s), float(q), int(k)) for s, q, k in history if k > 0]
    if not history:
        return 0.0
    if any(s == 0.0 for s, _, _ in history):
        return math.inf  # no noise: no finite guarantee (PRV would divide by zero)
    # q = 1 (a released count) makes PRV take log(1 - q) = -inf in a branch np.where then discards
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        _quiet_prv_domain(accountant)
        if accountant == "prv" and not _prv_fits(history, delta):
            warnings.warn(f"the PRV accountant would need more than {PRV_MAX_POINTS} grid points (about "
                          f"160 bytes each) for {history}; using RDP, a looser but valid upper bound",
                          stacklevel=3)
            accountant = "rdp"
        acc = create_accountant(mechanism=accountant)
        acc.history = history
        return float(acc.get_epsilon(delta=delta))  # PRV: eps_upper, RDP: its own upper bound


def _prv_fits(history: list[Step], delta: float) -> bool:
    """Whether Opacus' PRV accountant discretises this history on at most PRV_MAX_POINTS points.

    Long, low-noise runs can ask it for billions (10 GB+ at once); the grid is cheap to size beforehand
    with the same (private) method and get_epsilon's default errors.
    """
    prvs = [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history]
    domain = PRVAccountant()._get_domain(prvs=prvs, num_self_compositions=[k for _, _, k in history],
                                         eps_error=0.01, delta_error=delta / 1000)
    return domain.size <= PRV_MAX_POINTS


def _quiet_prv_domain(accountant: str) -> None:
    """PRV sizes its grid with an RDP bound, whose 'optimal order' hint says nothing about PRV's
    epsilon."""
    if accountant == "prv":
        warnings.filterwarnings("ignore", message="Optimal order is the")


def epsilon_for(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                accountant: str = "prv") -> float:
    """Epsilon spent by `steps` Poisson-sampled DP-SGD steps at `noise_multiplier` and `sample_rate`.

    An upper bound from Opacus' accountant (`prv` by default, or `rdp`) on the history
    [(noise_multiplier, sample_rate, steps)]. Zero steps spend 0; zero noise returns `math.inf`.
    """
    _check_run(noise_multiplier, sample_rate, steps)
    _check_delta(delta)
    _check_accountant(accountant)
    return _epsilon([(noise_multiplier, sample_rate, steps)], delta, accountant)


def noise_for_epsilon(*, target_epsilon: float, sample_rate: float, steps: int, delta: float,
                      accountant: str = "prv", extra: list[Step] | tuple[Step, ...] = ()) -> float:
    """The noise multiplier whose run spends at most target_epsilon, and within 0.01 of it (Opacus'
    search).

    `extra`: what else the same release spends (a run's noisy participant count): the run's steps composed
    with it stay within target_epsilon, so the target is the whole release's.
    """
    if not (isinstance(target_epsilon, int | float) and math.isfinite(target_epsilon)
            and target_epsilon > 0):
        raise ValueError(f"target_epsilon={target_epsilon!r} must be a finite number > 0, e.g. 1, 4 or 8")
    _check_run(1.0, sample_rate, steps)
    if steps == 0:
        raise ValueError("steps=0 spends nothing at any noise: ask for a run of at least one step")
    _check_delta(delta)
    _check_accountant(accountant)
    for entry in extra:
        _check_run(*entry)
    if extra and _epsilon(list(extra), delta, accountant) >= target_epsilon:
        raise ValueError(f"target_epsilon={target_epsilon} leaves nothing for training once {list(extra)} "
                         "is spent: raise the target")
    # Opacus' get_noise_multiplier search (double sigma from 20 until under budget, then bisect to within
    # 0.01 epsilon, answering the upper end), over this module's epsilon: PRV can need gigabytes at the
    # low-noise points it probes, and _epsilon falls back to RDP there instead.
    def eps(sigma: float) -> float:
        return _epsilon([(sigma, sample_rate, int(steps)), *extra], delta, accountant)

    low, high, eps_high = 0.0, 10.0, math.inf
    while eps_high > target_epsilon:
        high *= 2
        eps_high = eps(high)
        if high > MAX_NOISE:
            raise ValueError(f"no noise multiplier up to {MAX_NOISE:g} reaches epsilon {target_epsilon} at "
                             f"delta {delta} over {steps} steps at sample rate {sample_rate}: raise the "
                             "budget or run fewer steps or a lower sample rate")
    while target_epsilon - eps_high > EPSILON_TOLERANCE:
        mid = (low + high) / 2
        eps_mid = eps(mid)
        if eps_mid < target_epsilon:
            high, eps_high = mid, eps_mid
        else:
            low = mid
    return high


def compose_epsilon(*, history: list[Step], delta: float, accountant: str = "prv") -> float:
    """Epsilon of several mechanisms run on the same data: each entry a (noise, sample_rate, steps).

    Pass every entry of every run whose manifest held the person (or of a model's whole ancestry); runs
    with different noise and sample rates compose exactly under PRV (and RDP), never by taking a minimum.
    """
    _check_delta(delta)
    _check_accountant(accountant)
    if not isinstance(history, list | tuple):
        raise ValueError("history must be a list of (noise_multiplier, sample_rate, steps), "
                         f"got {type(history)}")
    for i, entry in enumerate(history):
        if not (isinstance(entry, list | tuple) and len(entry) == 3):
            raise ValueError(f"history[{i}]={entry!r} is not a (noise_multiplier, sample_rate, steps) triple")
        _check_run(*entry)
    return _epsilon([(float(s), float(q), int(k)) for s, q, k in history], delta, accountant)


# Rényi filter (Feldman & Zrnic 2021): at each order fixed in advance, RDP composes under fully adaptive
# choice of each run's parameters and participants, so a cap checked on these sums is a valid privacy
# filter. PRV's composition above is proven for a history fixed in advance; a person's runs are not (q, T
# and delta come from noisy counts, and who is in a run depends on the ledger). The ledgers store each
# person's and each run's sums at these orders (aligned with this tuple), so the orders are fixed for the
# platform's life: changing them needs every stored sum recomputed
# (webplatform/training/migrations/0001_dp_fill_filter_sums does it).
FILTER_ORDERS: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0)


def rdp_curve(history: list[Step] | tuple[Step, ...]) -> list[float]:
    """A history's RDP at each of FILTER_ORDERS: Opacus' compute_rdp per entry, summed (RDP composes by
    addition at a fixed order, adaptively too). Zero steps add nothing; zero noise gives infinity."""
    curve = np.zeros(len(FILTER_ORDERS))
    for s, q, k in history:
        _check_run(s, q, k)
        if int(k) == 0:
            continue
        if float(s) == 0.0:
            return [math.inf] * len(FILTER_ORDERS)
        curve += compute_rdp(q=float(q), noise_multiplier=float(s), steps=int(k), orders=list(FILTER_ORDERS))
    return [float(v) for v in curve]


def filter_conversion(rdp: list[float] | tuple[float, ...], delta: float) -> tuple[float, float]:
    """(epsilon, order) of the Rényi filter over FILTER_ORDERS holding the sums `rdp`, at `delta`.

    Opacus' get_privacy_spent (Balle et al. 2020's conversion) at delta / len(FILTER_ORDERS) for each order,
    the smallest epsilon taken. Valid for adaptively chosen runs: at each order a the Feldman-Zrnic
    supermartingale bounds the hockey-stick divergence on the event that the sum at a stayed within its
    budget, and a filter admitting a release only while some order stays within its budget ends with at
    least one such order: a union over the orders, each at delta / len(FILTER_ORDERS), gives (epsilon,
    delta). A curve of zeros (nothing released) is 0.
    """
    _check_delta(delta)
    values = [float(v) for v in rdp]
    if len(values) != len(FILTER_ORDERS):
        raise ValueError(f"an RDP curve has one value per order of FILTER_ORDERS ({len(FILTER_ORDERS)}), "
                         f"got {len(values)}: stored sums must be recomputed when the orders change")
    if not any(values):
        return 0.0, FILTER_ORDERS[0]
    if any(math.isinf(v) for v in values):
        return math.inf, FILTER_ORDERS[0]
    with warnings.catch_warnings():  # "optimal order is the largest/smallest alpha": the set is fixed
        warnings.filterwarnings("ignore", message="Optimal order is the")
        epsilon, order = get_privacy_spent(orders=list(FILTER_ORDERS), rdp=np.array(values),
                                           delta=delta / len(FILTER_ORDERS))
    return float(epsilon), float(order)


def filter_epsilon(*, history: list[Step] | tuple[Step, ...], delta: float) -> float:
    """Epsilon at `delta` of a history under the Rényi filter over FILTER_ORDERS: the figure the caps
    check, valid for adaptively chosen runs (an upper bound, looser than PRV's)."""
    return filter_conversion(rdp_curve(history), delta)[0]
