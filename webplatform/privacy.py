"""A user's privacy report: the training runs that used their data and their privacy loss, in plain words."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from governance.audit import pseudonym
from governance.models import RunStatus, TrainingRun
from governance.training import subject_running_epsilon, subject_sums
from webplatform.training.ledger import filter_totals, ledger_accountant, prv_estimate

UNIT = ("What Timeveil protects is one account's photo with its near copies, not you as a person: a run "
        "uses at most one photo per account and never a photo showing more than one face, and a picture held "
        "by several accounts (the same pixels, or a near copy such as a re-saved JPEG or a slightly resized "
        "one, recognised by a keyed fingerprint) enters a run once, and its cap counts what every copy has "
        "spent while the copies are kept (a copy deleted, withdrawn from training or erased is no longer "
        "counted). "
        "A cropped or edited copy, or different photos of you in several accounts, count as different "
        "people: each is charged and capped on its own, and your real loss can be the composition of them "
        "all.")


Held = list[tuple[TrainingRun, float | None]]  # a person's runs, each with the stored filter total after it


def privacy_report(user_id: int, *, prv: bool = False) -> dict[str, Any]:
    """Runs whose manifests held the user, epsilon and delta each, and all of them under the Rényi filter
    the cap checks; with `prv`, PRV's estimate for runs planned in advance beside it (composed on each
    request, so only when asked, and only for at most DP_PRV_ESTIMATE_MAX_RUNS runs)."""
    return _report(user_id, subject_running_epsilon(user_id), prv=prv)


def privacy_page(user_id: int, *, prv: bool = False
                 ) -> tuple[dict[str, Any], list[TrainingRun], float, float]:
    """What the privacy page shows, from one read of the ledger: the report, the runs, and the total split
    into what settled runs spent and what runs in progress reserve (_spent_and_reserved)."""
    held = subject_running_epsilon(user_id)
    report = _report(user_id, held, prv=prv)
    spent, reserved = _spent_and_reserved(held, float(report["total_epsilon"]))
    return report, [run for run, _ in held], spent, reserved


def _report(user_id: int, held: Held, *, prv: bool) -> dict[str, Any]:
    runs = [run for run, _ in held]
    cap, delta = settings.DP_USER_EPSILON_CAP, settings.DP_DELTA
    if not runs:
        return {"runs": [], "total_epsilon": 0.0, "total_delta": 0.0, "filter_epsilon": 0.0,
                "filter_order": None, "prv_epsilon": 0.0, "prv_delta": 0.0, "epsilon_cap": cap,
                "unit": UNIT, "summary": "No training run has used your data. Your privacy loss is zero.",
                "explanation": f"No training run has used your data. Your privacy loss is zero. {UNIT}"}
    # total_after: the filter's epsilon after that run, stored when it was reserved (computed for rows
    # written without the ledger). Every run counts in full whatever its status: a reserved or failed one too.
    stored = [after for _, after in held]
    totals = stored if all(t is not None for t in stored) else filter_totals(runs, delta)
    rows = [{"run_id": str(r.id), "finished_at": r.finished_at.isoformat() if r.finished_at else None,
             "status": r.status, "model_version": r.model_version, "lineage": r.lineage.name,
             "epsilon": r.epsilon_reserved, "delta": r.delta, "total_after": after}
            for r, after in zip(runs, totals, strict=True)]
    accountant = ledger_accountant()
    sums = subject_sums([pseudonym(user_id)], accountant)[pseudonym(user_id)]
    total = float(totals[-1] or 0.0)
    prv_delta = min(r.delta for r in runs)
    # PRV composes every run again on each request (about 0.2 s a run): only when asked, and bounded
    within_bound = len(runs) <= settings.DP_PRV_ESTIMATE_MAX_RUNS
    estimate_prv = prv_estimate(runs, prv_delta) if prv and within_bound else None
    if estimate_prv is not None:
        estimate = (f"Had every run been planned in advance, the tighter PRV accountant would give "
                    f"{estimate_prv:.2f} (at delta {prv_delta:.1e}): an estimate that is not proven for "
                    "runs chosen as ours are, and not what the cap checks. ")
    elif prv:
        estimate = (f"PRV's tighter estimate for runs planned in advance is not computed for more than "
                    f"{settings.DP_PRV_ESTIMATE_MAX_RUNS} runs. ")
    else:
        estimate = ""
    summary = (
        f"{len(runs)} training run(s) used one of your photos. Differential privacy bounds what the "
        f"resulting models can reveal about that photo, and the bound we prove is the cap: with "
        f"epsilon {cap:g} and delta {delta:.1e}, for any conclusion an observer could draw from every "
        f"model ever trained, its probability is at most {_factor(cap)} times what it would have been "
        f"had your photo never been used, plus {delta:.1e}. A Rényi filter (Feldman and Zrnic 2021) "
        f"enforces it, and holds although each run's settings follow noisy counts and who joins follows "
        f"the ledger: a run that would take the filter's count past {cap:g} leaves your photo out, "
        f"charging you only the noisy count of participants that included you. So far the filter has "
        f"counted {total:.2f} of it; lower is more private. That running figure is the filter's "
        f"account, not a proven bound by itself.")
    return {
        "runs": rows,
        "total_epsilon": total,  # the Rényi filter's: what the cap checks
        "total_delta": delta,
        "filter_epsilon": total,
        "filter_order": accountant.order(sums, delta) if any(sums) else None,
        "prv_epsilon": estimate_prv,  # None unless asked for, and past DP_PRV_ESTIMATE_MAX_RUNS runs
        "prv_delta": prv_delta,
        "epsilon_cap": cap,
        "unit": UNIT,
        "summary": summary,  # the explanation without the estimate and the unit, which pages show apart
        "explanation": f"{summary} {estimate}{UNIT}",
    }


def _spent_and_reserved(held: Held, total: float) -> tuple[float, float]:
    """The filter total split into what settled runs spent and what runs still in progress (reserved or
    running) add to it: they count in the total already, and the filter's figures do not add up run by
    run, so the settled part is the filter's figure over the settled runs alone: the stored total after the
    last settled run when every run in progress came after it, else composed."""
    runs = [r for r, _ in held]
    in_progress = [r.status in (RunStatus.RESERVED, RunStatus.RUNNING) for r in runs]
    if not any(in_progress):
        return total, 0.0
    settled = [r for r, busy in zip(runs, in_progress, strict=True) if not busy]
    first_busy = in_progress.index(True)
    if not settled:
        spent = 0.0
    elif not any(not busy for busy in in_progress[first_busy:]) and held[first_busy - 1][1] is not None:
        spent = float(held[first_busy - 1][1] or 0.0)
    else:
        spent = filter_totals(settled, settings.DP_DELTA)[-1]
    return spent, max(total - spent, 0.0)


def _factor(epsilon: float) -> str:
    return f"{math.exp(epsilon):.1f}" if epsilon < 20 else "a very large number of"
