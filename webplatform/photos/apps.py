"""Django app config for photos."""

from django.apps import AppConfig


class PhotosConfig(AppConfig):
    name = "webplatform.photos"
    label = "photos"
