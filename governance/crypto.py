"""AES-256-GCM object encryption with framing; associated data binds a ciphertext to its row and owner."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import IntegrityFailure

MAGIC = b"TVE1"  # format tag and version: lets a later format coexist with this one
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + NONCE_BYTES


def associated_data(*, kind: str, object_id: object, owner_id: object) -> bytes:
    """The AAD: a ciphertext moved to another row, kind or owner fails to decrypt."""
    return f"timeveil|{kind}|{object_id}|{owner_id}".encode()


def encrypt(key: bytes, plaintext: bytes | memoryview, *, aad: bytes) -> bytearray:
    """Return MAGIC | nonce | ciphertext+tag, encrypting straight into the output buffer (no extra copy)."""
    nonce = os.urandom(NONCE_BYTES)
    out = bytearray(HEADER_BYTES + len(plaintext) + TAG_BYTES)
    out[: len(MAGIC)] = MAGIC
    out[len(MAGIC) : HEADER_BYTES] = nonce
    AESGCM(key).encrypt_into(nonce, plaintext, aad, memoryview(out)[HEADER_BYTES:])
    return out


def decrypt(key: bytes, blob: bytes | bytearray | memoryview, *, aad: bytes) -> bytearray:
    """Verify and decrypt; tampering, truncation, a wrong key or wrong binding raise IntegrityFailure."""
    view = memoryview(blob)
    if len(view) < HEADER_BYTES + TAG_BYTES or bytes(view[: len(MAGIC)]) != MAGIC:
        raise IntegrityFailure("Ciphertext is truncated or not in Timeveil's format.")
    nonce = bytes(view[len(MAGIC) : HEADER_BYTES])
    out = bytearray(len(view) - HEADER_BYTES - TAG_BYTES)
    try:
        AESGCM(key).decrypt_into(nonce, view[HEADER_BYTES:], aad, out)
    except InvalidTag as exc:
        raise IntegrityFailure("Ciphertext failed authentication: tampered, truncated or mis-bound.") from exc
    return out
