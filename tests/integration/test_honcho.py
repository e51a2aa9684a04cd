"""`honcho start` on the Procfile brings the whole stack up against the local services, and stops cleanly.

Web (gunicorn), the default, aging and training workers and beat, as an operator starts them, on this test's
PostgreSQL database and a Redis database of its own. Skipped on SQLite: the processes must share a real
database with the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.integration.test_embedded_server import free_port
from webplatform.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/9"  # its own: test_outages.py flushes 13, test_worker.py uses 14
UP_WITHIN = 120  # seconds for five processes to start on a busy 2-core machine
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _needs_postgres_and_redis():
    if connection.vendor != "postgresql":
        pytest.skip("the Procfile's processes can only share a real database: runs in the PostgreSQL pass")
    try:
        redis.Redis.from_url(BROKER).ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def _session_pids(sid: int) -> set[int]:
    """Every live process of session `sid` (honcho and all it started), from /proc."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
            pids.add(int(stat.parent.name))
    return pids


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _until(predicate, what: str, deadline: float):
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {UP_WITHIN} s: {what}")


def test_honcho_start_serves_healthz_runs_every_worker_and_beat_and_stops_cleanly(tmp_path):
    redis.Redis.from_url(BROKER).flushdb()
    db = connection.settings_dict
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))},
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the virtualenv's bin first
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_BROKER_URL": BROKER, "TIMEVEIL_VAR_DIR": str(settings.VAR_DIR),
           "TIMEVEIL_READ_DOTENV": "0",
           "BIND": "127.0.0.1", "WEB_WORKERS": "1", "WEB_THREADS": "2", "WORKER_CONCURRENCY": "1",
           "LOG_LEVEL": "WARNING"}
    var = Path(settings.VAR_DIR)
    for old in var.glob("celerybeat-schedule*"):  # shelve's files: one, or .dat/.dir/.bak by dbm flavour
        old.unlink()
    log = tmp_path / "honcho.log"  # a file, not a pipe nobody reads
    with open(log, "wb") as out:
        honcho = subprocess.Popen([str(Path(sys.executable).parent / "honcho"), "start", "-p", str(port)],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager")}
    celery_app.conf.update(broker_url=BROKER, task_always_eager=False)
    celery_app._pool = None
    try:
        deadline = time.monotonic() + UP_WITHIN
        # Then the web process answers, and its readiness sees the database, storage, broker and keyring
        assert _until(lambda: _get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "/healthz", deadline)
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        # and each queue's worker answers a ping over the broker
        def nodes() -> set[str] | None:
            names = {name.split("@")[0] for reply in celery_app.control.ping(timeout=1) for name in reply}
            return names if names >= {"default", "aging", "training"} else None
        assert _until(nodes, "workers default, aging and training", deadline)
        # and beat is running (it writes its schedule file when it starts)
        assert _until(lambda: any(var.glob("celerybeat-schedule*")), "beat's schedule file", deadline)
    finally:
        celery_app.conf.update(saved)
        celery_app._pool = None
        # When honcho is stopped as a terminal's Ctrl-C or systemd would stop it
        honcho.send_signal(signal.SIGTERM)
        try:
            code = honcho.wait(timeout=60)
        finally:
            leftover = _session_pids(honcho.pid)
            for pid in leftover:  # only what this test started: its own session
                os.kill(pid, signal.SIGKILL)
        redis.Redis.from_url(BROKER).flushdb()
    # Then it and every process it started are gone, within the bound. (Each gets SIGTERM: gunicorn and the
    # Celery workers shut down warm. honcho kills what is still running 5 s later; on a loaded machine an idle
    # worker's warm shutdown can take longer, so that is not asserted here.)
    assert leftover == set(), log.read_text()[-3000:]
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), log.read_text()[-3000:]
    assert log.read_text().count("sending SIGTERM to") == 5
