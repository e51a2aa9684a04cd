"""Django app config for training: installs inference.dp's accountant as the ledgers' composer."""

import functools

from django.apps import AppConfig


def compose_ledger(history: list[tuple[float, float, int]], delta: float) -> float:
    """governance's composer: inference.dp's accountant, imported on first use (torch stays out of
    start-up)."""
    from django.conf import settings

    return _composed(tuple((float(s), float(q), int(k)) for s, q, k in history), float(delta),
                     settings.DP_ACCOUNTANT)


@functools.lru_cache(maxsize=4096)
def _composed(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    """PRV takes 0.1-3 s per history; ledgers ask for the same ones again and again (runs never change)."""
    from inference.dp.accounting import compose_epsilon

    return compose_epsilon(history=list(history), delta=delta, accountant=accountant)


class TrainingConfig(AppConfig):
    name = "webplatform.training"
    label = "training"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from governance import training

        if settings.DP_ACCOUNTANT not in ("prv", "rdp"):  # inference.dp.accounting.ACCOUNTANTS, without torch
            raise ImproperlyConfigured(f"DP_ACCOUNTANT={settings.DP_ACCOUNTANT!r}: set it to 'prv' (the "
                                       "default) or 'rdp'; both are upper bounds, GDP is not offered")
        training.composer = compose_ledger
