"""Django app config for pages."""

from django.apps import AppConfig


class PagesConfig(AppConfig):
    name = "webplatform.pages"
    label = "pages"
