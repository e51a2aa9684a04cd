"""Django app config for lifecycle; starts the embedded retention scheduler when asked."""

import os
import sys

from django.apps import AppConfig
from django.conf import settings

from .scheduler import start_embedded_scheduler


class LifecycleConfig(AppConfig):
    name = "webplatform.lifecycle"
    label = "lifecycle"

    def ready(self) -> None:
        # Under runserver's autoreloader only the serving child (RUN_MAIN) runs the loop.
        serving = "runserver" in sys.argv and os.environ.get("RUN_MAIN") == "true"
        if settings.EMBEDDED_SCHEDULER and (serving or "gunicorn" in sys.argv[0]):
            start_embedded_scheduler()
