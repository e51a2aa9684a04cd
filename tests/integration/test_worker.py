"""Transformation jobs on a real Celery worker process over real Redis, against real PostgreSQL.

The worker is a separate OS process (`celery -A webplatform worker -Q aging`) sharing this test's database,
keyring and object folder. Skipped on SQLite: an in-memory test database cannot be shared with a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from governance.models import AuditEvent
from tests.test_jobs import face_jpeg
from webplatform.celery import app as celery_app
from webplatform.jobs.models import JobStatus, TransformationJob, TransformationResult

REDIS_DB = 14
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _needs_postgres_and_redis():
    if connection.vendor != "postgresql":
        pytest.skip("a worker process can only share a real database: runs in the PostgreSQL pass")
    try:
        redis.Redis.from_url(BROKER).ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")


@pytest.fixture
def broker():
    """Point this process's Celery at Redis (not eager) for the test; flush the broker db before and after."""
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "broker_transport_options")}
    celery_app.conf.update(broker_url=BROKER, task_always_eager=False,
                           broker_transport_options={"visibility_timeout": 4})
    _reset_connections()
    yield client
    celery_app.conf.update(saved)
    _reset_connections()
    client.flushdb()


def _reset_connections() -> None:
    """Forget Celery's cached connection and producer pools so the next send uses the current broker_url."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


class Worker:
    """A real `celery worker` process on the aging queue, killable and restartable."""

    def __init__(self) -> None:
        db = connection.settings_dict
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
                    "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
                    "TIMEVEIL_TEST_BROKER": BROKER,
                    "TIMEVEIL_VAR_DIR": str(settings.VAR_DIR),
                    "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                    "CELERY_BROKER_URL": BROKER, "CELERY_TASK_ALWAYS_EAGER": "false",
                    "BROKER_VISIBILITY_TIMEOUT": "4", "LOG_LEVEL": "WARNING",
                    # A killed worker's heartbeat goes stale fast: the redelivered message may claim the job.
                    "JOB_HEARTBEAT_SECONDS": "0.5", "JOB_STALE_SECONDS": "2"}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webplatform", "worker", "-Q", "aging", "--pool", "solo",
             "--concurrency", "1", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-l", "WARNING"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # no warm shutdown: the message is never acked
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def worker(broker):
    w = Worker()
    yield w
    w.stop()


def wait_for(predicate, *, timeout: float, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def job_status(job_id: str) -> str:
    return TransformationJob.objects.values_list("status", flat=True).get(pk=job_id)


def queue_job(actor, upload) -> tuple[str, str]:
    photo_id = upload(face_jpeg()).json()["id"]
    response = actor.client.post(
        f"/api/v1/photos/{photo_id}/transformations", {"target_age": 70}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    return photo_id, response.json()["id"]


def test_no_image_bytes_pass_through_the_broker(owner, upload, worker, broker):
    # Given every command Redis receives, recorded from before the upload until the job is done
    seen: list[bytes] = []
    stop = threading.Event()

    def monitor() -> None:
        with redis.Redis.from_url(BROKER).monitor() as m:
            for command in m.listen():
                seen.append(command["command"].encode("utf-8", "surrogateescape"))
                if stop.is_set():
                    return

    threading.Thread(target=monitor, daemon=True).start()
    time.sleep(0.2)
    worker.start()

    # When a job is queued and a real worker runs it
    photo_id, job_id = queue_job(owner, upload)
    wait_for(lambda: job_status(job_id) in (JobStatus.DONE, JobStatus.FAILED), timeout=120, every=0.1)
    stop.set()
    broker.ping()  # one more command so the monitor wakes and stops
    assert job_status(job_id) == JobStatus.DONE

    # Then neither the photo, the result, nor their ciphertext ever crossed the broker; the job id did
    traffic = b"\n".join(seen)
    original = owner.client.get(f"/api/v1/photos/{photo_id}/content").content
    result = owner.client.get(f"/api/v1/transformations/{job_id}/content").content
    stored = TransformationResult.objects.get(job_id=job_id)
    from webplatform.encrypted_store import object_storage

    with object_storage().open(stored.storage_name, "rb") as fh:
        ciphertext = fh.read()
    assert job_id.encode() in traffic
    for blob in (original, result, ciphertext):
        for start in range(64, len(blob) - 48, max(1, len(blob) // 8)):
            assert blob[start:start + 48] not in traffic
    assert max(len(line) for line in seen) < 4096  # task messages are small: ids, not images


def test_a_worker_killed_mid_job_loses_nothing(owner, upload, worker, broker):
    # Given a real worker that has picked the job up and is running it
    worker.start()
    _, job_id = queue_job(owner, upload)
    wait_for(lambda: job_status(job_id) == JobStatus.RUNNING, timeout=120)

    # When the worker is killed without a chance to ack, and a new one starts
    worker.kill()
    assert job_status(job_id) == JobStatus.RUNNING
    worker.start()

    # Then the broker redelivers the unacked message and the job finishes exactly once
    wait_for(lambda: job_status(job_id) == JobStatus.DONE, timeout=120, every=0.2)
    job = TransformationJob.objects.get(pk=job_id)
    assert job.attempts == 2
    assert TransformationResult.objects.filter(job_id=job_id).count() == 1
    assert AuditEvent.objects.filter(action="job.completed", object_ref=f"job:{job_id}").count() == 1
    assert owner.client.get(f"/api/v1/transformations/{job_id}/content").status_code == 200


def test_a_killed_workers_job_is_requeued_by_the_sweeper_long_before_the_visibility_timeout(
        owner, upload, worker, broker, settings):
    # Given a broker that would redeliver an unacked message only after an hour
    worker.env["BROKER_VISIBILITY_TIMEOUT"] = "3600"
    settings.JOB_STALE_SECONDS = float(worker.env["JOB_STALE_SECONDS"])  # the sweeper's view, as the worker's
    worker.start()
    _, job_id = queue_job(owner, upload)
    wait_for(lambda: job_status(job_id) == JobStatus.RUNNING, timeout=120)

    # When the worker is killed mid-job and a new one starts
    worker.kill()
    worker.start()
    time.sleep(0.5)
    assert job_status(job_id) == JobStatus.RUNNING

    # Then once its heartbeat is stale the sweeper (beat's jobs_sweep_task) requeues it, and it finishes once
    from webplatform.jobs.services import jobs_sweep

    requeued = wait_for(lambda: jobs_sweep()["requeued"], timeout=30, every=0.5)
    assert requeued == 1
    wait_for(lambda: job_status(job_id) == JobStatus.DONE, timeout=120, every=0.2)
    assert TransformationJob.objects.get(pk=job_id).attempts == 2
    assert TransformationResult.objects.filter(job_id=job_id).count() == 1
    assert AuditEvent.objects.filter(action="job.requeued", object_ref=f"job:{job_id}").count() == 1


def test_a_job_requested_while_redis_is_down_is_accepted_and_runs_when_redis_returns(
    owner, upload, worker, broker
):
    worker.start()
    photo_id = upload(face_jpeg()).json()["id"]

    # Given Redis unreachable for the web process (the same kombu errors as Redis down)
    celery_app.conf.update(broker_url="redis://127.0.0.1:9/0")
    _reset_connections()
    try:
        response = owner.client.post(f"/api/v1/photos/{photo_id}/transformations", {"target_age": 70},
                                     format="json")
    finally:
        celery_app.conf.update(broker_url=BROKER)
        _reset_connections()
    # Then the request is accepted and the job stays queued, with no message anywhere
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    time.sleep(1)
    assert job_status(job_id) == JobStatus.QUEUED

    # When Redis is back, the dispatcher publishes it and the worker runs it
    from webplatform.jobs.services import jobs_sweep

    assert jobs_sweep()["published"] == 1
    wait_for(lambda: job_status(job_id) == JobStatus.DONE, timeout=120, every=0.2)
