"""S3 faults through the API: moto's S3 server behind a fault-injecting TCP proxy (integration/faultproxy.py).

Nothing is mocked: boto3 talks the S3 REST protocol to the proxy, which forwards to moto's server, refuses
connections, or lets a PUT land and loses its response. A storage fault must be a 503 with Retry-After and a
clear code, never a 500; ciphertext whose row never landed is deleted by the reconciler after its grace
period.
"""

from __future__ import annotations

import io
from urllib.parse import urlparse

import boto3
import pytest
from botocore.config import Config
from django.conf import settings
from django.core.files.storage import storages
from django.test import override_settings

from governance.models import AuditEvent
from tests.images import image_bytes
from tests.integration.faultproxy import FaultProxy
from webplatform.lifecycle.retention import orphans_reconcile
from webplatform.photos.models import Photo

BUCKET = "timeveil-faults"


@pytest.fixture(scope="module")
def s3_proxy(moto_endpoint):
    host, port = moto_endpoint
    proxy = FaultProxy((host, port))
    yield proxy, f"http://{host}:{port}"
    proxy.close()


@pytest.fixture
def s3(s3_proxy, aws_test_credentials):
    proxy, direct = s3_proxy
    proxy.mode = "pass"
    client = boto3.client("s3", endpoint_url=direct, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    # The app reaches S3 through the proxy, with botocore's retries kept short (the tasks retry with backoff).
    objects = {"BACKEND": "storages.backends.s3.S3Storage",
               "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": proxy.url, "region_name": "us-east-1",
                           "access_key": "test", "secret_key": "test", "default_acl": None,
                           "file_overwrite": False,
                           "client_config": Config(retries={"max_attempts": 2, "mode": "standard"},
                                                   connect_timeout=2, read_timeout=5)}}
    with override_settings(STORAGES={**settings.STORAGES, "objects": objects, "default": objects}):
        assert urlparse(storages["objects"].endpoint_url).port == proxy.port
        yield proxy, client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def bucket_keys(client) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def assert_storage_503(response) -> None:
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert int(response["Retry-After"]) > 0


def test_s3_refusing_connections_is_503_for_uploads_and_downloads_and_recovers(s3, owner, upload):
    proxy, client = s3
    photo_id = upload(image_bytes(size=(96, 80))).json()["id"]

    # When S3 refuses every connection
    proxy.mode = "down"
    assert_storage_503(upload(image_bytes(size=(96, 80))))
    assert_storage_503(owner.client.get(f"/api/v1/photos/{photo_id}/content"))
    assert Photo.objects.count() == 1  # the refused upload left no row

    # Then once it is back, both work again
    proxy.mode = "pass"
    assert upload(image_bytes(size=(96, 80))).status_code == 201
    assert owner.client.get(f"/api/v1/photos/{photo_id}/content").status_code == 200


def test_a_put_whose_response_is_lost_leaves_an_orphan_the_reconciler_deletes(s3, owner, upload, clock):
    proxy, client = s3
    kept = Photo.objects.get(pk=upload(image_bytes(size=(96, 80))).json()["id"])

    # When the PUT lands but its response is lost, the client gets a 503 and no row is written...
    proxy.mode = "drop_response"
    assert_storage_503(upload(image_bytes(size=(96, 80))))
    proxy.mode = "pass"
    orphans = bucket_keys(client) - {kept.storage_name}
    assert orphans, "the PUT should have landed"  # ...but the ciphertext is in the bucket with no row

    # The reconciler leaves it alone during the grace period, then deletes it (and only it), audited
    assert orphans_reconcile()["photo"] == 0
    clock.advance(seconds=settings.ORPHAN_GRACE_SECONDS + 60)
    assert orphans_reconcile()["photo"] == len(orphans)
    assert bucket_keys(client) == {kept.storage_name}
    audited = AuditEvent.objects.filter(action="object.orphan_deleted")
    assert {e.details["storage_name"] for e in audited} == orphans
    assert owner.client.get(f"/api/v1/photos/{kept.id}/content").status_code == 200


def test_readyz_names_storage_when_s3_is_down(s3, client):
    proxy, _ = s3
    proxy.mode = "down"
    body = client.get("/readyz").json()
    assert body["checks"]["storage"].startswith("failed")
    proxy.mode = "pass"
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"


def named(data: bytes) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = "selfie.jpg"
    return buffer
