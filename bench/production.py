"""Production mode, brought up locally and broken on purpose; writes a table to bench/out/production.md.

    .venv/bin/python bench/production.py [--users 16 64] [--flows-per-user 2] [--faults all|none|s3_down,...]

One command starts the whole stack on 127.0.0.1: PostgreSQL (a fresh `timeveil_bench` database on :5432),
Redis (:6379, db 12 broker / db 11 cache), moto's server for S3 and KMS, gunicorn, a `default` worker, an
`aging` worker (one process: the jobs' aging layers on the CPU), a `training` worker and beat, all in
production mode (PRODUCTION=1). S3 and the broker are reached through fault-injecting TCP proxies
(tests/integration/faultproxy.py), so faults hit the real protocols.

Phases: clean load at each --users, then at 16 users each fault during the load:
  s3_down         S3 refuses connections for 10 s
  s3_lost_reply   S3 stores PUTs but the response is lost, 10 s (orphans for the reconciler)
  aging_kill      the aging worker is killed -9 mid-job, restarted after 10 s
  broker_down     the broker (Redis) is unreachable for 20 s
  pg_down         PostgreSQL is unreachable (a TCP proxy cut) for 15 s: 503 with Retry-After, never 500
  broker_restart  the broker restarts without persistence: unreachable 3 s, every message lost
After each phase: every acknowledged upload was readable (0 lost), every job finished within 2 minutes of
recovery, no ciphertext without a row once the reconciler has run, and the audit chain verifies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.faultproxy import FaultProxy  # noqa: E402
from tests.integration.loadflow import run_flows, wait_until_serving  # noqa: E402

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "timeveil_bench"
BUCKET = "timeveil-bench"
FAULTS = ("s3_down", "s3_lost_reply", "aging_kill", "broker_down", "pg_down", "broker_restart")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """Every process of production mode, started and stopped together."""

    def __init__(self, workdir: Path, web_workers: int) -> None:
        import boto3
        import psycopg
        import redis
        from moto.server import ThreadedMotoServer

        self.workdir, self.web_workers = workdir, web_workers
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        for db in (11, 12):
            redis.Redis(db=db).flushdb()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.aws = f"http://{host}:{port}"
        self.s3_proxy = FaultProxy((host, int(port)))
        self.broker_proxy = FaultProxy(("127.0.0.1", 6379))
        self.db_proxy = FaultProxy(("127.0.0.1", 5432))
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
        )
        self.s3 = boto3.client("s3", endpoint_url=self.aws, region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
            "PRODUCTION": "1", "DEBUG": "0", "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "TIMEVEIL_VAR_DIR": str(workdir / "var"),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.db_proxy.port}/{DB_NAME}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.broker_proxy.port}/12",
            "CACHE_URL": "redis://127.0.0.1:6379/11",
            "EMAIL_URL": "dummymail://",  # production refuses the console backend; the bench sends no mail
            "STORAGE_BACKEND": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": self.s3_proxy.url,
            "S3_REGION": "us-east-1", "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench",
            "KEYRING_URL": f"kms://alias/timeveil-bench?region=us-east-1&endpoint={self.aws}",
            # Fast clocks so a run takes minutes: heartbeats, sweeps, retention and the orphan grace period.
            "JOB_HEARTBEAT_SECONDS": "2", "JOB_STALE_SECONDS": "10", "JOB_SWEEP_SECONDS": "5",
            "JOB_RETRY_BASE_SECONDS": "2", "RETENTION_INTERVAL_SECONDS": "15", "ORPHAN_GRACE_SECONDS": "20",
            "THROTTLE_ANON": "100000/min", "THROTTLE_USER": "100000/min", "THROTTLE_AUTH": "100000/min",
            "HTTPS": "0",  # no TLS terminator on 127.0.0.1; behind one, leave HTTPS on
            "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "webplatform.settings",
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start(self, name: str) -> None:
        bin_dir = Path(sys.executable).parent
        celery = [str(bin_dir / "celery"), "-A", "webplatform"]
        commands = {
            "web": [str(bin_dir / "gunicorn"), "webplatform.wsgi", "-b", f"127.0.0.1:{self.port}",
                    "-w", str(self.web_workers), "--threads", "8", "--timeout", "120", "--backlog", "2048"],
            "default": [*celery, "worker", "-Q", "default", "-c", "2", "-n", "default@%h", "-l", "WARNING"],
            "aging": [*celery, "worker", "-Q", "aging", "-c", "1", "--prefetch-multiplier", "1",
                      "-n", "aging@%h", "-l", "WARNING"],
            "training": [*celery, "worker", "-Q", "training", "-c", "1", "-n", "training@%h",
                         "-l", "WARNING"],
            "beat": [*celery, "beat", "-s", str(self.workdir / "celerybeat-schedule"), "-l", "WARNING"],
        }
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(commands[name], cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def up(self) -> None:
        (self.workdir / "var").mkdir(mode=0o700, exist_ok=True)  # the operator prepares the data folder
        for step in (("migrate", "--noinput"), ("bootstrap",), ("collectstatic", "--noinput", "-v", "0")):
            result = self.manage(*step)
            if result.returncode != 0:
                raise SystemExit(f"manage.py {' '.join(step)} failed:\n{result.stderr[-3000:]}")
        for name in ("web", "default", "aging", "training", "beat"):
            self.start(name)
        wait_until_serving(self.base_url)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def down(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.s3_proxy.close()
        self.broker_proxy.close()
        self.db_proxy.close()
        self.moto.stop()

    def bucket_keys(self) -> set[str]:
        keys: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys |= {item["Key"] for item in page.get("Contents", [])}
        return keys

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(f"postgres://postgres@127.0.0.1:5432/{DB_NAME}") as conn:
            return conn.execute(sql).fetchall()


class EmbeddedStack(Stack):
    """`make run`'s mode for comparison: gunicorn threads, SQLite WAL, eager jobs, the scheduler thread."""

    def __init__(self, workdir: Path, web_workers: int) -> None:  # noqa: D107 - no services to prepare
        self.workdir, self.web_workers = workdir, web_workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        var = workdir / "var"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
                    "TIMEVEIL_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{var / 'timeveil.sqlite3'}",
                    "EMBEDDED_SCHEDULER": "1", "RETENTION_INTERVAL_SECONDS": "15",
                    "ORPHAN_GRACE_SECONDS": "20", "THROTTLE_ANON": "100000/min",
                    "THROTTLE_USER": "100000/min", "THROTTLE_AUTH": "100000/min",
                    "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "webplatform.settings"}
        self.processes = {}
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def up(self) -> None:
        subprocess.run(["make", "-s", "var"], cwd=ROOT, env=self.env, check=True)  # `make run`'s first step
        for step in (("migrate", "--noinput"), ("bootstrap",), ("collectstatic", "--noinput", "-v", "0")):
            result = self.manage(*step)
            if result.returncode != 0:
                raise SystemExit(f"manage.py {' '.join(step)} failed:\n{result.stderr[-3000:]}")
        bin_dir = Path(sys.executable).parent
        log = open(self.logs / "web.log", "a")  # noqa: SIM115 - closed with the process
        self.processes["web"] = subprocess.Popen(
            [str(bin_dir / "gunicorn"), "webplatform.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "2",
             "--threads", "16", "--timeout", "120", "--backlog", "2048"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_serving(self.base_url)

    def down(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

    def bucket_keys(self) -> set[str]:
        root = self.workdir / "var" / "objects"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    def query(self, sql: str) -> list[tuple]:
        import sqlite3

        with sqlite3.connect(self.workdir / "var" / "timeveil.sqlite3", timeout=30) as conn:
            return conn.execute(sql).fetchall()


def face_image() -> bytes:
    import io

    from PIL import Image

    from inference.generator.synthetic import Identity, place_in_photo

    photo, _ = place_in_photo(Identity.from_seed(4), 30, photo_size=(360, 480), face_size=200, seed=4)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def inject(stack: Stack, fault: str, started: threading.Event) -> None:
    """Run one fault a few seconds into the load, then recover."""
    started.wait()
    time.sleep(3)
    if fault == "s3_down":
        stack.s3_proxy.mode = "down"
        time.sleep(10)
        stack.s3_proxy.mode = "pass"
    elif fault == "s3_lost_reply":
        stack.s3_proxy.mode = "drop_response"
        time.sleep(10)
        stack.s3_proxy.mode = "pass"
    elif fault == "aging_kill":
        # Kill it mid-job: wait (up to 20 s) until it holds a running job.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stack.query(
                "SELECT 1 FROM jobs_transformationjob WHERE status = 'running' LIMIT 1"):
            time.sleep(0.05)
        stack.kill("aging")
        time.sleep(10)
        stack.start("aging")
    elif fault == "broker_down":
        stack.broker_proxy.mode = "down"
        time.sleep(20)
        stack.broker_proxy.mode = "pass"
    elif fault == "pg_down":
        stack.db_proxy.mode = "down"
        time.sleep(15)
        stack.db_proxy.mode = "pass"
    elif fault == "broker_restart":
        import redis

        stack.broker_proxy.mode = "down"
        redis.Redis(db=12).flushdb()  # a restart without persistence: every queued message is gone
        time.sleep(3)
        stack.broker_proxy.mode = "pass"


def phase(stack: Stack, name: str, *, users: int, flows: int, image: bytes, fault: str | None) -> dict:
    started = threading.Event()
    injector = None
    if fault:
        injector = threading.Thread(target=inject, args=(stack, fault, started), daemon=True)
        injector.start()
    started.set()
    # Under a fault, flows start spread over the fault's window, so requests meet it at every step.
    report = run_flows(stack.base_url, image, users=users, flows=flows, transform=True, poll_seconds=150,
                       stagger=0.75 if fault else 0.0)
    if injector:
        injector.join()
    summary = report.summary()
    fetched = sum(
        n for (step, status), n in report.statuses.items() if step == "fetch_photo" and status == 200
    )
    summary["uploads_lost"] = len(report.acked_uploads) - fetched
    # Orphans: wait past the grace period for the periodic reconciler, then compare the bucket with the rows.
    time.sleep(int(stack.env["ORPHAN_GRACE_SECONDS"]) + 2 * int(stack.env["RETENTION_INTERVAL_SECONDS"]))
    claimed = {row[0] for row in stack.query("SELECT storage_name FROM photos_photo UNION ALL "
                                             "SELECT storage_name FROM jobs_transformationresult")}
    summary["orphans_after_reconciler"] = len({k for k in stack.bucket_keys()
                                               if k.startswith(("photo/", "result/"))} - claimed)
    summary["orphans_deleted_total"] = stack.query(
        "SELECT count(*) FROM governance_auditevent WHERE action = 'object.orphan_deleted'")[0][0]
    summary["jobs_requeued_total"] = stack.query(
        "SELECT count(*) FROM governance_auditevent WHERE action = 'job.requeued'")[0][0]
    verify = stack.manage("verify_audit")
    summary["audit_verifies"] = verify.returncode == 0
    summary["phase"], summary["users"], summary["fault"] = name, users, fault or "none"
    print(json.dumps(summary), flush=True)
    return summary


def write_table(rows: list[dict], path: Path) -> None:
    columns = (
        "phase",
        "users",
        "fault",
        "seconds",
        "5xx (not 503)",
        "503",
        "transport_errors",
        "uploads_acked",
        "uploads_lost",
        "jobs",
        "unfinished_jobs",
        "jobs_requeued_total",
        "orphans_deleted_total",
        "orphans_after_reconciler",
        "audit_verifies",
    )
    lines = ["| " + " | ".join(columns) + " | job outcomes |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(row.get(c, "")) for c in columns) + f" | {row.get('job_outcomes')} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# bench/production.py\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--flows-per-user", type=int, default=2)
    parser.add_argument("--faults", default="all", help="all, none, or a comma list of " + ", ".join(FAULTS))
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument(
        "--embedded", action="store_true", help="make run's mode instead (load only, no faults)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "production.md"))
    args = parser.parse_args()
    faults = (
        FAULTS if args.faults == "all" else () if args.faults == "none" else tuple(args.faults.split(","))
    )

    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="timeveil-production-"))
    stack = EmbeddedStack(workdir, args.web_workers) if args.embedded else Stack(workdir, args.web_workers)
    if args.embedded:
        faults = ()
    rows = []
    try:
        stack.up()
        image = face_image()
        for users in args.users:
            rows.append(
                phase(
                    stack,
                    f"{'embedded' if args.embedded else 'load'} {users}",
                    users=users,
                    flows=users * args.flows_per_user,
                    image=image,
                    fault=None,
                )
            )
        for fault in faults:
            rows.append(
                phase(stack, fault, users=16, flows=16 * args.flows_per_user, image=image, fault=fault)
            )
    finally:
        stack.down()
        print(f"logs in {stack.logs}")
    write_table(rows, Path(args.out))


if __name__ == "__main__":
    main()
