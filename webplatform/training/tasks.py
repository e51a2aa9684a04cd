"""Training-queue tasks (their own queue, see CELERY_TASK_ROUTES): a run by its id; the runs' sweeper."""

from __future__ import annotations

import logging

from celery import shared_task

from governance.errors import Conflict
from governance.models import TrainingRun

from .services import RunRequest, runs_sweep, training_run_execute

log = logging.getLogger(__name__)


@shared_task(acks_late=False)  # run_start lets a run execute once: a retry is a new reservation
def training_task(run_id: str, request: dict | None = None) -> None:
    """Train a queued run; its request is in its row (messages from before the outbox carried it)."""
    run = TrainingRun.objects.get(pk=run_id)
    try:
        training_run_execute(run, RunRequest(**(request or run.queued_request or {})), progress=False)
    except Conflict:
        # A spare message (a republish, or the broker's redelivery) for a run already started or ended.
        log.info("training run %s is %s: nothing to do", run_id, run.status)


@shared_task
def runs_sweep_task() -> dict[str, int]:
    """Periodic, on the default queue: fail runs whose worker died, publish queued runs with no message."""
    return runs_sweep()
