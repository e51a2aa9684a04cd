"""Test settings: the real settings, a private var/ per test process, a fast password hasher."""

import os
import tempfile

# Each test process (xdist worker) gets its own database file, keyring and object folder. Workers inherit
# the controller's environment, TIMEVEIL_VAR_DIR included, so a worker always makes its own.
if os.environ.get("PYTEST_XDIST_WORKER") or "TIMEVEIL_VAR_DIR" not in os.environ:
    os.environ["TIMEVEIL_VAR_DIR"] = tempfile.mkdtemp(prefix="timeveil-test-")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")
# The embedded defaults, whatever the developer's shell or .env says: eager tasks in process, ciphertext on
# the local disk, a file keyring under this process's var/. Integration tests override these themselves.
os.environ["TIMEVEIL_READ_DOTENV"] = "0"
for name in ("CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "STORAGE_BACKEND", "KEYRING_URL", "DEBUG",
             "SECRET_KEY", "PRODUCTION", "HTTPS", "CACHE_URL", "MODEL_REGISTRY_DIR", "AUDIT_CHECKPOINT_DIR"):
    os.environ.pop(name, None)
# The key `make var` would keep under var/, fixed so the worker and server processes tests start share it.
os.environ["SECRET_KEY"] = "timeveil-tests-only-" + "x" * 40

from webplatform.settings import *  # noqa: E402,F403

STATIC_ROOT.mkdir(exist_ok=True)  # noqa: F405 - collectstatic's folder, which whitenoise expects to exist

# Argon2 is the production hasher (tested in tests/test_accounts.py); MD5 keeps the suite fast.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Each test's rows roll back, so its on-commit audit checkpoints are never written: a chain with no
# checkpoint at all verifies here. tests/test_security_audit.py turns this back on to test the strict mode.
AUDIT_REQUIRE_CHECKPOINT = False

# Each test's transaction rolls back, so on-commit drains never run: tests chain in the action's transaction
# (SQLite's way); tests/test_audit_group_commit.py turns group commit on and runs the commit callbacks.
AUDIT_GROUP_COMMIT = False
