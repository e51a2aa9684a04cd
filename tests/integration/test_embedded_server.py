"""`make run`'s server under load: gunicorn threads over SQLite in WAL mode, 64 concurrent users, no 5xx.

The server is a real gunicorn process started the way the Makefile starts it, on its own var/ folder (SQLite
file, keyring, objects), with the production password hasher (argon2). Clients are threads speaking HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.images import image_bytes
from tests.integration.loadflow import run_flows, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    if not os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite"):
        pytest.skip("the embedded server uses its own SQLite file: once, in the SQLite pass, is enough")
    var = tmp_path_factory.mktemp("embedded-var")
    # As `make run` does: `make var` keeps the folder's own secret key, so the test's key is not passed on.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    inherited.pop("SECRET_KEY", None)
    env = {**inherited,
           "TIMEVEIL_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{var / 'timeveil.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "webplatform.settings", "EMBEDDED_SCHEDULER": "1",
           "LOG_LEVEL": "WARNING",
           "TIMEVEIL_READ_DOTENV": "0", "CELERY_BROKER_URL": "memory://",
           # One client address for every user: lift the per-address limits, which are not under test here.
           "THROTTLE_ANON": "100000/min", "THROTTLE_USER": "100000/min", "THROTTLE_AUTH": "100000/min"}
    subprocess.run(["make", "-s", "var"], cwd=ROOT, env=env, check=True, capture_output=True)
    python = sys.executable
    for command in (["migrate", "--noinput"], ["bootstrap"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    gunicorn = Path(python).parent / "gunicorn"
    log = var / "server.log"  # a file, not a pipe nobody reads: a full pipe would stall the server
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(gunicorn), "webplatform.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "16",
             "--timeout", "120", "--backlog", "2048"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base_url)
        yield base_url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def errors_logged(log: Path) -> str:
    """The server's own account of a failure, for the assertion message (its last 4,000 characters)."""
    return log.read_text(errors="replace")[-4000:]


def test_64_concurrent_users_register_upload_read_and_delete_with_no_server_error(embedded_server):
    base_url, log = embedded_server
    report = run_flows(base_url, image_bytes(size=(640, 480)), users=64, flows=64)
    summary = report.summary()
    assert report.server_errors == 0 and report.unavailable == 0, (summary, errors_logged(log))
    assert sum(report.transport_errors.values()) == 0, summary
    assert summary["by_step"].get("register 201") == 64, summary
    assert len(report.acked_uploads) == 64 and summary["by_step"].get("delete 204") == 64, summary


def test_static_files_are_served_by_the_real_server(embedded_server):
    base_url, _ = embedded_server
    with urllib.request.urlopen(base_url + "/api/docs/", timeout=10) as page:
        html = page.read().decode()
    asset = next(part.split('"')[0] for part in html.split('src="')[1:] if part.startswith("/static/"))
    with urllib.request.urlopen(base_url + asset, timeout=10) as response:
        assert response.status == 200 and int(response.headers["Content-Length"]) > 1000
        assert "max-age" in response.headers.get("Cache-Control", "")


def post_json(url: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_sign_in_lockout_holds_across_the_servers_workers(embedded_server):
    # Issue 18.4: each worker had counted in its own memory, so the right password still worked 5 times of 8
    # after a lockout. The embedded default cache is one file cache under var/ that both workers share.
    base_url, log = embedded_server
    account = {"username": "lockme", "password": "a-Long-passphrase-42"}
    assert post_json(f"{base_url}/api/v1/auth/register", account) == 201
    for _ in range(5):  # LOGIN_LIMIT_ACCOUNT_ADDRESS wrong passwords, each on its own connection
        assert post_json(f"{base_url}/api/v1/auth/token", {**account, "password": "wrong-password-1"}) == 401
    statuses = [post_json(f"{base_url}/api/v1/auth/token", account) for _ in range(8)]
    assert statuses == [429] * 8, (statuses, errors_logged(log))
