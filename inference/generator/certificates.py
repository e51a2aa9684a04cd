"""What a privacy audit certifies: the DP code version (every file on the DP path, and the torch, Opacus and
numpy versions), the pinned audit settings, and the certificate a DP model needs before it may be promoted.

Plain files and standard library only, so the registry can check a certificate without loading the audit.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository
# Every file whose code decides what a DP run releases: the mechanism (inference/dp), the model it trains,
# the planner and data loader (services), the ledger and its caps (governance/training).
DP_PATH = ("inference/dp/*.py", "inference/generator/certificates.py", "inference/generator/model.py",
           "webplatform/training/services.py", "governance/training.py")
LIBRARIES = ("torch", "opacus", "numpy")  # noise, clipping and the keyed stream come from these

# The audit settings a certificate needs, at least: tests/inference/test_dp_audit.py shows that they fail a
# tenth of the noise and a conv-norm bug that halves Conv2d's norms.
PINNED_CLAIMS = (2.0, 8.0)
MINIMUMS = {"canaries": 1000, "steps": 40, "guesses": 100, "probe_people": 4}
MAX_DELTA = 1e-5  # the audit's delta: no larger (a larger delta weakens every lower bound)


def dp_files() -> list[Path]:
    """The files hashed into the code version, in a fixed order."""
    return sorted({p for pattern in DP_PATH for p in ROOT.glob(pattern)})


def code_version() -> str:
    """SHA-256 over every file on the DP path (by its path) and the library versions."""
    digest = hashlib.sha256()
    for path in dp_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in LIBRARIES:
        digest.update(f"{name}=={version(name)}\0".encode())
    return digest.hexdigest()


def certifies(certificate: dict[str, Any], dp_code_version: str) -> bool:
    """Whether a stored audit certificate passed this code version at no less than the pinned settings."""
    config = certificate.get("config") or {}
    claims = set(certificate.get("claims") or [])
    return (certificate.get("code_version") == dp_code_version and certificate.get("passed") is True
            and set(PINNED_CLAIMS) <= claims
            and all(float(config.get(k, 0)) >= v for k, v in MINIMUMS.items())
            and 0 < float(config.get("delta", 1.0)) <= MAX_DELTA)
