"""The deployment files parse: systemd units pass `systemd-analyze verify`, each Procfile process has a unit,
and the container image runs as a non-root user.

The Dockerfile is read, not built: this machine has no Docker daemon and no container registry to pull the
base image from. `honcho start` against the local services is tests/integration/test_honcho.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/timeveil"  # where the units expect the code and its virtualenv


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if re.match(r"^[A-Za-z0-9_-]+:", line))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    # Given the units with this checkout standing in for /opt/timeveil (verify checks that each ExecStart
    # binary exists)
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "gunicorn").exists() and (venv_bin / "celery").exists()
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(f"{INSTALLED}/.venv/bin", str(venv_bin)).replace(INSTALLED, str(ROOT))
        (tmp_path / unit.name).write_text(text)
    names = sorted(p.name for p in tmp_path.iterdir())
    # When systemd checks them
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    # Then nothing is wrong, not even a warning (an unknown key or a bad value is only a warning to systemd)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_verify_test_would_see_a_broken_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    broken = (UNITS / "timeveil-beat.service").read_text().replace("Restart=on-failure", "Restart=sometimes")
    (tmp_path / "broken.service").write_text(broken)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "broken.service"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert "sometimes" in result.stderr


def test_every_procfile_process_has_a_systemd_unit_running_the_same_command():
    units = {p.name: p.read_text() for p in UNITS.glob("*.service")}
    names = {"web": "timeveil-web.service", "worker": "timeveil-worker-default.service",
             "aging": "timeveil-worker-aging.service", "training": "timeveil-worker-training.service",
             "beat": "timeveil-beat.service"}
    processes = procfile()
    assert set(processes) == set(names)
    for process, command in processes.items():
        exec_start = re.search(r"^ExecStart=\S+/(\S+) (.*)$", units[names[process]], re.M)
        assert exec_start, names[process]
        # the same program, entry point and queue (the Procfile's ${VAR:-default} knobs aside)
        program, *args = command.split()
        assert (exec_start.group(1), exec_start.group(2).split()[:3]) == (program, args[:3]) or (
            program == "gunicorn" and exec_start.group(2).split()[0] == args[0]), process
        queue = re.search(r"-Q (\w+)", command)
        assert queue is None or f"-Q {queue.group(1)} " in exec_start.group(2), process
    for unit in units.values():
        assert "User=timeveil" in unit and "EnvironmentFile=/etc/timeveil.env" in unit


def test_every_queue_a_task_is_routed_to_has_a_procfile_process_and_a_unit_listening_on_it():
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    routed.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    listening = {m.group(1) for command in procfile().values() if (m := re.search(r"-Q (\w+)", command))}
    units = {m.group(1) for p in UNITS.glob("*.service") if (m := re.search(r" -Q (\w+) ", p.read_text()))}
    # the transformation jobs' queue is named for what it runs: the aging layers, on the CPU
    assert routed == listening == units == {"default", "aging", "training"}


def test_the_container_image_runs_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    # one instruction a line; continuation lines are indented
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.startswith(("#", " ", "\t"))]
    keywords = [word.upper() for word, *_ in instructions]
    users = [rest.strip() for word, rest in instructions if word.upper() == "USER"]
    # The last USER names the account made in the image, and no RUN comes after it as anyone else
    assert users and users[-1] not in ("root", "0", "0:0")
    assert re.search(rf"useradd .*\b{re.escape(users[-1].split(':')[0])}\b", text)
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:]
    assert keywords[-1] == "CMD"
