"""Encrypted object store: ciphertext in Django storage (filesystem or S3), keys from governance."""

from __future__ import annotations

import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from governance.keys import object_decrypt, object_encrypt


def object_storage() -> Storage:
    """The storage that holds ciphertext (STORAGES['objects']); a seam tests may replace."""
    return storages["objects"]


def object_put(*, owner_id: int, kind: str, object_id: uuid.UUID, plaintext: bytes) -> tuple[str, int]:
    """Encrypt and store; returns (storage name, ciphertext size). Names are random, never personal."""
    blob = object_encrypt(owner_id=owner_id, kind=kind, object_id=object_id, plaintext=plaintext)
    name = object_storage().save(f"{kind}/{uuid.uuid4().hex}", ContentFile(bytes(blob)))
    return name, len(blob)


def object_get(*, owner_id: int, kind: str, object_id: uuid.UUID, name: str) -> bytearray:
    """Read and decrypt an object; raises KeyDestroyed or IntegrityFailure rather than return bad bytes."""
    with object_storage().open(name, "rb") as fh:
        blob = fh.read()
    return object_decrypt(owner_id=owner_id, kind=kind, object_id=object_id, blob=blob)


def object_delete(name: str) -> None:
    """Delete ciphertext from storage (idempotent: a missing object is already deleted)."""
    object_storage().delete(name)
