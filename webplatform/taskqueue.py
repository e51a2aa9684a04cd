"""The one way to queue work: publish a task by name, with one broker-outage policy for the whole platform.

Callers name the task ("webplatform.jobs.tasks.transform_task"); only workers import the code they run, so
no service imports a tasks module. The caller's row is the outbox: a publish that fails leaves it pending,
and a periodic dispatcher (jobs_sweep, erasures_pending) publishes it again once the broker answers.
"""

from __future__ import annotations

import importlib
import logging

from kombu.exceptions import KombuError, OperationalError

from webplatform.celery import app

log = logging.getLogger(__name__)

TRANSFORM = "webplatform.jobs.tasks.transform_task"
JOBS_SWEEP = "webplatform.jobs.tasks.jobs_sweep_task"
ERASURE_PURGE = "webplatform.lifecycle.tasks.erasure_purge_task"
RETENTION = "webplatform.lifecycle.tasks.retention_enforce_task"
AUDIT_VERIFY = "webplatform.lifecycle.tasks.audit_verify_task"
AUDIT_DRAIN = "webplatform.lifecycle.tasks.audit_drain_task"
TRAINING = "webplatform.training.tasks.training_task"
ACCOUNT_MAIL = "webplatform.accounts.tasks.account_mail_task"
RUNS_SWEEP = "webplatform.training.tasks.runs_sweep_task"

# What a publish may raise when the broker is down or refuses: connection errors surface as kombu's
# OperationalError; a socket error can escape before kombu wraps it.
BROKER_ERRORS: tuple[type[BaseException], ...] = (OperationalError, KombuError, ConnectionError, TimeoutError)
# Two quick tries, then give up: a request must not hang on a dead broker, the dispatcher retries later.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish(name: str, *args: object) -> bool:
    """Queue task `name` with JSON args; False (logged) when the broker is unreachable, never an exception."""
    if app.conf.task_always_eager:
        # Embedded mode: the web process is the worker, so it imports the task and runs it here.
        importlib.import_module(name.rpartition(".")[0])
        app.tasks[name].apply_async(args=args)
        return True
    try:
        app.send_task(name, args=args, retry=True, retry_policy=_RETRY_POLICY)
    except BROKER_ERRORS as exc:
        log.warning("broker unavailable, %s(%s) stays pending for the dispatcher: %s", name, args, exc)
        return False
    return True
