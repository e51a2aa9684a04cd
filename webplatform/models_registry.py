"""The platform's model registry: MODEL_REGISTRY_DIR, seeded on first use with the shipped model."""

from __future__ import annotations

import shutil

from django.conf import settings

from inference.generator.registry import SHIPPED, ModelRegistry


def model_registry() -> ModelRegistry:
    """The registry new versions are written to; the first call copies the shipped versions in."""
    root = settings.MODEL_REGISTRY_DIR
    if root.resolve() != SHIPPED.resolve() and not any(root.glob("*/card.json")) and SHIPPED.is_dir():
        # The repository's inference/generator/weights stays read-only; DP versions land under var/ beside it.
        shutil.copytree(SHIPPED, root, dirs_exist_ok=True)
    return ModelRegistry(root)
