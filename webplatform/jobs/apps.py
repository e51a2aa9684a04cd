"""Django app config for jobs."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webplatform.jobs"
    label = "jobs"
