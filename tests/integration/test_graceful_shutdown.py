"""SIGTERM to gunicorn under upload load: every upload in flight finishes (201), none sees a connection error.

gunicorn runs as `make run` starts it, reading the repository's gunicorn.conf.py (graceful_timeout). Each
client sends the headers and the first half of an upload, the server is sent SIGTERM while all of them are
mid-body, then the clients send the rest: the server, no longer accepting, still reads and answers them.
A request that reaches a server that has stopped listening is refused; that is the load balancer's to route
elsewhere (README: rolling restarts), and not what this test sends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.images import face_jpeg
from tests.integration.loadflow import PASSWORD, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
UPLOADS = 4
pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    if not os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite"):
        pytest.skip("the server uses its own SQLite file: once, in the SQLite pass, is enough")
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    (var / "static").mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))},
           "TIMEVEIL_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{var / 'timeveil.sqlite3'}",
           "DJANGO_SETTINGS_MODULE": "webplatform.settings", "TIMEVEIL_READ_DOTENV": "0",
           "CELERY_BROKER_URL": "memory://", "LOG_LEVEL": "WARNING"}
    for command in (["migrate", "--noinput"], ["bootstrap"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True)
    port = free_port()
    with open(var / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "webplatform.wsgi", "-b", f"127.0.0.1:{port}",
             "-w", "1", "--threads", str(UPLOADS)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base_url)
        yield process, port, base_url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        print((var / "server.log").read_text(errors="replace")[-3000:])


def post_json(url: str, payload: dict, token: str | None = None, method: str = "POST") -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Token {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def upload_request(port: int, token: str, image: bytes) -> tuple[bytes, bytes]:
    """A multipart upload as raw HTTP/1.1, split in two halves of its bytes."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="selfie.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /api/v1/photos HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    whole = head + body
    return whole[:len(head) + len(body) // 2], whole[len(head) + len(body) // 2:]


def read_status(sock: socket.socket) -> int | str:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else "closed without an answer"


def test_sigterm_lets_every_upload_in_flight_finish(server):
    process, port, base_url = server
    name = f"sigterm-{uuid.uuid4().hex[:8]}"
    token = post_json(f"{base_url}/api/v1/auth/register", {"username": name, "password": PASSWORD})["token"]
    post_json(f"{base_url}/api/v1/me/consents/processing", {"granted": True, "policy_version": 1}, token,
              method="PUT")

    # Given uploads in flight: each client has sent its headers and half its body
    sockets, rests = [], []
    for _ in range(UPLOADS):
        first, rest = upload_request(port, token, face_jpeg())
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(first)
        sockets.append(sock)
        rests.append(rest)
    time.sleep(1.5)  # every connection is with a worker thread, reading the body

    # When the server is told to stop
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    # Then each client sends the rest and gets its answer: no reset, no lost upload
    def finish(index: int) -> int | str:
        try:
            sockets[index].sendall(rests[index])
            return read_status(sockets[index])
        except OSError as exc:
            return type(exc).__name__
        finally:
            sockets[index].close()

    with ThreadPoolExecutor(UPLOADS) as pool:
        statuses = list(pool.map(finish, range(UPLOADS)))
    assert statuses == [201] * UPLOADS
    # and the server exits by itself once they are done, well within its graceful timeout
    assert process.wait(timeout=60) == 0
