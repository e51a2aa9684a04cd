"""Key-encryption keys (KEKs): a versioned keyring behind one interface; a 0600 file by default."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import ConfigurationError, IntegrityFailure


class Keyring(Protocol):
    """What governance needs from a key store: wrap / unwrap data keys, add a version, a pseudonym key."""

    def current_version(self) -> int: ...
    def wrap(self, dek: bytes) -> tuple[int, bytes]: ...
    def unwrap(self, version: int, wrapped: bytes) -> bytes: ...
    def add_version(self) -> int: ...
    def pseudonym_key(self) -> bytes: ...
    def check(self) -> None: ...


class FileKeyring:
    """KEKs in a JSON file (mode 0600), generated on first use. RFC 3394 AES key wrap from `cryptography`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data = self._load_or_create()

    def current_version(self) -> int:
        return int(self._data["current"])

    def wrap(self, dek: bytes) -> tuple[int, bytes]:
        """Wrap a data key under the current KEK."""
        version = self.current_version()
        return version, aes_key_wrap(self._kek(version), dek)

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        """Unwrap a data key; a wrong KEK or damaged wrapping raises IntegrityFailure."""
        try:
            return aes_key_unwrap(self._kek(version), bytes(wrapped))
        except InvalidUnwrap as exc:
            raise IntegrityFailure("A data key failed to unwrap: wrong key version or damaged key.") from exc

    def add_version(self) -> int:
        """Generate a new KEK and make it current; old versions stay to unwrap until re-wrapped."""
        with self._lock:
            version = max(int(v) for v in self._data["keks"]) + 1
            self._data["keks"][str(version)] = _b64(os.urandom(32))
            self._data["current"] = version
            self._write(self._data)
        return version

    def pseudonym_key(self) -> bytes:
        return base64.b64decode(self._data["pseudonym_key"])

    def check(self) -> None:
        """Raise unless a round trip through the current KEK works (for /readyz)."""
        probe = os.urandom(32)
        if self.unwrap(*self.wrap(probe)) != probe:
            raise IntegrityFailure("Keyring round trip failed.")

    def _kek(self, version: int) -> bytes:
        try:
            return base64.b64decode(self._data["keks"][str(version)])
        except KeyError as exc:
            raise IntegrityFailure(f"KEK version {version} is not in the keyring.") from exc

    def _load_or_create(self) -> dict:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = {"current": 1, "keks": {"1": _b64(os.urandom(32))}, "pseudonym_key": _b64(os.urandom(32))}
            self._write(data)
            return data
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"Keyring {self.path} is readable by others (mode {mode:o}); run `chmod 600 {self.path}`."
            )
        return json.loads(self.path.read_text())

    def _write(self, data: dict) -> None:
        # Write a 0600 temp file then rename: a crash never leaves a half-written keyring.
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


_keyrings: dict[str, Keyring] = {}


def keyring_from_url(url: str) -> Keyring:
    """Open the keyring named by KEYRING_URL (`file:///abs/path.json`); one instance per URL."""
    if url not in _keyrings:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise ConfigurationError(
                f"KEYRING_URL scheme {parsed.scheme!r} is not supported; use file:///path/to/keyring.json "
                "or add a KMS provider implementing governance.keyring.Keyring."
            )
        _keyrings[url] = FileKeyring(Path(parsed.path))
    return _keyrings[url]
