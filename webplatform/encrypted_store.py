"""Encrypted object store: ciphertext in Django storage (filesystem or S3), keys from governance."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from governance.errors import TimeveilError
from governance.keys import object_decrypt, object_encrypt

try:
    from boto3.exceptions import Boto3Error  # upload_fileobj wraps the botocore error in S3UploadFailedError
except ImportError:  # pragma: no cover - boto3 is pinned, but the store works without S3
    Boto3Error = BotoCoreError

log = logging.getLogger(__name__)


class StorageUnavailable(TimeveilError):
    """The object store did not answer (or failed on its side): transient, so retry later, never a 500."""

    status, code, message = 503, "storage_unavailable", "Photo storage is unavailable; try again shortly."

    @property
    def retry_after(self) -> int:
        return int(settings.STORAGE_RETRY_AFTER_SECONDS)


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


@contextmanager
def _storage_faults(operation: str) -> Iterator[None]:
    """Turn the store's transport and server errors into StorageUnavailable; a missing object stays itself."""
    try:
        yield
    except FileNotFoundError:
        raise
    except ClientError as exc:
        if _missing(exc):
            raise FileNotFoundError(str(exc)) from exc
        log.warning("object store %s failed: %s", operation, exc)
        raise StorageUnavailable(details={"operation": operation}) from exc
    except (BotoCoreError, Boto3Error, OSError) as exc:
        log.warning("object store %s failed: %s", operation, exc)
        raise StorageUnavailable(details={"operation": operation}) from exc


def object_storage() -> Storage:
    """The storage that holds ciphertext (STORAGES['objects']); a seam tests may replace."""
    return storages["objects"]


def object_put(*, owner_id: int, kind: str, object_id: uuid.UUID, plaintext: bytes) -> tuple[str, int]:
    """Encrypt and store; returns (storage name, ciphertext size). Names are random, never personal."""
    blob = object_encrypt(owner_id=owner_id, kind=kind, object_id=object_id, plaintext=plaintext)
    with _storage_faults("put"):
        name = object_storage().save(f"{kind}/{uuid.uuid4().hex}", ContentFile(bytes(blob)))
    return name, len(blob)


def object_get(*, owner_id: int, kind: str, object_id: uuid.UUID, name: str) -> bytearray:
    """Read and decrypt an object; raises KeyDestroyed or IntegrityFailure rather than return bad bytes."""
    with _storage_faults("get"), object_storage().open(name, "rb") as fh:
        blob = fh.read()
    return object_decrypt(owner_id=owner_id, kind=kind, object_id=object_id, blob=blob)


def object_delete(name: str) -> None:
    """Delete ciphertext from storage (idempotent: a missing object is already deleted)."""
    with _storage_faults("delete"):
        object_storage().delete(name)


def object_names(kind: str) -> Iterator[str]:
    """Every stored name under one kind's prefix (for the orphan reconciler)."""
    try:
        with _storage_faults("list"):
            _dirs, files = object_storage().listdir(kind)
    except FileNotFoundError:  # nothing of this kind was ever stored on this filesystem
        return
    for name in files:
        yield f"{kind}/{name}"


def object_modified(name: str) -> datetime:
    """When an object was last written (aware datetime), for the reconciler's grace period."""
    with _storage_faults("stat"):
        return object_storage().get_modified_time(name)
