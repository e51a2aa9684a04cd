"""The embedded stand-in for Celery beat: one daemon thread running the periodic tasks by name."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from webplatform.taskqueue import AUDIT_DRAIN, AUDIT_VERIFY, JOBS_SWEEP, RETENTION, RUNS_SWEEP, publish

log = logging.getLogger(__name__)
_started = threading.Event()


def start_embedded_scheduler() -> None:
    """Start the periodic loop once per process (make run sets EMBEDDED_SCHEDULER=1)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_loop, name="embedded-scheduler", daemon=True).start()


def schedule() -> dict[str, float]:
    """Task name -> interval in seconds: the same work Celery beat runs at scale (CELERY_BEAT_SCHEDULE)."""
    return {RETENTION: settings.RETENTION_INTERVAL_SECONDS, JOBS_SWEEP: settings.JOB_SWEEP_SECONDS,
            RUNS_SWEEP: settings.JOB_SWEEP_SECONDS, AUDIT_VERIFY: settings.AUDIT_VERIFY_INTERVAL_SECONDS,
            AUDIT_DRAIN: settings.AUDIT_DRAIN_INTERVAL_SECONDS}


def _loop() -> None:
    intervals = schedule()
    due = {name: time.monotonic() + every for name, every in intervals.items()}
    stop = threading.Event()
    while not stop.wait(max(0.0, min(due.values()) - time.monotonic())):
        for name, at in due.items():
            if at > time.monotonic():
                continue
            due[name] = time.monotonic() + intervals[name]
            try:
                publish(name)  # eager in embedded mode: runs here, in this thread
            except Exception:  # keep the loop alive; the next tick retries
                log.exception("periodic task %s failed", name)
