"""The ledgers' accountant and the figures shown beside them: inference.dp's RDP and Rényi filter for
governance.training (passed in, never installed at start-up), and PRV's tighter estimate for runs as if
their parameters had been fixed in advance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings

from governance.models import TrainingRun
from governance.training import curve_add, run_ancestry, run_rdp

if TYPE_CHECKING:
    from inference.dp.accounting import Step


class FilterAccountant:
    """governance.training.Accountant from inference.dp (Opacus' RDP analysis at FILTER_ORDERS). Imported
    on first use: torch stays out of the web process's start-up."""

    def release_rdp(self, noise_multiplier: float, sample_rate: float, steps: int) -> list[float]:
        from inference.dp.accounting import rdp_curve

        return rdp_curve([(noise_multiplier, sample_rate, steps)])

    def epsilon(self, rdp: Sequence[float], delta: float) -> float:
        from inference.dp.accounting import filter_conversion

        return filter_conversion(list(rdp), delta)[0]

    def order(self, rdp: Sequence[float], delta: float) -> float:
        """The order whose bound the filter's epsilon is."""
        from inference.dp.accounting import filter_conversion

        return filter_conversion(list(rdp), delta)[1]


def ledger_accountant() -> FilterAccountant:
    return FilterAccountant()


def run_history(run: TrainingRun) -> list[Step]:
    """What a run releases, as PRV accountant entries: its DP-SGD steps, and its noisy participant count."""
    return [(run.noise_multiplier, run.sample_rate, run.steps), (run.count_noise, 1.0, 1)]


def prv_estimate(runs: list[TrainingRun], delta: float) -> float:
    """PRV's epsilon of these runs together: tighter than the filter's, but proven only for runs whose
    parameters were fixed in advance, which ours are not; shown as an estimate, never checked by a cap."""
    from inference.dp.accounting import compose_epsilon

    history = [step for run in runs for step in run_history(run)]
    if not history:
        return 0.0
    return compose_epsilon(history=history, delta=delta, accountant=settings.DP_ACCOUNTANT)


def filter_totals(runs: list[TrainingRun], delta: float) -> list[float]:
    """The filter's epsilon after each run of this list (a person's runs, oldest first), at `delta`."""
    accountant, totals, total = ledger_accountant(), [], None
    for run in runs:
        curve = run_rdp(run, accountant)
        total = curve if total is None else curve_add(total, curve)
        totals.append(accountant.epsilon(total, delta))
    return totals


def ancestry_epsilon(run: TrainingRun) -> tuple[float, float]:
    """(epsilon, delta) of the model a run produces, for its card: its own release with its whole ancestry,
    under PRV (the estimate for parameters fixed in advance; the lineage's cap checks the filter)."""
    chain = [*run_ancestry(run.parent_version), run]
    delta = min(r.delta for r in chain)
    return prv_estimate(chain, delta), delta


def ancestry_filter_epsilon(run: TrainingRun, delta: float) -> float:
    """The same ancestry under the Rényi filter at `delta`: valid for adaptively chosen runs, looser."""
    return filter_totals([*run_ancestry(run.parent_version), run], delta)[-1]
