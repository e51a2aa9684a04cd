"""Bench set-up: a throwaway var/ folder and SQLite file, migrated, before Django is imported by the bench."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path


def django_for_bench(database_url: str | None = None) -> Path:
    """Point Timeveil at a temporary var/ (and the given database), set Django up, migrate quietly."""
    var = Path(tempfile.mkdtemp(prefix="timeveil-bench-"))
    os.environ["TIMEVEIL_VAR_DIR"] = str(var)
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))  # what `make var` would keep in var/
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{var / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webplatform.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return var
