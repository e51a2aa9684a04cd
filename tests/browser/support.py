"""Browser test helpers that are not fixtures: where Chromium is, the skip mark without it, the password."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "a-Long-passphrase-42"

needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                    reason=f"Chromium not installed at {CHROMIUM} (.ci/run installs it)")
