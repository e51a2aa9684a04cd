"""Accounts and roles: end users, compliance officers (a group), staff."""
