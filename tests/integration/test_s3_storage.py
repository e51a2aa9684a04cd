"""Ciphertext on S3 through django-storages, over the real S3 protocol.

There is no AWS here, so the S3 endpoint is moto's server (a real HTTP server speaking the S3 REST API on
127.0.0.1); boto3 and django-storages are exercised exactly as against AWS or MinIO.
"""

from __future__ import annotations

import boto3
import pytest
from django.core.files.storage import storages
from django.test import override_settings

from tests.images import image_bytes

BUCKET = "timeveil-objects"


@pytest.fixture(scope="module")
def s3_endpoint(moto_endpoint):
    host, port = moto_endpoint
    return f"http://{host}:{port}"


@pytest.fixture
def s3(s3_endpoint, aws_test_credentials):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    objects = {"BACKEND": "storages.backends.s3.S3Storage",
               "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": s3_endpoint, "region_name": "us-east-1",
                           "access_key": "test", "secret_key": "test", "default_acl": None,
                           "file_overwrite": False}}
    from django.conf import settings

    with override_settings(STORAGES={**settings.STORAGES, "objects": objects, "default": objects}):
        assert type(storages["objects"]).__name__ == "S3Storage"
        yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def bucket_keys(client) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_upload_read_delete_over_s3(s3, owner, upload, django_capture_on_commit_callbacks):
    # Given an upload stored on S3
    response = upload(image_bytes(size=(96, 80)))
    assert response.status_code == 201, response.content
    photo_id = response.json()["id"]
    [key] = bucket_keys(s3)
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    # Then what S3 holds is ciphertext, not the image
    served = owner.client.get(f"/api/v1/photos/{photo_id}/content").content
    assert stored[:4] == b"TVE1"
    assert served[:3] == b"\xff\xd8\xff"
    assert served[200:264] not in stored

    # And deleting the photo deletes the S3 object
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.delete(f"/api/v1/photos/{photo_id}").status_code == 204
    assert bucket_keys(s3) == []


def test_readyz_checks_s3(s3, client):
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    assert bucket_keys(s3) == []  # the probe reads: it leaves no readyz/ object behind
