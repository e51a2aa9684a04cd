"""Django app config for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webplatform.accounts"
    label = "accounts"

    def ready(self) -> None:
        from . import signals

        signals.connect()
