"""Production mode under outages: PostgreSQL cut behind a TCP proxy; the broker restarted, its messages lost.

A real gunicorn (PRODUCTION=1) and a real `aging` Celery worker reach PostgreSQL and Redis via fault proxies
(integration/faultproxy.py); clients are loadflow.py's threads speaking HTTP. This process plays beat: it runs
the sweeper every SWEEP seconds over its own, direct database connection. The clocks are short so the suite
stays fast; the bound checked is the one the settings give: a job whose message or release was lost is done
within JOB_REPUBLISH_SECONDS + JOB_STALE_SECONDS + a sweep + the job itself (README: "What keeps work from
being lost"). Runs in the PostgreSQL pass only: the processes must share the test's database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.integration.faultproxy import FaultProxy
from tests.integration.loadflow import PASSWORD, Client, LoadReport, run_flows, wait_until_serving
from tests.test_jobs import face_jpeg
from tests.test_training_run import _small_cohort, consenting_users  # noqa: F401 - fixtures
from webplatform.celery import app as celery_app
from webplatform.jobs.models import JobStatus, TransformationJob
from webplatform.jobs.services import jobs_sweep

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB, CACHE_DB = 13, 10  # not test_worker.py's 14 nor bench/production.py's 11 and 12
SWEEP = 0.5  # seconds between the sweeps this process runs, as beat would every JOB_SWEEP_SECONDS
CLOCKS = {"JOB_HEARTBEAT_SECONDS": "0.5", "JOB_STALE_SECONDS": "3", "JOB_REPUBLISH_SECONDS": "4",
          "JOB_RETRY_BASE_SECONDS": "1"}
BOUND = sum(float(CLOCKS[k]) for k in ("JOB_REPUBLISH_SECONDS", "JOB_STALE_SECONDS")) + SWEEP
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgres_and_redis():
    if connection.vendor != "postgresql":
        pytest.skip("the server and worker processes share the test's database: the PostgreSQL pass only")
    try:
        redis.Redis(db=BROKER_DB).ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """gunicorn and an aging worker in production mode, PostgreSQL and the broker behind fault proxies."""

    def __init__(self, tmp: Path) -> None:
        db = connection.settings_dict
        self.db_proxy = FaultProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
        self.broker_proxy = FaultProxy(("127.0.0.1", 6379))
        self.broker_url = f"redis://127.0.0.1:{self.broker_proxy.port}/{BROKER_DB}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))},
            "DJANGO_SETTINGS_MODULE": "webplatform.settings", "PRODUCTION": "1", "DEBUG": "0", "HTTPS": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "TIMEVEIL_READ_DOTENV": "0",
            "TIMEVEIL_VAR_DIR": str(settings.VAR_DIR),  # this test's keyring and object folder
            "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{self.db_proxy.port}/{db['NAME']}",
            "CELERY_BROKER_URL": self.broker_url, "CACHE_URL": f"redis://127.0.0.1:6379/{CACHE_DB}",
            "THROTTLE_ANON": "100000/min", "THROTTLE_USER": "100000/min", "THROTTLE_AUTH": "100000/min",
            "EMAIL_URL": "dummymail://",  # production refuses to print reset links to the log
            "LOG_LEVEL": "WARNING", **CLOCKS,
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        bin_dir = Path(sys.executable).parent
        commands = {
            "web": [str(bin_dir / "gunicorn"), "webplatform.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "1",
                    "--threads", "8", "--timeout", "120"],
            "aging": [str(bin_dir / "celery"), "-A", "webplatform", "worker", "-Q", "aging", "--pool", "solo",
                    "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        }
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(commands[name], cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.db_proxy.close()
        self.broker_proxy.close()


@pytest.fixture
def stack(tmp_path, purposes, settings) -> Iterator[Stack]:
    broker = redis.Redis(db=BROKER_DB)
    broker.flushdb()
    s = Stack(tmp_path)
    # This process publishes (the sweeper's republish) to the same broker, through the same proxy
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager")}
    celery_app.conf.update(broker_url=s.broker_url, task_always_eager=False)
    _reset_pools()
    for name, value in CLOCKS.items():
        setattr(settings, name, float(value))
    try:
        s.start("web")
        s.start("aging")
        wait_until_serving(s.base_url, timeout=120)
        yield s
    finally:
        s.close()
        celery_app.conf.update(saved)
        _reset_pools()
        broker.flushdb()
        redis.Redis(db=CACHE_DB).flushdb()
        print(*(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log")), sep="\n")


def _reset_pools() -> None:
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


class Sweeper:
    """Beat's part: jobs_sweep every SWEEP seconds, over this process's direct database connection."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            while not self.stop.wait(SWEEP):
                jobs_sweep()
        finally:
            connection.close()

    def __enter__(self) -> Sweeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def queue_jobs(base_url: str, count: int) -> list[str]:
    """`count` users each upload a face and ask for a transformation; the job ids, answered 202."""
    report, job_ids = LoadReport(), []
    for _ in range(count):
        client = Client(base_url, report)
        _, body = client.json("register", "POST", "/api/v1/auth/register",
                              {"username": f"restart-{uuid.uuid4().hex[:10]}", "password": PASSWORD})
        client.token = body["token"]
        client.json("consent", "PUT", "/api/v1/me/consents/processing",
                    {"granted": True, "policy_version": 1})
        _, photo = client.upload(face_jpeg())
        status, job = client.json("transform", "POST", f"/api/v1/photos/{photo['id']}/transformations",
                                  {"target_age": 70})
        assert status == 202, report.summary()
        job_ids.append(job["id"])
    return job_ids


