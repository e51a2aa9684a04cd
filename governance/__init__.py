"""Governance: consent, keys, audit, retention and privacy budgets. Decides what may be used; imports nothing of ours."""
