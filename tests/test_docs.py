"""Docs that stay true: settings read from the environment, worker commands shown, code paths named."""

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
    docs = [ROOT / "README.md", ROOT / "Dockerfile", ROOT / "Procfile", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "deploy").rglob("*.service"))]
    shown = {doc.name: set(re.findall(r"worker -Q (\w+)", doc.read_text())) for doc in docs}
    assert len(shown["README.md"]) >= 3  # the pattern still matches how the README starts workers
    assert shown["Procfile"] == queues  # and the Procfile's, which also runs one of each
    # A worker started as the docs say takes work: no command names a queue nothing is routed to
    assert {name: sorted(q - queues) for name, q in shown.items() if q - queues} == {}
    # and the README starts a worker for every queue
    assert shown["README.md"] == queues


# A path in the docs: a folder of ours, then path characters, ending on a name (not on a trailing dot)
DOC_PATH = re.compile(r"(?<![\w/.])((?:inference|bench|governance|webplatform|templates|deploy)/[\w./-]*\w)")


def _names_something(path: str) -> bool:
    """The path exists, or is a module's attribute (`webplatform/jobs/services._transform`)."""
    if path.startswith("bench/out"):  # what the benches write, absent until they run
        return True
    module, _, _attr = path.rpartition(".")
    return (ROOT / path).exists() or (ROOT / f"{module}.py").is_file()


def test_every_code_path_the_readme_and_docs_name_exists():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(doc.name, p) for doc in docs for p in DOC_PATH.findall(doc.read_text())}
    assert len({p for _, p in named if p.startswith("inference/serving/")}) >= 3  # the pattern still matches
    # A file that moves takes its mentions with it: no doc points at a path the tree no longer has
    assert sorted((doc, p) for doc, p in named if not _names_something(p)) == []
