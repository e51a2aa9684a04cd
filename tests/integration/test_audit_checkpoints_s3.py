"""Audit checkpoints in S3 with object lock, over the real S3 protocol (moto's server on 127.0.0.1)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from governance.audit import audit_verify, audit_verify_recent, checkpoint_key
from governance.checkpoints import checkpoint_latest, checkpoint_path
from governance.models import AuditEvent, AuditHead
from tests.images import image_bytes
from tests.support import named


@pytest.fixture(scope="module")
def s3_endpoint(moto_endpoint):
    host, port = moto_endpoint
    return f"http://{host}:{port}"


@pytest.fixture
def bucket(s3_endpoint, settings, aws_test_credentials):
    """A fresh object-locked bucket per test (locked objects cannot be deleted afterwards, by design)."""
    name = f"audit-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    settings.AUDIT_CHECKPOINT_S3_BUCKET, settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL = name, s3_endpoint
    settings.AUDIT_CHECKPOINT_S3_REGION, settings.AUDIT_CHECKPOINT_S3_RETAIN_DAYS = "us-east-1", 30
    return client, name


@pytest.fixture
def chain(owner, bucket, django_capture_on_commit_callbacks) -> int:
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            assert owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                     format="multipart").status_code == 201
    return AuditEvent.objects.count()


def test_checkpoints_go_to_s3_as_locked_objects_and_the_chain_verifies(chain, bucket):
    client, name = bucket
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]]
    assert keys[-1] == f"audit-checkpoints/{chain:020d}.json"
    head = client.head_object(Bucket=name, Key=keys[-1])
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]
    assert not checkpoint_path().exists()  # nothing written to the local file instead
    assert checkpoint_latest(key=checkpoint_key()).seq == chain
    report = audit_verify()
    assert report.ok and report.checkpoint_seq == chain
    # The pages' check lists only the keys near the head, and finds the same newest checkpoint
    assert checkpoint_latest(key=checkpoint_key(), near=chain).seq == chain
    recent = audit_verify_recent()
    assert recent.ok and recent.checkpoint_seq == chain and not recent.full


def test_a_locked_checkpoint_cannot_be_deleted(chain, bucket):
    client, name = bucket
    key = f"audit-checkpoints/{chain:020d}.json"
    version = client.head_object(Bucket=name, Key=key)["VersionId"]
    with pytest.raises(client.exceptions.ClientError):
        client.delete_object(Bucket=name, Key=key, VersionId=version)


def test_truncation_and_wipe_are_found_against_the_s3_checkpoint(chain, bucket):
    AuditEvent.objects.filter(seq=chain).delete()
    last = AuditEvent.objects.get(seq=chain - 1)
    AuditHead.objects.filter(pk=1).update(seq=chain - 1, hash=last.hash)
    assert audit_verify().reason == "truncated"
    assert audit_verify_recent().reason == "truncated"
    AuditEvent.objects.all().delete()
    AuditHead.objects.all().delete()
    assert audit_verify().reason == "wiped"


def test_a_rollback_followed_by_use_is_found_in_the_locked_versions(chain, owner, bucket,
                                                                    django_capture_on_commit_callbacks):
    # Given a database writer who cuts the newest 2 events and moves the head back
    AuditEvent.objects.filter(seq__gt=chain - 2).delete()
    last = AuditEvent.objects.get(seq=chain - 2)
    AuditHead.objects.filter(pk=1).update(seq=chain - 2, hash=last.hash)
    # When use goes on: the re-used seqs' checkpoints are PUT again under the same keys
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            assert owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                     format="multipart").status_code == 201
    # Then the locked older versions still hold the first hashes, and the full verification reads them
    report = audit_verify()
    assert (report.ok, report.reason, report.first_bad_seq) == (False, "checkpoint_conflict", chain - 1)
