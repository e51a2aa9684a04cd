"""The layers of DESIGN.md: governance and inference import none of ours; inference never imports Django."""

import ast
import json
import subprocess
import sys
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


# Inside webplatform/ each module sits in a layer and imports only its own layer or those below:
# models -> storage (the encrypted store, the task queue) -> services -> tasks -> entry points (api, pages,
# commands, probes). Services queue work by task name (webplatform.taskqueue); only workers import tasks.
LAYERS = ("models", "storage", "services", "tasks", "entry")
STORAGE_MODULES = {"webplatform.encrypted_store", "webplatform.taskqueue", "webplatform.celery"}
ENTRY_PACKAGES = ("webplatform.api", "webplatform.pages", "webplatform.urls", "webplatform.health",
                  "webplatform.wsgi", "webplatform.asgi")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    leaf = module.rsplit(".", 1)[-1]
    if module.startswith(ENTRY_PACKAGES) or ".management" in module or leaf == "apps":
        return "entry"  # app configs start the embedded scheduler: they sit above it
    if leaf in ("tasks", "scheduler"):
        return "tasks"
    if module in STORAGE_MODULES:
        return "storage"
    if leaf == "models":
        return "models"
    return "services"


def webplatform_imports(path: Path) -> set[str]:
    """Modules of webplatform/ this file imports, at module level or in functions, relative ones resolved."""
    module = module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]) if node.level \
                else node.module or ""
            found |= {base.strip(".")} | {f"{base.strip('.')}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("webplatform.")}


def webplatform_graph() -> dict[str, set[str]]:
    files = [p for p in sorted((ROOT / "webplatform").rglob("*.py")) if "migrations" not in p.parts]
    modules = {module_name(p): p for p in files}
    return {m: {d for d in webplatform_imports(p) if d in modules and d != m} for m, p in modules.items()}


def test_webplatform_layers_import_downward_only():
    graph = webplatform_graph()
    assert "webplatform.jobs.services" in graph and "webplatform.jobs.tasks" in graph
    upward = {f"{m} ({layer_of(m)}) imports {d} ({layer_of(d)})"
              for m, deps in graph.items() for d in deps
              if LAYERS.index(layer_of(d)) > LAYERS.index(layer_of(m))}
    assert sorted(upward) == []


def cycles_in(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk meets, as 'a -> b -> a'."""
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_webplatform_modules_have_no_import_cycles():
    assert cycles_in(webplatform_graph()) == []


def test_layer_checker_sees_an_upward_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "webplatform" / "jobs").mkdir(parents=True)
    (tmp_path / "webplatform" / "jobs" / "services.py").write_text("def f():\n    from .tasks import t\n")
    (tmp_path / "webplatform" / "jobs" / "tasks.py").write_text("from .services import f\n")
    graph = webplatform_graph()
    assert graph == {"webplatform.jobs.services": {"webplatform.jobs.tasks"},
                     "webplatform.jobs.tasks": {"webplatform.jobs.services"}}
    assert (
        layer_of("webplatform.jobs.services") == "services" and layer_of("webplatform.jobs.tasks") == "tasks"
    )


def package_graph() -> dict[str, set[str]]:
    """The module graph folded to webplatform's sub-packages (photos, jobs, ...), entry points left out."""
    folded: dict[str, set[str]] = {}
    for module, deps in webplatform_graph().items():
        parts = module.split(".")
        if len(parts) < 3 or layer_of(module) == "entry":
            continue  # top modules (settings, encrypted_store, taskqueue), entry points: outside the rooms
        package = ".".join(parts[:2])
        folded.setdefault(package, set()).update(
            ".".join(d.split(".")[:2]) for d in deps if len(d.split(".")) >= 3 and layer_of(d) != "entry")
    return {p: deps - {p} for p, deps in folded.items()}


def test_webplatform_rooms_depend_one_way():
    # photos sits below jobs and lifecycle (its deletion is lifecycle's), so no room needs one above it.
    graph = package_graph()
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]  # the checker sees one
    assert {"webplatform.photos", "webplatform.jobs", "webplatform.lifecycle"} <= set(graph)
    assert cycles_in(graph) == []
    assert graph["webplatform.photos"] & {"webplatform.jobs", "webplatform.lifecycle"} == set()


# Inside inference/ the rooms say what serves: serving/ is all a job runs; generator/ (the learned generator,
# trained only) and dp/ (its DP training) sit above it. Nothing that serves imports the training-only part.
INFERENCE_ROOMS = ("serving", "generator", "dp")


def inference_room_imports(room: str) -> dict[str, set[str]]:
    """For each file of inference/<room>/, the other inference rooms it imports (absolute or relative)."""
    found = {}
    for path in sorted((ROOT / "inference" / room).rglob("*.py")):
        rooms = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "inference":
                names = [f"inference.{alias.name}" for alias in node.names]
            rooms |= {n.split(".")[1] for n in names if n.startswith("inference.") and n.count(".") >= 1}
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                rooms.add((node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = rooms - {room}
    return found


@pytest.mark.parametrize("room", INFERENCE_ROOMS)
def test_inference_rooms_import_downward_only(room):
    below = set(INFERENCE_ROOMS[:INFERENCE_ROOMS.index(room)])
    imports = inference_room_imports(room)
    assert imports, f"no sources under inference/{room}/"
    assert {f: sorted(r - below) for f, r in imports.items() if r - below} == {}


def test_every_inference_module_sits_in_a_room():
    # A module beside the rooms (inference/x.py, inference/other/) would escape the checks above
    outside = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "inference").rglob("*.py"))
               if p.relative_to(ROOT / "inference").parts[0] not in (*INFERENCE_ROOMS, "__init__.py")]
    assert outside == []


def test_the_serving_path_loads_nothing_of_training(tmp_path):
    # What a job imports, in a fresh interpreter: no module of generator/ or dp/, and no Opacus.
    code = ("import sys, inference.serving.transform as t; "
            "print(sorted(m for m in sys.modules if m.startswith(('inference.generator', 'inference.dp', "
            "'opacus'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_room_checker_sees_an_upward_import(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "inference" / "serving").mkdir(parents=True)
    (tmp_path / "inference" / "serving" / "a.py").write_text(
        "from inference.generator.model import M\nfrom inference import dp\nfrom ..dp import x\n")
    assert inference_room_imports("serving") == {"inference/serving/a.py": {"generator", "dp"}}


def test_the_web_process_starts_without_torch():
    # What a web worker loads before its first request (settings, apps, URLs and every view, the template
    # filters), in a fresh interpreter: no torch and no Opacus. The imports deferred for that say so.
    code = ("import json, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; "
            "import webplatform.wsgi, webplatform.urls; from django.template import engines; "
            "engines['django'].engine.template_libraries; "
            "print(json.dumps([m for m in sys.modules "
            "                  if m.split('.')[0] in ('torch', 'opacus', 'webplatform', 'inference')]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    # Every module of both doors was loaded, so whatever a page or an API view imports at its top is covered
    doors = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for door in ("api", "pages") for p in (ROOT / "webplatform" / door).rglob("*.py")}
    assert "webplatform.pages.views" in doors and sorted(doors - set(loaded)) == []
    # The serving path may load (photos and jobs run it); the trained-only rooms and what they need may not
    assert [m for m in loaded if not m.startswith(("webplatform", "inference.serving"))
            and m != "inference"] == []
