"""Django app config for training: installs inference.dp's accountant as the ledgers' composer."""

from django.apps import AppConfig


def compose_ledger(history: list[tuple[float, float, int]], delta: float) -> float:
    """governance's composer: inference.dp's accountant, imported on first use (torch stays out of
    start-up). No cache: pages read the totals the ledger stores at reservation, so only reservations
    compose."""
    from django.conf import settings

    from inference.dp.accounting import compose_epsilon  # torch and Opacus stay out of the web's start-up

    return compose_epsilon(history=list(history), delta=delta, accountant=settings.DP_ACCOUNTANT)


class TrainingConfig(AppConfig):
    name = "webplatform.training"
    label = "training"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        from governance import training  # it imports the models, which load only once apps are ready

        if settings.DP_ACCOUNTANT not in ("prv", "rdp"):  # inference.dp.accounting.ACCOUNTANTS, without torch
            raise ImproperlyConfigured(f"DP_ACCOUNTANT={settings.DP_ACCOUNTANT!r}: set it to 'prv' (the "
                                       "default) or 'rdp'; both are upper bounds, GDP is not offered")
        training.composer = compose_ledger
