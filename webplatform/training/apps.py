"""Django app config for training."""

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "webplatform.training"
    label = "training"