def assert_nothing_stranded(report: LoadReport) -> None:
    summary = report.summary()
    assert report.server_errors == 0, summary  # 5xx other than 503
    assert sum(report.transport_errors.values()) == 0, summary
    assert report.jobs and report.unfinished_jobs == [], summary
    assert dict(report.job_outcomes) == {"done": len(report.jobs)}, summary
    fetched = sum(n for (step, status), n in report.statuses.items()
                  if step == "fetch_photo" and status == 200)
    assert fetched == len(report.acked_uploads), summary  # every acknowledged upload is there


def test_postgres_cut_for_8_seconds_answers_503_never_500_and_strands_no_job(stack):
    # Given users uploading, transforming and polling, spread over the outage
    results: list[LoadReport] = []
    flows = threading.Thread(target=lambda: results.append(run_flows(
        stack.base_url, face_jpeg(), users=6, flows=8, transform=True, poll_seconds=BOUND + 60,
        stagger=1.0)))
    with Sweeper():
        flows.start()
        time.sleep(2)
        # When PostgreSQL is unreachable for the web server and the worker alike
        stack.db_proxy.mode = "down"
        time.sleep(8)
        stack.db_proxy.mode = "pass"
        flows.join()
    report = results[0]
    print("postgres cut:", report.summary())  # the figures, with -s

    # Then clients saw 503s with Retry-After while it was down, and nothing else went wrong
    assert report.unavailable > 0, report.summary()
    assert_nothing_stranded(report)


def test_a_broker_restarted_without_its_messages_strands_no_job(stack):
    # Given jobs queued while no worker runs: their messages wait in the broker
    stack.stop("aging")
    job_ids = queue_jobs(stack.base_url, 4)
    assert redis.Redis(db=BROKER_DB).llen("aging") == 4

    # When the broker restarts without persistence: unreachable a moment, then back empty
    stack.broker_proxy.mode = "down"
    redis.Redis(db=BROKER_DB).flushdb()
    time.sleep(1)
    stack.broker_proxy.mode = "pass"
    stack.start("aging")
    back = time.monotonic()

    # Then the sweeper republishes every lost message and each job is done within the bound (+ its run)
    with Sweeper():
        deadline = back + BOUND + 60
        while time.monotonic() < deadline:
            statuses = set(TransformationJob.objects.filter(pk__in=job_ids).values_list("status", flat=True))
            if statuses == {JobStatus.DONE}:
                break
            time.sleep(0.5)
    assert set(TransformationJob.objects.filter(pk__in=job_ids).values_list("status", flat=True)) == {
        JobStatus.DONE}


@pytest.fixture
def training_worker(tmp_path, settings):
    """A real `training` queue worker on the broker db, started by the test; this process publishes there."""
    from tests.integration.test_worker import Worker

    broker_url = f"redis://127.0.0.1:6379/{BROKER_DB}"
    redis.Redis(db=BROKER_DB).flushdb()
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager")}
    celery_app.conf.update(broker_url=broker_url, task_always_eager=False)
    _reset_pools()
    worker = Worker()
    worker.env.update(TIMEVEIL_TEST_BROKER=broker_url, CELERY_BROKER_URL=broker_url,
                      TRAINING_HEARTBEAT_SECONDS="0.5")
    settings.TRAINING_STALE_SECONDS = 3.0
    yield worker
    worker.stop()
    celery_app.conf.update(saved)
    _reset_pools()
    redis.Redis(db=BROKER_DB).flushdb()


def start_training_worker(worker) -> None:
    worker.process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webplatform", "worker", "-Q", "training", "--pool", "solo",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=worker.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_run_queued_while_the_broker_is_down_then_its_worker_killed_ends_failed_with_its_budget_spent(
        consenting_users, training_worker):  # noqa: F811 - the imported fixture
    from django.core.management import call_command

    from governance.models import AuditEvent, RunStatus, TrainingRun
    from governance.training import WORKER_LOST
    from tests.integration.test_worker import wait_for
    from webplatform.training.services import runs_sweep

    # Given `train --queue` while the broker refuses connections: the run is reserved, not sent
    celery_app.conf.update(broker_url="redis://127.0.0.1:9/0")
    _reset_pools()
    call_command("train", "--target-epsilon", "2", "--epochs", "1", "--batch-size", "4", "--queue")
    run = TrainingRun.objects.get()
    assert (run.status, run.published_at) == (RunStatus.RESERVED, None)

    # When the broker is back, the sweeper sends it and a training worker starts it
    celery_app.conf.update(broker_url=training_worker.env["CELERY_BROKER_URL"])
    _reset_pools()
    start_training_worker(training_worker)
    assert runs_sweep()["published"] == 1
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING, timeout=120, every=0.05)

    # and the worker is killed mid-run
    training_worker.kill()

    # Then once its heartbeat is stale the sweeper ends the run as failed, its budget spent, audited
    wait_for(lambda: runs_sweep()["failed"], timeout=30, every=0.5)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith(WORKER_LOST)
    assert run.epsilon_spent == run.epsilon_reserved
    assert AuditEvent.objects.filter(action="training.finished", object_ref=f"run:{run.id}",
                                     details__reason=WORKER_LOST).count() == 1
    # and it is never executed again: a new worker and another sweep leave it failed
    start_training_worker(training_worker)
    assert runs_sweep() == {"failed": 0, "published": 0, "unpublished": 0}
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.FAILED
