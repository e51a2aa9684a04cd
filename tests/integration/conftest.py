"""Integration fixtures: moto's server, speaking the real S3 and KMS protocols on 127.0.0.1 (no AWS here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[tuple[str, int]]:
    """A moto server for this test module: (host, port). Each module gets its own, as each test its bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield host, int(port)
    server.stop()


@pytest.fixture
def aws_test_credentials(monkeypatch) -> None:
    """boto3's usual credential chain finds moto's dummy keys, as a host's environment holds real ones."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
