"""Django app config for jobs."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webplatform.jobs"
    label = "jobs"

    def ready(self) -> None:
        from . import dispatch  # noqa: F401  (connects the fair dispatcher to the end of each job)
