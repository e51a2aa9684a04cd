"""Docs that stay true: every setting read from the environment is in the README's configuration table."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_environment_variable_settings_reads_is_documented_in_the_readme():
    settings = (ROOT / "webplatform" / "settings.py").read_text()
    read = set(re.findall(r'env\.[a-z]+\("([A-Z0-9_]+)"', settings))
    assert len(read) > 40  # the pattern still matches how settings reads them
    readme = (ROOT / "README.md").read_text()
    assert sorted(v for v in read if f"`{v}`" not in readme) == []
