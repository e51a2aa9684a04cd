"""Django app config for training: checks the accountant setting (the ledgers' accountant is passed by the
callers, webplatform.training.ledger, never installed here)."""

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "webplatform.training"
    label = "training"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        if settings.DP_ACCOUNTANT not in ("prv", "rdp"):  # inference.dp.accounting.ACCOUNTANTS, without torch
            raise ImproperlyConfigured(f"DP_ACCOUNTANT={settings.DP_ACCOUNTANT!r}: set it to 'prv' (the "
                                       "default) or 'rdp'; both are upper bounds, GDP is not offered")
