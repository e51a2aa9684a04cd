"""One batching engine per worker process, serving the promoted model from the registry."""

from __future__ import annotations

import threading

from django.conf import settings

from governance.errors import TimeveilError

_lock = threading.Lock()
_engine = None
_version: str | None = None


class ModelUnavailable(TimeveilError):
    status, code, message = 503, "model_unavailable", "No promoted model is available to serve."


def get_engine():  # type: ignore[no-untyped-def]
    """The process-wide engine and its model version, built on first use (warm-up included)."""
    global _engine, _version
    with _lock:
        if _engine is None:
            from inference.engine import BatchingEngine
            from inference.registry import RegistryError
            from webplatform.models_registry import model_registry

            registry = model_registry()
            version = registry.promoted_version()
            if version is None:
                raise ModelUnavailable(f"No promoted model in {settings.MODEL_REGISTRY_DIR}.")
            try:
                model, _card = registry.load(version)
            except RegistryError as exc:
                raise ModelUnavailable(str(exc)) from exc
            engine = BatchingEngine(model, max_batch_size=settings.ENGINE_MAX_BATCH,
                                    max_wait_ms=settings.ENGINE_MAX_WAIT_MS, compile=settings.ENGINE_COMPILE)
            engine.warmup()
            _engine, _version = engine, version
    return _engine, _version


def reset_engine() -> None:
    """Drop the engine (after a promotion, or between tests) so the next job loads the promoted model."""
    global _engine, _version
    with _lock:
        if _engine is not None:
            _engine.close()
        _engine, _version = None, None
