"""Concurrent user flows over HTTP: register -> consent -> upload -> transform -> poll -> fetch -> delete.

Used by the embedded-server integration test and bench/production.py. Only the standard library: it talks
to a real server on a real socket, as clients do.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

PASSWORD = "a-Long-passphrase-42"


@dataclass
class LoadReport:
    """What the flows saw: every response status by step, transport errors, and what was acknowledged."""

    statuses: Counter = field(default_factory=Counter)  # (step, status) -> count
    transport_errors: Counter = field(default_factory=Counter)  # (step, error type) -> count
    acked_uploads: list[tuple[str, str]] = field(default_factory=list)  # (token, photo id) answered 201
    jobs: list[tuple[str, str]] = field(default_factory=list)  # (token, job id) answered 202
    unfinished_jobs: list[str] = field(default_factory=list)  # polled past the deadline, not done/failed
    job_outcomes: Counter = field(default_factory=Counter)  # done / failed:<code>
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, step: str, status: int | None, error: str | None = None) -> None:
        with self._lock:
            if status is None:
                self.transport_errors[(step, error or "error")] += 1
            else:
                self.statuses[(step, status)] += 1

    @property
    def server_errors(self) -> int:
        """5xx other than 503: failures, never an acceptable answer."""
        return sum(n for (_, status), n in self.statuses.items() if status >= 500 and status != 503)

    @property
    def unavailable(self) -> int:
        """503s: the allowed answer while a dependency is down (with Retry-After)."""
        return sum(n for (_, status), n in self.statuses.items() if status == 503)

    def summary(self) -> dict:
        return {
            "seconds": round(self.seconds, 1),
            "5xx (not 503)": self.server_errors,
            "503": self.unavailable,
            "transport_errors": sum(self.transport_errors.values()),
            "uploads_acked": len(self.acked_uploads),
            "jobs": len(self.jobs),
            "unfinished_jobs": len(self.unfinished_jobs),
            "job_outcomes": dict(self.job_outcomes),
            "by_step": {f"{step} {status}": n for (step, status), n in sorted(self.statuses.items())},
        }


class Client:
    def __init__(self, base_url: str, report: LoadReport, timeout: float = 60) -> None:
        self.base_url, self.report, self.timeout = base_url.rstrip("/"), report, timeout
        self.token: str | None = None

    def call(self, step: str, method: str, path: str, *, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int | None, bytes, dict]:
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, data, headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, data, headers = exc.code, exc.read(), dict(exc.headers)
        except (OSError, urllib.error.URLError) as exc:
            self.report.record(step, None, type(exc).__name__)
            return None, b"", {}
        self.report.record(step, status)
        return status, data, headers

    def json(self, step: str, method: str, path: str, payload: dict | None = None) -> tuple[int | None, dict]:
        body = json.dumps(payload).encode() if payload is not None else None
        status, data, _ = self.call(step, method, path, body=body,
                                    content_type="application/json" if body is not None else None)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {}

    def upload(self, image: bytes) -> tuple[int | None, dict]:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="selfie.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
        )
        body.write(image)
        body.write(f"\r\n--{boundary}--\r\n".encode())
        status, data, _ = self.call("upload", "POST", "/api/v1/photos", body=body.getvalue(),
                                    content_type=f"multipart/form-data; boundary={boundary}")
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {}


def with_retry(call: Callable[[], tuple[int | None, dict]], *, attempts: int = 20, wait: float = 0.5
               ) -> tuple[int | None, dict]:
    """Repeat a call while the answer is 503 or a transport error, as a client honouring Retry-After does."""
    status, body = None, {}
    for _ in range(attempts):
        status, body = call()
        if status is not None and status != 503:
            return status, body
        time.sleep(wait)
    return status, body


def user_flow(base_url: str, report: LoadReport, image: bytes, *, transform: bool, poll_seconds: float,
              target_age: int = 70) -> None:
    """One user's whole journey; every answer is recorded, none retried except 503s and transport errors."""
    client = Client(base_url, report)
    name = f"load-{uuid.uuid4().hex[:12]}"
    status, body = with_retry(lambda: client.json("register", "POST", "/api/v1/auth/register",
                                                  {"username": name, "password": PASSWORD}))
    if status != 201:
        return
    client.token = body["token"]
    status, _ = with_retry(lambda: client.json("consent", "PUT", "/api/v1/me/consents/processing",
                                               {"granted": True, "policy_version": 1}))
    if status not in (200, 201):
        return
    status, body = with_retry(lambda: client.upload(image))
    if status != 201:
        return
    photo_id = body["id"]
    with report._lock:
        report.acked_uploads.append((client.token, photo_id))
    if transform:
        status, body = with_retry(lambda: client.json("transform", "POST",
                                                      f"/api/v1/photos/{photo_id}/transformations",
                                                      {"target_age": target_age}))
        if status == 202:
            job_id = body["id"]
            with report._lock:
                report.jobs.append((client.token, job_id))
            deadline = time.monotonic() + poll_seconds
            state = body
            while state.get("status") not in ("done", "failed") and time.monotonic() < deadline:
                time.sleep(0.5)
                _, state = with_retry(lambda: client.json("poll", "GET", f"/api/v1/transformations/{job_id}"))
            outcome = state.get("status")
            with report._lock:
                if outcome == "done":
                    report.job_outcomes["done"] += 1
                elif outcome == "failed":
                    report.job_outcomes[f"failed:{state.get('error')}"] += 1
                else:
                    report.unfinished_jobs.append(job_id)
            if outcome == "done":
                with_retry(
                    lambda: (
                        client.call("fetch_result", "GET", f"/api/v1/transformations/{job_id}/content")[:1]
                        + ({},)
                    )
                )
    with_retry(lambda: client.call("fetch_photo", "GET", f"/api/v1/photos/{photo_id}/content")[:1] + ({},))
    with_retry(lambda: client.call("delete", "DELETE", f"/api/v1/photos/{photo_id}")[:1] + ({},))


def run_flows(base_url: str, image: bytes, *, users: int, flows: int, transform: bool = False,
              poll_seconds: float = 120, stagger: float = 0.0) -> LoadReport:
    """`flows` user journeys by `users` concurrent clients; flow i starts no sooner than i * stagger s in."""
    report = LoadReport()
    start = time.monotonic()

    def flow(index: int) -> None:
        time.sleep(max(0.0, start + index * stagger - time.monotonic()))
        user_flow(base_url, report, image, transform=transform, poll_seconds=poll_seconds)

    with ThreadPoolExecutor(max_workers=users) as pool:
        futures = [pool.submit(flow, index) for index in range(flows)]
        for future in futures:
            future.result()
    report.seconds = time.monotonic() - start
    return report


def wait_until_serving(base_url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{base_url} did not answer /healthz within {timeout}s")
