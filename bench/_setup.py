"""Bench set-up: a throwaway var/ folder and SQLite file, migrated, before Django is imported by the bench."""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
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


def median_ms(fn, repeat: int) -> float:
    """The median of `repeat` calls of `fn` (a test client's request, which must answer 200), in ms."""
    from django.core.cache import cache

    samples = []
    for _ in range(repeat):
        cache.clear()  # throttle counters: the bench measures work, not the rate limit
        start = time.perf_counter()
        response = fn()
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (response.status_code, response.content[:200])
    return statistics.median(samples)
