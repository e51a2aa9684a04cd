"""Docs that stay true: every setting read from the environment is in the README's configuration table."""

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_environment_variable_settings_reads_is_documented_in_the_readme():
    settings = (ROOT / "webplatform" / "settings.py").read_text()
    read = set(re.findall(r'env\.[a-z]+\("([A-Z0-9_]+)"', settings))
    assert len(read) > 40  # the pattern still matches how settings reads them
    readme = (ROOT / "README.md").read_text()
    assert sorted(v for v in read if f"`{v}`" not in readme) == []


def test_every_worker_command_the_docs_show_listens_on_a_queue_tasks_are_routed_to():
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    queues.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    docs = [ROOT / "README.md", ROOT / "Dockerfile", *sorted((ROOT / "docs").glob("*.md"))]
    shown = {doc.name: set(re.findall(r"worker -Q (\w+)", doc.read_text())) for doc in docs}
    assert len(shown["README.md"]) >= 3  # the pattern still matches how the README starts workers
    # A worker started as the docs say takes work: no command names a queue nothing is routed to
    assert {name: sorted(q - queues) for name, q in shown.items() if q - queues} == {}
    # and the README starts a worker for every queue
    assert shown["README.md"] == queues
