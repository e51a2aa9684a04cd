"""The embedded stand-in for Celery beat: one daemon thread running retention every interval."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

log = logging.getLogger(__name__)
_started = threading.Event()


def start_embedded_scheduler() -> None:
    """Start the retention loop once per process (make run sets EMBEDDED_SCHEDULER=1)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_loop, name="retention-scheduler", daemon=True).start()


def _loop() -> None:
    from .tasks import retention_enforce_task

    stop = threading.Event()
    while not stop.wait(settings.RETENTION_INTERVAL_SECONDS):
        try:
            log.info("retention: %s", retention_enforce_task())
        except Exception:  # keep the loop alive; the next tick retries
            log.exception("retention run failed")
