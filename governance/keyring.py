"""Key-encryption keys (KEKs): a versioned keyring behind one interface; a 0600 file by default."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import ConfigurationError, IntegrityFailure, TimeveilError


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


class KeyringUnavailable(TimeveilError):
    """The key service did not answer: transient, so the client retries; never a 500."""

    status, code, message = 503, "keyring_unavailable", "The key service is unavailable; try again shortly."
    retry_after = 5


class KmsKeyring:
    """KEKs in AWS KMS, or anything speaking its API: KEK material never leaves the key service.

    Version N is the symmetric key behind alias `<alias>-vN`; a data key is wrapped by KMS Encrypt under it,
    bound to the version by the encryption context. The pseudonym key is KMS GenerateMac (HMAC-SHA-256) of a
    fixed label under `<alias>-pseudonym`: the same on every host, and none without KMS access can derive it.
    Every host reads the versions from KMS, so one keyring serves every web and worker host.
    """

    MAC_LABEL = b"timeveil/pseudonym-key/v1"
    VERSIONS_TTL = 60.0  # seconds a host trusts its list of versions (rotate_kek on another host)
    UNWRAP_TTL = 60.0  # seconds an unwrapped data key is reused in process: one KMS call per user per minute

    def __init__(self, alias: str, *, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        import boto3

        if not alias.startswith("alias/"):
            raise ConfigurationError(f"KMS keyring alias {alias!r} must look like alias/name.")
        self.alias = alias
        self.client = client or boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
        self._lock = threading.Lock()
        self._versions: list[int] = []
        self._versions_at = 0.0
        self._pseudonym: bytes | None = None
        self._unwrapped: dict[tuple[int, bytes], tuple[float, bytes]] = {}

    def current_version(self) -> int:
        versions = self._known_versions()
        if not versions:
            return self.add_version()  # first use, like the file keyring: create version 1
        return versions[-1]

    def wrap(self, dek: bytes) -> tuple[int, bytes]:
        """Wrap a data key under the current KEK (KMS Encrypt)."""
        version = self.current_version()
        response = self._call("encrypt", KeyId=self._alias(version), Plaintext=dek,
                              EncryptionContext=self._context(version))
        return version, bytes(response["CiphertextBlob"])

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        """Unwrap a data key (KMS Decrypt); a wrong version or damaged blob raises IntegrityFailure."""
        cache_key = (int(version), bytes(wrapped))
        hit = self._unwrapped.get(cache_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        response = self._call("decrypt", KeyId=self._alias(version), CiphertextBlob=bytes(wrapped),
                              EncryptionContext=self._context(version))
        dek = bytes(response["Plaintext"])
        with self._lock:
            if len(self._unwrapped) > 10_000:
                self._unwrapped.clear()
            self._unwrapped[cache_key] = (time.monotonic() + self.UNWRAP_TTL, dek)
        return dek

    def add_version(self) -> int:
        """Create a new KMS key behind `<alias>-v(N+1)` and make it current; old versions stay to unwrap."""
        with self._lock:
            version = (self._known_versions(refresh=True) or [0])[-1] + 1
            self._create_aliased_key(self._alias(version), f"timeveil KEK {self.alias} v{version}",
                                     usage="ENCRYPT_DECRYPT", spec="SYMMETRIC_DEFAULT")
            self._versions_at = 0.0
        return self._known_versions()[-1]

    def _create_aliased_key(self, alias: str, description: str, *, usage: str, spec: str) -> None:
        """Create a KMS key behind `alias`; if another host won the race to that alias, theirs is used."""
        key_id = self._call("create_key", Description=description, KeyUsage=usage,
                            KeySpec=spec)["KeyMetadata"]["KeyId"]
        try:
            self._call("create_alias", AliasName=alias, TargetKeyId=key_id)
        except _AliasExists:
            pass  # another host created it at the same moment: use theirs

    def pseudonym_key(self) -> bytes:
        if self._pseudonym is None:
            name = f"{self.alias}-pseudonym"
            try:
                response = self._call(
                    "generate_mac", KeyId=name, Message=self.MAC_LABEL, MacAlgorithm="HMAC_SHA_256"
                )
            except _NotFound:
                self._create_aliased_key(name, f"timeveil pseudonym key {self.alias}",
                                         usage="GENERATE_VERIFY_MAC", spec="HMAC_256")
                response = self._call(
                    "generate_mac", KeyId=name, Message=self.MAC_LABEL, MacAlgorithm="HMAC_SHA_256"
                )
            self._pseudonym = bytes(response["Mac"])
        return self._pseudonym

    def check(self) -> None:
        """Raise unless a round trip through the current KEK works (for /readyz); never from the cache."""
        probe = os.urandom(32)
        version, wrapped = self.wrap(probe)
        response = self._call("decrypt", KeyId=self._alias(version), CiphertextBlob=wrapped,
                              EncryptionContext=self._context(version))
        if bytes(response["Plaintext"]) != probe:
            raise IntegrityFailure("Keyring round trip failed.")

    def _alias(self, version: int) -> str:
        return f"{self.alias}-v{int(version)}"

    @staticmethod
    def _context(version: int) -> dict[str, str]:
        return {"app": "timeveil", "kek_version": str(int(version))}

    def _known_versions(self, *, refresh: bool = False) -> list[int]:
        if refresh or time.monotonic() - self._versions_at > self.VERSIONS_TTL:
            pattern = re.compile(re.escape(self.alias) + r"-v(\d+)$")
            versions = []
            for page in self._paginate("list_aliases"):
                for entry in page.get("Aliases", []):
                    if match := pattern.match(entry["AliasName"]):
                        versions.append(int(match.group(1)))
            self._versions, self._versions_at = sorted(versions), time.monotonic()
        return self._versions

    def _paginate(self, operation: str) -> Any:
        try:
            yield from self.client.get_paginator(operation).paginate()
        except Exception as exc:  # classified below
            raise _classify(exc) from exc

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:  # classified below
            raise _classify(exc) from exc


class _NotFound(IntegrityFailure):
    """KMS has no key or alias by that name."""


class _AliasExists(Exception):
    """The alias was created meanwhile (by another host)."""


def _classify(exc: Exception) -> Exception:
    """KMS errors in our terms: bad or unknown key material is an integrity failure; transport, transient."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "AlreadyExistsException":
            return _AliasExists(str(exc))
        if code == "NotFoundException":
            return _NotFound("A key-encryption key is not in the KMS keyring.")
        if code in ("InvalidCiphertextException", "IncorrectKeyException", "InvalidKeyUsageException",
                    "DisabledException", "KMSInvalidStateException"):
            return IntegrityFailure("A data key failed to unwrap: wrong key version or damaged key.")
        if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
            return ConfigurationError(f"The KMS keyring was refused ({code}): check the host's credentials.")
        return KeyringUnavailable(details={"kms": code})
    if isinstance(exc, BotoCoreError | OSError):
        return KeyringUnavailable()
    return exc


_keyrings: dict[str, Keyring] = {}
_opening = threading.Lock()  # two threads opening a new file keyring at once must not both create it


def keyring_from_url(url: str) -> Keyring:
    """Open the keyring named by KEYRING_URL; one instance per URL.

    `file:///abs/path.json` (the embedded default), or `kms://alias/NAME?region=R&endpoint=URL` for AWS KMS
    (endpoint only for a KMS-compatible service; credentials from boto3's usual chain).
    """
    if url in _keyrings:
        return _keyrings[url]
    with _opening:
        if url not in _keyrings:
            parsed = urlparse(url)
            if parsed.scheme == "file":
                _keyrings[url] = FileKeyring(Path(parsed.path))
            elif parsed.scheme == "kms":
                query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                _keyrings[url] = KmsKeyring(f"{parsed.netloc}{parsed.path}", region=query.get("region"),
                                            endpoint_url=query.get("endpoint"))
            else:
                raise ConfigurationError(
                    f"KEYRING_URL scheme {parsed.scheme!r} is not supported; "
                    "use file:///path/to/keyring.json "
                    "or kms://alias/NAME?region=REGION."
                )
    return _keyrings[url]
