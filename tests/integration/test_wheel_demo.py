"""The built wheel, installed into a fresh virtual environment, runs `otel-ai-audit demo` from a
folder that has nothing to do with the source tree: everything the demo serves and plays (the
churn API, the triage system, the UCI Adult files) travels in the wheel.

The wheel is built from a copy of the working tree (links kept as links, as git keeps them), so
the build leaves nothing behind in the tree and sees uncommitted files as a release would
after they are committed. Dependencies come from the package index or pip's cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.services.base import REPO_ROOT

DECISIONS, REQUESTS = 150, 40
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", "otel-ai-audit-demo")


def _run(command: list[str | Path], cwd: Path, env: dict[str, str],
         timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(2700)  # a wheel, a venv with the demo extra's dependencies, the demo
def test_the_wheel_in_a_fresh_venv_runs_the_demo_from_anywhere(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OTEL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep)
                                  if Path(sys.executable).parent != Path(part))
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=NOT_COPIED)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", tmp_path / "dist",
          source], tmp_path, env, 600)
    (wheel,) = (tmp_path / "dist").glob("otel_ai_audit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for carried in ("otel_ai_audit/demo/churn_api/app.py", "otel_ai_audit/demo/churn_api/load.py",
                    "otel_ai_audit/demo/triage/scenario.py", "otel_ai_audit/demo/triage/data.py"):
        assert carried in names, carried

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env, 300)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", f"{wheel}[demo]"],
         tmp_path, env, 1200)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = _run([venv / "bin" / "python", "-c", "import otel_ai_audit; print(otel_ai_audit"
                    ".__file__)"], elsewhere, env, 120)
    assert Path(located.stdout.strip()).is_relative_to(venv), "imported from the venv, not the tree"

    demo = _run([venv / "bin" / "otel-ai-audit", "demo", "--out", elsewhere / "out",
                 "--decisions", str(DECISIONS), "--requests", str(REQUESTS)], elsewhere, env, 900)
    assert "verify: OK" in demo.stdout and "evidence bundle: OK" in demo.stdout, demo.stdout
    assert str(REPO_ROOT) not in demo.stdout + demo.stderr, "nothing came from the source tree"
    for output in ("audit.db", "model-card/model-card.html", "evidence-bundle/report.pdf"):
        assert (elsewhere / "out" / output).is_file(), output
