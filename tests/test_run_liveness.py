"""Training runs never stay "running" or "reserved" for ever: heartbeats, the runs' sweeper, the run outbox.

A run killed mid-training is failed by the sweeper once its heartbeat is stale: its epsilon stays spent, it is
never executed again, and the audit trail and the officer's runs page say why. A run queued while the broker
is down stays reserved in its row and is published by the sweeper once the broker answers. The broker outage
is real (tests/test_outbox.py's dead port); the worker killed for real is tests/integration/test_outages.py.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from governance import clock as governance_clock
from governance.errors import Conflict
from governance.models import AuditEvent, RunStatus, TrainingRun
from governance.training import WORKER_LOST, lineage_get_or_create, run_start
from tests.test_outbox import broker_down
from tests.test_training_run import _small_cohort, consenting_users  # noqa: F401 - fixtures
from webplatform.training import services
from webplatform.training.services import RunRequest, runs_sweep, training_run_execute


def reserved_run() -> TrainingRun:
    """A reserved run as run_reserve leaves it (the manifest is not what these tests are about)."""
    return TrainingRun.objects.create(
        lineage=lineage_get_or_create("liveness"), created_at=governance_clock.now(),
        manifest_sha256="0" * 64, participants=100, count_noise=10.0, sample_rate=0.16,
        noise_multiplier=1.0, max_grad_norm=1.0, steps=10, delta=1e-6, accountant="prv",
        epsilon_reserved=2.31)


def test_a_run_whose_worker_died_is_failed_by_the_sweeper_with_its_budget_spent(clock, officer):
    # Given a run started by a worker that then died: no heartbeat after the start
    run = run_start(reserved_run())

    # A sweep while the heartbeat is still fresh leaves it alone...
    clock.advance(seconds=settings.TRAINING_STALE_SECONDS - 1)
    assert runs_sweep()["failed"] == 0
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING

    # ...and once it is stale, the run ends as failed, its whole reservation spent
    clock.advance(seconds=2)
    assert runs_sweep()["failed"] == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.epsilon_spent == run.epsilon_reserved == 2.31
    assert run.error.startswith(f"{WORKER_LOST}: the training worker stopped")
    event = AuditEvent.objects.get(action="training.finished", object_ref=f"run:{run.id}")
    assert event.details == {"status": "failed", "epsilon_spent": 2.31, "model_version": "",
                             "reason": WORKER_LOST}

    # It is never executed again, and the officer's runs page says why it failed
    with pytest.raises(Conflict):
        run_start(run)
    assert runs_sweep()["failed"] == 0
    browser = Client()
    browser.force_login(officer.user)
    page = browser.get("/officer/runs").content.decode()
    assert "failed: worker_lost: the training worker stopped" in page


@pytest.mark.django_db(transaction=True)  # the heartbeat thread writes through its own connection
def test_a_run_that_trains_keeps_its_heartbeat_fresh_so_the_sweeper_leaves_it_alone(settings, monkeypatch):
    settings.TRAINING_HEARTBEAT_SECONDS, settings.TRAINING_STALE_SECONDS = 0.05, 0.5
    sweeps: list[dict] = []

    def long_training(run, request, registry, *, progress):
        # Stands in for the DP fine-tune (minutes of CPU here): it outlives the stale threshold twice over
        deadline = time.monotonic() + 2 * settings.TRAINING_STALE_SECONDS
        while time.monotonic() < deadline:
            sweeps.append(runs_sweep())
            time.sleep(0.1)
        return run

    monkeypatch.setattr(services, "_train", long_training)
    run = training_run_execute(reserved_run(), RunRequest(target_epsilon=2.0))
    assert sweeps and all(s["failed"] == 0 for s in sweeps)
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING  # _train, stood in, did not end it


def test_a_run_queued_while_the_broker_is_down_is_published_by_the_sweeper(consenting_users, monkeypatch):  # noqa: F811
    # Given `train --queue` while the broker refuses connections
    with broker_down():
        call_command("train", "--target-epsilon", "2", "--epochs", "1", "--batch-size", "4", "--queue")
        run = TrainingRun.objects.get()
        # Then the run is reserved with its request in its row, and no message went anywhere
        assert run.status == RunStatus.RESERVED and run.published_at is None
        assert run.queued_request["target_epsilon"] == 2.0
        assert runs_sweep() == {"failed": 0, "published": 0, "unpublished": 1}

    # When the broker is back, the next sweep publishes it, by id only (the worker is not under test here)
    sent: list[tuple] = []
    monkeypatch.setattr(services, "publish", lambda name, *args: sent.append((name, args)) or True)
    assert runs_sweep()["published"] == 1
    assert sent == [("webplatform.training.tasks.training_task", (str(run.id),))]
    # and not again while that message may still be waiting behind another run
    assert runs_sweep()["published"] == 0


def test_a_spare_message_for_a_run_already_started_does_nothing(db):
    from webplatform.training.tasks import training_task

    run = run_start(reserved_run())
    training_task(str(run.id))  # a republished or redelivered message: refused by run_start, quietly
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_the_runs_sweeper_is_scheduled_on_the_default_queue_not_behind_a_run():
    from celery.app.routes import MapRoute

    from webplatform.taskqueue import RUNS_SWEEP

    assert RUNS_SWEEP in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert MapRoute(settings.CELERY_TASK_ROUTES)(RUNS_SWEEP) == {"queue": "default"}
    assert timedelta(seconds=settings.TRAINING_STALE_SECONDS) > 3 * timedelta(
        seconds=settings.TRAINING_HEARTBEAT_SECONDS)
