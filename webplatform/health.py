"""Liveness and readiness probes (outside /api/v1)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from governance.audit import checkpoint_lag
from governance.keys import get_keyring
from webplatform.celery import app
from webplatform.encrypted_store import object_storage

STORAGE_PROBE_NAME = "readyz/probe"  # never written


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"ok": True})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_storage() -> None:
    # A read, not a write: probes that wrote left an object behind whenever the delete did not follow.
    # Asking for a name that is never stored reaches the store (S3: a HEAD, answered 404) and writes nothing.
    object_storage().exists(STORAGE_PROBE_NAME)


def _check_broker() -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # embedded mode: tasks run in process, there is no broker to reach
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


class CheckpointLagging(Exception):
    """Audit events have waited past AUDIT_CHECKPOINT_MAX_LAG_SECONDS for a checkpoint."""


def _check_audit_checkpoints() -> None:
    """Checkpoint writes that fail (a full or read-only store) leave events cuttable unnoticed: say so."""
    lag = checkpoint_lag()
    if lag.too_old:
        raise CheckpointLagging(f"{lag.events} events unanchored for {lag.seconds:.0f} s")


CHECKS = {"database": _check_database, "storage": _check_storage, "broker": _check_broker,
          "keyring": lambda: get_keyring().check(), "audit_checkpoints": _check_audit_checkpoints}


def readyz(request: HttpRequest) -> JsonResponse:
    """Database, storage, broker and keyring each answer; 503 names what does not."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a probe reports any failure rather than raise it
            results[name] = f"failed: {type(exc).__name__}"
    ok = all(v == "ok" for v in results.values())
    return JsonResponse({"ok": ok, "checks": results}, status=200 if ok else 503)
