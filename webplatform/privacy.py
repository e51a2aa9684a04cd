"""A user's privacy report: the training runs that used their data and their privacy loss, in plain words."""

from __future__ import annotations

from typing import Any

from governance.training import runs_for_subject


def privacy_report(user_id: int) -> dict[str, Any]:
    """Runs whose manifests held the user, epsilon and delta each, and the composed total."""
    runs = runs_for_subject(user_id)
    rows = [{"run_id": str(r.id), "finished_at": r.finished_at.isoformat() if r.finished_at else None,
             "status": r.status, "model_version": r.model_version, "lineage": r.lineage.name,
             "epsilon": r.epsilon_spent if r.epsilon_spent is not None else r.epsilon_reserved, "delta": r.delta}
            for r in runs]
    if not runs:
        return {"runs": [], "total_epsilon": 0.0, "total_delta": 0.0,
                "explanation": "No training run has used your data. Your privacy loss is zero."}
    from inference.dp import compose_epsilon

    delta = sum(r.delta for r in runs)
    composed = compose_epsilon(history=[(r.noise_multiplier, r.sample_rate, r.steps) for r in runs], delta=delta)
    total = min(composed, sum(float(r.epsilon_spent if r.epsilon_spent is not None else r.epsilon_reserved)
                              for r in runs))
    return {
        "runs": rows,
        "total_epsilon": total,
        "total_delta": delta,
        "explanation": (
            f"{len(runs)} training run(s) used one of your photos. Differential privacy bounds what the "
            f"resulting models can reveal about you: with total epsilon {total:.2f}, anything an observer could "
            f"conclude from the models is at most {_factor(total)} times more (or less) likely than if your "
            f"photo had never been used, except with probability {delta:.1e}. Lower is more private; "
            "Timeveil caps every model lineage at the epsilon shown on the policy."
        ),
    }


def _factor(epsilon: float) -> str:
    import math

    return f"{math.exp(epsilon):.1f}" if epsilon < 20 else "a very large number of"
