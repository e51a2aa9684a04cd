"""The model registry: versions on disk as safetensors plus a JSON model card, hash-checked, one promoted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from inference.generator.age_estimator import AgeEstimator, EstimatorConfig
from inference.generator.certificates import certifies
from inference.generator.model import AgeGenerator, GeneratorConfig

WEIGHTS, CARD, PROMOTED, AUDITS = "weights.safetensors", "card.json", "promoted", "audits"
SHIPPED = Path(__file__).resolve().parent / "weights"  # the registry committed with the code
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a plain directory name: no paths, no traversal
# The fields a differentially private run must record before its model may serve (DESIGN.md flow 3).
PRIVACY_FIELDS = ("manifest_sha256", "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate",
                  "steps", "accountant")
ARCHITECTURES: dict[str, tuple[type[nn.Module], type[GeneratorConfig] | type[EstimatorConfig]]] = {
    "AgeGenerator": (AgeGenerator, GeneratorConfig),
    "AgeEstimator": (AgeEstimator, EstimatorConfig),
}
Config = GeneratorConfig | EstimatorConfig


class RegistryError(Exception):
    """A version is missing, malformed, tampered with, or may not be promoted."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def _plain_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's tensors, floats cast to `dtype`; an Opacus GradSampleModule is unwrapped first."""
    inner = getattr(model, "_module", model)
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous().clone()
            for k, v in inner.state_dict().items()}


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of either."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the serving process may be another user
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Versions under `root`: `<root>/<version>/weights.safetensors` + `card.json`, and a `promoted` file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, version: str) -> Path:
        if not isinstance(version, str) or not VERSION.fullmatch(version):
            raise RegistryError(f"invalid model version name {version!r}")
        return self.root / version

    def list_versions(self) -> list[str]:
        """Registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        versions = [d.name for d in self.root.iterdir() if VERSION.fullmatch(d.name) and (d / CARD).is_file()]
        return sorted(versions, key=lambda v: (self.card(v).get("created_at", ""), v))

    def _next_version(self, prefix: str) -> str:
        numbers = [
            int(m.group(1))
            for v in self.list_versions()
            if (m := re.fullmatch(rf"{re.escape(prefix)}-v(\d+)", v))
        ]
        return f"{prefix}-v{max(numbers, default=0) + 1}"

    def register(self, model: nn.Module, config: Config, card_fields: dict[str, Any] | None = None, *,
                 version: str | None = None, dtype: torch.dtype = torch.float16) -> str:
        """Save a new version and return its name (`<config.name>-v<n>` unless `version` is given).

        `card_fields` adds training data, metrics, and for DP runs `"dp": True` and the PRIVACY_FIELDS.
        Weights are stored in `dtype` (float16 halves the size; load converts back to float32).
        """
        architecture = type(getattr(model, "_module", model)).__name__
        if architecture not in ARCHITECTURES:
            raise RegistryError(
                f"unknown architecture {architecture}: register one of {sorted(ARCHITECTURES)}"
            )
        version = version or self._next_version(config.name)
        final = self._dir(version)
        if final.exists():
            raise RegistryError(f"model version {version} already exists in {self.root}")
        state = _plain_state(model, dtype)
        data = safetensors.torch.save(state, metadata={"version": version})
        card = {
            "version": version,
            "architecture": architecture,
            "config": config.to_dict(),
            "param_count": sum(t.numel() for t in state.values()),
            "weights_file": WEIGHTS,
            "weights_dtype": str(dtype).removeprefix("torch."),
            "size_bytes": len(data),
            "sha256": sha256_bytes(data),
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "dp": False,
        }
        clash = set(card) & set(card_fields or {}) - {"dp"}
        if clash:
            raise RegistryError(
                f"card fields {sorted(clash)} are computed by the registry and cannot be given"
            )
        card.update(card_fields or {})
        # Build the version in a hidden directory, then rename it into place: it appears whole or not at all.
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{version}."))
        staging.chmod(0o755)  # mkdtemp makes it owner-only; the serving process may be another user
        (staging / WEIGHTS).write_bytes(data)
        (staging / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        try:
            staging.rename(final)
        except OSError as exc:
            for f in staging.iterdir():
                f.unlink()
            staging.rmdir()
            raise RegistryError(f"model version {version} already exists in {self.root}") from exc
        return version

    def card(self, version: str) -> dict[str, Any]:
        """The model card of `version`."""
        path = self._dir(version) / CARD
        try:
            card: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise RegistryError(f"no model version {version} in {self.root}") from exc
        except json.JSONDecodeError as exc:
            raise RegistryError(f"the card of model version {version} is not valid JSON: {exc}") from exc
        return card

    def _verified_weights(self, version: str, card: dict[str, Any]) -> bytes:
        """The weights file's bytes, refused unless their SHA-256 is the one on the card."""
        try:
            data = (self._dir(version) / WEIGHTS).read_bytes()
        except FileNotFoundError as exc:
            raise RegistryError(f"model version {version} has no {WEIGHTS}") from exc
        if sha256_bytes(data) != card.get("sha256"):
            raise RegistryError(
                f"the weights of model version {version} do not match the SHA-256 on its card: "
                "refusing to load them (the file was changed or corrupted)"
            )
        return data

    def load(self, version: str, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
        """Build the model of `version` from its card and hash-checked safetensors weights, in eval mode."""
        card = self.card(version)
        if card.get("architecture") not in ARCHITECTURES:
            raise RegistryError(
                f"model version {version} has unknown architecture {card.get('architecture')!r}"
            )
        module_cls, config_cls = ARCHITECTURES[card["architecture"]]
        # Parse the very bytes that were hashed (no second read to race), with safetensors only: no pickle.
        state = safetensors.torch.load(self._verified_weights(version, card))
        model = module_cls(config_cls.from_dict(card["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return model.to(device).eval(), card

    def record_audit(self, report: dict[str, Any]) -> None:
        """Keep a privacy audit's report (inference.dp.audit.audit, with its code_version) as the certificate
        promotion reads; a failed or under-powered audit is kept too, and certifies nothing."""
        folder = self.root / AUDITS
        folder.mkdir(parents=True, exist_ok=True)
        name = str(report.get("code_version", ""))
        if not re.fullmatch(r"[0-9a-f]{64}", name):
            raise RegistryError(f"an audit report needs the SHA-256 code_version it audited, got {name!r}")
        _write_atomically(folder / f"{name}.json", json.dumps(report, sort_keys=True, default=str) + "\n")

    def audited(self, card: dict[str, Any]) -> bool:
        """Whether a DP card's dp_code_version holds a passing audit at the pinned settings (non-DP: True)."""
        if not card.get("dp"):
            return True
        code = str(card.get("dp_code_version") or "")
        if not re.fullmatch(r"[0-9a-f]{64}", code):
            return False
        try:
            certificate = json.loads((self.root / AUDITS / f"{code}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return certifies(certificate, code)

    def promote(self, version: str) -> None:
        """Make `version` the one that serves. A DP version must carry every privacy field and a passing
        privacy audit of the code it was trained with, at the pinned settings; nothing bypasses it."""
        card = self.card(version)
        self._verified_weights(version, card)
        missing = [f for f in PRIVACY_FIELDS if card.get(f) is None]
        if card.get("dp") and missing:
            raise RegistryError(
                f"model version {version} is a DP model whose card lacks {', '.join(missing)}: "
                "record them from the training run before promoting it"
            )
        self._check_audited(version, card)
        _write_atomically(self.root / PROMOTED, version + "\n")

    def _check_audited(self, version: str, card: dict[str, Any]) -> None:
        if not self.audited(card):
            raise RegistryError(
                f"model version {version} was trained with DP code {str(card.get('dp_code_version'))[:16]} "
                "that has not passed `manage.py audit_privacy` at its pinned settings: audit that code (or "
                "retrain with audited code) before promoting it"
            )

    def promoted_version(self) -> str | None:
        """The version that serves, or None if none was promoted; a DP version without a passing audit is
        refused here too, however the pointer was written."""
        try:
            version = (self.root / PROMOTED).read_text().strip()
        except FileNotFoundError:
            return None
        self._dir(version)
        self._check_audited(version, self.card(version))
        return version

    def load_promoted(self, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
        """Load the promoted version."""
        version = self.promoted_version()
        if version is None:
            raise RegistryError(
                f"no model is promoted in {self.root}: run `manage.py train_base` or promote one"
            )
        return self.load(version, device=device)
