"""`configure()` without `opentelemetry-instrument` turns on the instrumentations of the
installed libraries, each when its library is imported, minus those the user disabled the OTel
way (`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`). Real subprocesses: instrumentation is global."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit_fixtures import key_beside
from tests.integration.test_zero_code import decision_count, run_environment

PROGRAM = """\
import json, sys
import otel_ai_audit
otel_ai_audit.configure(store=sys.argv[1], signing_key=sys.argv[2])
imported = [name for name in ("sklearn", "torch") if name in sys.modules]
from sklearn.tree import DecisionTreeClassifier
model = DecisionTreeClassifier().fit([[0], [1], [2]], [0, 1, 1])
model.predict([[2]])
print(json.dumps({"imported_by_configure": imported,
                  "decisions": otel_ai_audit.last_decision_ids()}))
"""


def run_program(tmp_path: Path, **variables: str) -> dict:
    store = tmp_path / "audit.db"
    env = run_environment(store, **variables)
    result = subprocess.run([sys.executable, "-c", PROGRAM, str(store), str(key_beside(store))],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "otel-ai-audit" not in result.stderr, \
        result.stderr
    return json.loads(result.stdout)


def test_the_installed_libraries_are_instrumented_when_imported(tmp_path: Path) -> None:
    outcome = run_program(tmp_path)
    assert outcome["imported_by_configure"] == [], "configure() imports no model library"
    assert len(outcome["decisions"]) == 1
    assert decision_count(tmp_path / "audit.db") == 1


@pytest.mark.parametrize("disabled", ["sklearn", "torch,sklearn", "*"])
def test_disabled_instrumentations_stay_off(tmp_path: Path, disabled: str) -> None:
    outcome = run_program(tmp_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=disabled)
    assert outcome["decisions"] == []
    store = tmp_path / "audit.db"
    assert not store.exists() or decision_count(store) == 0, "the store is made at a record"
