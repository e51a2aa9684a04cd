"""Settings for the Celery worker processes integration tests start: tests.settings on a real broker.

tests.settings pins the embedded defaults (eager tasks, memory broker) whatever the environment says; a worker
process must consume from the Redis the test publishes to, named in TIMEVEIL_TEST_BROKER.
"""

import os

from tests.settings import *  # noqa: F403

CELERY_BROKER_URL = os.environ["TIMEVEIL_TEST_BROKER"]
CELERY_TASK_ALWAYS_EAGER = False
