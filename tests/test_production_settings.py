"""Production mode refuses unsafe settings at start-up, saying what to set; the embedded defaults still start.

Each case imports the real settings in a fresh interpreter with its own environment, as a server would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAFE = {
    "PRODUCTION": "1",
    "SECRET_KEY": "k" * 64,
    "DEBUG": "0",
    "ALLOWED_HOSTS": "timeveil.example",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "sqlite:///:memory:",
}
KEEP = ("PATH", "HOME", "LANG")


def start(env: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess:
    """Import the settings and set Django up, as gunicorn or a worker does on start."""
    clean = {k: v for k, v in os.environ.items() if k in KEEP}
    clean.update(env, TIMEVEIL_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="webplatform.settings",
                 TIMEVEIL_READ_DOTENV="0")  # a developer's .env must not decide the outcome
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); print('started')"],
                          cwd=var_dir, env={**clean, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)


def test_production_with_every_setting_given_starts(tmp_path):
    result = start(SAFE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(("missing", "says"), [
    ("SECRET_KEY", "SECRET_KEY is not set"),
    ("ALLOWED_HOSTS", "ALLOWED_HOSTS is not set"),
    ("CACHE_URL", "CACHE_URL=redis://"),
    ("CELERY_BROKER_URL", "CELERY_BROKER_URL=redis://"),
])
def test_production_refuses_to_start_without_a_setting_and_says_what_to_set(tmp_path, missing, says):
    result = start({k: v for k, v in SAFE.items() if k != missing}, tmp_path)
    assert result.returncode != 0
    assert "Refusing to start in production mode" in result.stderr and says in result.stderr


def test_production_refuses_debug_and_demo_accounts(tmp_path):
    (tmp_path / "demo_credentials.json").write_text("{}")
    result = start({**SAFE, "DEBUG": "1"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG is on" in result.stderr and "demo accounts exist" in result.stderr


def test_the_embedded_defaults_start_without_production_mode(tmp_path):
    result = start({"DATABASE_URL": "sqlite:///:memory:"}, tmp_path)
    assert result.returncode == 0, result.stderr
