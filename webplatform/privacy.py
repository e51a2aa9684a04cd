"""A user's privacy report: the training runs that used their data and their privacy loss, in plain words."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from governance.training import runs_for_subject, user_committed_epsilon

UNIT = ("Timeveil protects you as one person: it trains on at most one photo per account, never on a photo "
        "showing more than one face, and uses an image only once even if several accounts uploaded it. If "
        "you hold several accounts with different photos of yourself, each account is counted separately.")


def privacy_report(user_id: int) -> dict[str, Any]:
    """Runs whose manifests held the user, epsilon and delta each, and all of them composed."""
    runs = runs_for_subject(user_id)
    cap = settings.DP_USER_EPSILON_CAP
    rows = [{"run_id": str(r.id), "finished_at": r.finished_at.isoformat() if r.finished_at else None,
             "status": r.status, "model_version": r.model_version, "lineage": r.lineage.name,
             "epsilon": r.epsilon_reserved, "delta": r.delta} for r in runs]
    if not runs:
        return {"runs": [], "total_epsilon": 0.0, "total_delta": 0.0, "epsilon_cap": cap, "unit": UNIT,
                "explanation": f"No training run has used your data. Your privacy loss is zero. {UNIT}"}
    # Every run composed by the accountant (an upper bound), whatever its status: a reserved or failed
    # run counts in full, and nothing is ever replaced by a smaller figure.
    total, delta = user_committed_epsilon(user_id)
    return {
        "runs": rows,
        "total_epsilon": total,
        "total_delta": delta,
        "epsilon_cap": cap,
        "unit": UNIT,
        "explanation": (
            f"{len(runs)} training run(s) used one of your photos. Differential privacy bounds what the "
            f"resulting models can reveal about you: with total epsilon {total:.2f}, anything an observer "
            f"could conclude from them is at most {_factor(total)} times more (or less) likely than if your "
            f"photo had never been used, except with probability {delta:.1e}. Lower is more private; "
            f"Timeveil never trains on your photo in a run that would take your total past {cap:g}. {UNIT}"
        ),
    }


def _factor(epsilon: float) -> str:
    return f"{math.exp(epsilon):.1f}" if epsilon < 20 else "a very large number of"
