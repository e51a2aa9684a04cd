"""Training orchestration: snapshot consented photos, reserve budget, train under DP, register the version."""
