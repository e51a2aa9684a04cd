"""The Celery application: eager in process by default, real workers on Redis or RabbitMQ at scale."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webplatform.settings")

app = Celery("timeveil")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
