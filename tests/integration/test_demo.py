"""`otel-ai-audit demo` (what `make demo` runs): the three scenarios end to end, for real.

Runs the command as a subprocess, as a newcomer would, and checks what it promises: every
output under --out, one store holding the three scenarios' chains that verifies, a model card,
an evidence bundle that verifies offline, and the exact commands it prints working.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from otel_ai_audit.store.sqlite import AuditStore
from tests.conftest import SHARED_DATA
from tests.services.base import REPO_ROOT

BIN = Path(sys.executable).parent
DECISIONS, REQUESTS = 150, 40


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "demo", "--out", str(out), "--decisions", str(DECISIONS),
         "--requests", str(REQUESTS)],
        capture_output=True, text=True, check=False, timeout=600)
    return {"out": out, "result": result}


def _events(store: Path) -> list[dict[str, Any]]:
    with AuditStore(store, create=False, readonly=True) as opened:
        return [json.loads(data)["event"] for chain in opened.chain_ids()
                for _, data in opened.records(chain)]


def test_demo_succeeds_and_writes_every_output(demo: dict[str, Any]) -> None:
    result, out = demo["result"], demo["out"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: OK" in result.stdout and "evidence bundle: OK" in result.stdout
    for path in ("audit.db", "demo-signing.pub.pem", "model-card/model-card.html",
                 "model-card/model-card.md", "evidence-bundle/manifest.json",
                 "evidence-bundle/report.html", "evidence-bundle/report.pdf"):
        assert (out / path).is_file(), path


def test_one_store_holds_the_three_scenarios(demo: dict[str, Any]) -> None:
    events = _events(demo["out"] / "audit.db")
    services = Counter(event.get("service", {}).get("name") for event in events
                       if event["type"] == "inference")
    assert services["churn-api"] == REQUESTS  # every request valid at this count: one each
    assert sum(1 for event in events if event["type"] == "request") == REQUESTS
    assert services["triage-assist"] > 0
    adult = [event for event in events if event["type"] == "inference"
             and event["model"]["name"] == "adult-income"]
    assert len(adult) == DECISIONS
    kinds = Counter(event["type"] for event in events)
    for kind in ("model_card", "training", "oversight", "dispute", "incident", "rollback",
                 "deploy", "drift", "outcome"):
        assert kinds[kind] >= 1, kind


def test_the_printed_commands_verify(demo: dict[str, Any]) -> None:
    commands = re.findall(r"^  (otel-ai-audit verify.*)$", demo["result"].stdout, re.MULTILINE)
    assert len(commands) == 2, demo["result"].stdout
    for command in commands:
        words = shlex.split(command)
        checked = subprocess.run([str(BIN / words[0]), *words[1:]], capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "OK" in checked.stdout


def test_a_rerun_replaces_the_outputs(demo: dict[str, Any]) -> None:
    out = demo["out"]
    again = subprocess.run(
        [str(BIN / "otel-ai-audit"), "demo", "--out", str(out), "--data",
         str(Path(SHARED_DATA) / "uci-adult"), "--decisions", "20", "--requests", "5"],
        capture_output=True, text=True, check=False, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(1 for event in _events(out / "audit.db") if event["type"] == "request") == 5


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "demo", "--out", str(tmp_path / "out"), "--data",
         str(tmp_path / "nowhere")], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "adult.data" in result.stderr


def test_a_given_data_folder_is_used(tmp_path: Path) -> None:
    """`--data` names the user's own copy (here the originals beside the project)."""
    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "demo", "--out", str(tmp_path / "out"), "--data",
         str(Path(SHARED_DATA) / "uci-adult"), "--decisions", "10", "--requests", "3"],
        capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_demo_works_on_a_bare_clone(tmp_path: Path) -> None:
    """A clone in an empty folder, nothing beside it (no ../shared), runs `make demo`."""
    clone = tmp_path / "empty" / "otel-ai-audit"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    assert not (clone.parent.parent / "shared").exists() and not (clone.parent / "shared").exists()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OTEL_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep)
                                  if not part.startswith(str(BIN)))
    result = subprocess.run(["make", "demo", "DEMO_OUT=out"], cwd=clone, env=env,
                            capture_output=True, text=True, check=False, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "verify: OK" in result.stdout and "evidence bundle: OK" in result.stdout
    assert (clone / "out" / "model-card" / "model-card.html").is_file()
