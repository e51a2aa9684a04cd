"""The KMS keyring over the real AWS KMS protocol.

There is no AWS here, so the KMS endpoint is moto's server (a real HTTP server speaking the KMS JSON API on
127.0.0.1); boto3 signs and sends exactly what it would send to AWS. Each test uses its own alias, so they
share one server without seeing each other's keys.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from django.test import override_settings

from governance.errors import ConfigurationError, IntegrityFailure
from governance.keyring import KeyringUnavailable, KmsKeyring, keyring_from_url
from tests.images import image_bytes


@pytest.fixture(scope="module")
def kms_endpoint(moto_endpoint):
    host, port = moto_endpoint
    return f"http://{host}:{port}"


@pytest.fixture
def kms_url(kms_endpoint, aws_test_credentials) -> str:
    return f"kms://alias/timeveil-{uuid.uuid4().hex[:8]}?region=us-east-1&endpoint={kms_endpoint}"


def host_keyring(url: str) -> KmsKeyring:
    """A fresh KmsKeyring for the URL, as another web or worker host would open it."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    return KmsKeyring(f"{parsed.netloc}{parsed.path}", region=query["region"], endpoint_url=query["endpoint"])


def test_a_data_key_wrapped_on_one_host_unwraps_on_another(kms_url):
    web, worker = host_keyring(kms_url), host_keyring(kms_url)
    dek = bytes(range(32))
    version, wrapped = web.wrap(dek)
    assert version == 1 and dek not in wrapped
    assert worker.unwrap(version, wrapped) == dek
    assert worker.current_version() == 1
    # The pseudonym key (the audit key derives from it) is the same on every host, 32 bytes, not a KEK
    assert web.pseudonym_key() == worker.pseudonym_key() and len(web.pseudonym_key()) == 32


def test_a_new_version_becomes_current_and_old_data_keys_still_unwrap(kms_url):
    keyring = host_keyring(kms_url)
    old_version, old_wrapped = keyring.wrap(b"a" * 32)
    assert keyring.add_version() == old_version + 1
    new_version, new_wrapped = keyring.wrap(b"b" * 32)
    assert new_version == old_version + 1
    assert keyring.unwrap(old_version, old_wrapped) == b"a" * 32
    assert keyring.unwrap(new_version, new_wrapped) == b"b" * 32
    assert host_keyring(kms_url).current_version() == new_version  # another host sees the rotation


def test_a_damaged_or_misfiled_data_key_is_an_integrity_failure(kms_url):
    keyring = host_keyring(kms_url)
    version, wrapped = keyring.wrap(b"c" * 32)
    damaged = bytearray(wrapped)
    damaged[-1] ^= 1
    with pytest.raises(IntegrityFailure):
        host_keyring(kms_url).unwrap(version, bytes(damaged))
    keyring.add_version()
    with pytest.raises(IntegrityFailure):  # bound to its version by the encryption context
        host_keyring(kms_url).unwrap(version + 1, wrapped)
    with pytest.raises(IntegrityFailure):
        host_keyring(kms_url).unwrap(99, wrapped)
    keyring.check()


def test_an_unreachable_key_service_is_transient_not_a_crash(aws_test_credentials):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import boto3
    from botocore.config import Config

    client = boto3.client("kms", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(KeyringUnavailable) as caught:
        KmsKeyring("alias/down", client=client).wrap(b"d" * 32)
    assert caught.value.status == 503 and caught.value.retry_after > 0


def test_the_url_names_the_provider():
    with pytest.raises(ConfigurationError, match="kms://alias/NAME"):
        keyring_from_url("vault://secret/timeveil")
    with pytest.raises(ConfigurationError, match="alias/name"):
        KmsKeyring("timeveil", region="us-east-1")


def test_uploads_downloads_and_rotation_through_the_api_with_keys_in_kms(kms_url, purposes):
    from django.core.management import call_command

    from governance.models import DataKey
    from webplatform.accounts.services import user_register

    with override_settings(KEYRING_URL=kms_url):
        # Given a user registered while the keyring is KMS (their data key wrapped by KMS)
        user, token = user_register(username="kms-user", password="a-Long-passphrase-42")
        from governance.consent import PROCESSING, consent_set

        consent_set(user_id=user.pk, purpose_slug=PROCESSING, granted=True, policy_version=1)
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        data = image_bytes(size=(80, 60))
        photo_id = client.post("/api/v1/photos", {"file": named(data)}, format="multipart").json()["id"]

        # When the KEK is rotated in KMS and every data key re-wrapped
        call_command("rotate_kek", stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))

        # Then the photo still decrypts, from a data key now wrapped under version 2
        assert DataKey.objects.get(user=user).kek_version == 2
        response = client.get(f"/api/v1/photos/{photo_id}/content")
        assert response.status_code == 200 and response.content[:3] == b"\xff\xd8\xff"
        assert client.get("/readyz").json()["checks"]["keyring"] == "ok"


def named(data: bytes):
    import io

    buffer = io.BytesIO(data)
    buffer.name = "selfie.jpg"
    return buffer
