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
    "EMAIL_URL": "smtp://mail.example:587/?tls=True",
}
KEEP = ("PATH", "HOME", "LANG")


def start(env: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess:
    """Import the settings and set Django up, as gunicorn or a worker does on start."""
    clean = {k: v for k, v in os.environ.items() if k in KEEP}
    clean.update(env, TIMEVEIL_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="webplatform.settings",
                 TIMEVEIL_READ_DOTENV="0")  # a developer's .env must not decide the outcome
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); print('started')"],
                          cwd=var_dir if var_dir.exists() else var_dir.parent,
                          env={**clean, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


def test_production_with_every_setting_given_starts(tmp_path):
    result = start(SAFE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(("missing", "says"), [
    ("SECRET_KEY", "SECRET_KEY is not set"),
    ("ALLOWED_HOSTS", "ALLOWED_HOSTS is not set"),
    ("CACHE_URL", "CACHE_URL=redis://"),
    ("CELERY_BROKER_URL", "CELERY_BROKER_URL=redis://"),
    ("EMAIL_URL", "EMAIL_URL=smtp://"),
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


def make_var(var_dir: Path) -> None:
    """`make var`, the first step of `make run`, for this folder."""
    env = {**{k: v for k, v in os.environ.items() if k in KEEP}, "TIMEVEIL_VAR_DIR": str(var_dir)}
    subprocess.run(["make", "-s", "var"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_make_var_prepares_a_private_folder_and_one_secret_key_that_a_second_run_keeps(tmp_path):
    var = tmp_path / "var"
    make_var(var)
    key = (var / "secret_key").read_text().strip()
    assert len(key) >= 50
    assert (var.stat().st_mode & 0o777, (var / "secret_key").stat().st_mode & 0o777) == (0o700, 0o600)
    make_var(var)
    assert (var / "secret_key").read_text().strip() == key
    assert files_under(var) == {var / "secret_key"}


def test_the_embedded_defaults_start_on_a_prepared_folder_and_writing_nothing_on_import(tmp_path):
    var = tmp_path / "var"
    make_var(var)
    before = files_under(var)
    result = start({"DATABASE_URL": "sqlite:///:memory:"}, var)
    assert result.returncode == 0, result.stderr
    assert files_under(var) == before  # no static root, no key file, nothing else


def test_a_start_without_the_folder_or_a_key_refuses_says_make_var_and_creates_nothing(tmp_path):
    var = tmp_path / "never-prepared"
    result = start({}, var)
    assert result.returncode != 0
    assert "Refusing to start" in result.stderr and "does not exist: run `make var`" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr
    assert not var.exists()


def test_a_key_in_the_environment_needs_no_key_file(tmp_path):
    result = start({"DATABASE_URL": "sqlite:///:memory:", "SECRET_KEY": "e" * 50}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path) == set()
