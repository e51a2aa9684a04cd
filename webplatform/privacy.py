"""A user's privacy report: the training runs that used their data and their privacy loss, in plain words."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from governance.training import run_history, subject_running_epsilon, user_committed_epsilon

UNIT = ("What Timeveil protects is one account's photo, not you as a person: a run uses at most one photo "
        "per account and never a photo showing more than one face, and an exact pixel copy held by several "
        "accounts enters a run once. A re-saved, cropped or edited copy of the same picture, or different "
        "photos of you in several accounts, count as different people: each is charged and capped on its "
        "own, and your real loss can be the composition of them all.")


def privacy_report(user_id: int) -> dict[str, Any]:
    """Runs whose manifests held the user, epsilon and delta each, and all of them composed."""
    held = subject_running_epsilon(user_id)
    runs = [run for run, _ in held]
    cap = settings.DP_USER_EPSILON_CAP
    # total_after: your composed total after that run, stored when it was reserved (None on old rows)
    rows = [{"run_id": str(r.id), "finished_at": r.finished_at.isoformat() if r.finished_at else None,
             "status": r.status, "model_version": r.model_version, "lineage": r.lineage.name,
             "epsilon": r.epsilon_reserved, "delta": r.delta, "total_after": after} for r, after in held]
    if not runs:
        return {"runs": [], "total_epsilon": 0.0, "total_delta": 0.0, "filter_epsilon": 0.0,
                "filter_order": settings.DP_FILTER_ORDER, "epsilon_cap": cap, "unit": UNIT,
                "explanation": f"No training run has used your data. Your privacy loss is zero. {UNIT}"}
    from inference.dp.accounting import filter_epsilon  # torch stays out of the web process's start-up

    # Every run composed by the accountant (an upper bound), whatever its status: a reserved or failed
    # run counts in full, and nothing is ever replaced by a smaller figure.
    total, delta = user_committed_epsilon(user_id)
    adaptive = filter_epsilon(history=[step for r in runs for step in run_history(r)], delta=delta,
                              order=settings.DP_FILTER_ORDER)
    return {
        "runs": rows,
        "total_epsilon": total,
        "total_delta": delta,
        "filter_epsilon": adaptive,
        "filter_order": settings.DP_FILTER_ORDER,
        "epsilon_cap": cap,
        "unit": UNIT,
        "explanation": (
            f"{len(runs)} training run(s) used one of your photos. Differential privacy bounds what the "
            f"resulting models can reveal about that photo: with total epsilon {total:.2f} and delta "
            f"{delta:.1e}, for any conclusion an observer could draw from them, its probability is at "
            f"most {_factor(total)} times what it would have been had your photo never been used, plus "
            f"{delta:.1e}. "
            f"Lower is more private. A run that would take this total past {cap:g} leaves your photo out. "
            f"That total composes the runs as if all had been planned in advance; they were not (each run's "
            f"settings follow noisy counts, and who joins follows the ledger), and for runs chosen that way "
            f"the proven figure is the Rényi bound at order {settings.DP_FILTER_ORDER:g}: {adaptive:.2f} "
            f"(Feldman and Zrnic 2021), which the cap does not yet check. {UNIT}"
        ),
    }


def _factor(epsilon: float) -> str:
    return f"{math.exp(epsilon):.1f}" if epsilon < 20 else "a very large number of"
