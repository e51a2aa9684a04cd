"""Training-queue task (its own queue, see CELERY_TASK_ROUTES): takes the run's id and its request."""

from __future__ import annotations

from celery import shared_task

from governance.models import TrainingRun

from .services import RunRequest, training_run_execute


@shared_task(acks_late=False)  # run_start lets a run execute once: a retry is a new reservation
def training_task(run_id: str, request: dict) -> None:
    training_run_execute(TrainingRun.objects.get(pk=run_id), RunRequest(**request), progress=False)
