"""Django app config for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webplatform.accounts"
    label = "accounts"

    def ready(self) -> None:
        from . import signals  # it imports the models, which load only once the app registry is ready

        signals.connect()
