"""Governance: consent, keys, audit, retention, privacy budgets: what may be used. Imports none of ours."""
