"""The layers of DESIGN.md: governance and inference import nothing of ours; inference never imports Django."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "governance": {"webplatform", "inference"},
    "inference": {"webplatform", "governance", "django", "rest_framework", "celery"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found under {package}/"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_checker_sees_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import webplatform.x\nfrom django.db import models\nfrom . import sibling\n")
    assert imported_roots(sample) == {"webplatform", "django"}
