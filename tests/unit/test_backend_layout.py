"""Each backend in parts: the layout alone names things and loads no client, and a backend used
without its extra says, in one line, which extra to install.

The layout is what dashboards, documentation and offline verifiers read; a client library or
the OpenTelemetry SDK there would make all of them pay for a connection they never open.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import otel_ai_audit
from otel_ai_audit.store.sqlite import AuditStore

PACKAGE = Path(otel_ai_audit.__file__).parent
LAYOUT_READERS = ("otel_ai_audit.backends.elasticsearch.layout",
                  "otel_ai_audit.backends.splunk_hec.layout",
                  "otel_ai_audit.backends.otlp.layout",
                  "otel_ai_audit.backends.splunk_hec.source",
                  "otel_ai_audit.backends.otlp.source",
                  "otel_ai_audit.dashboards")
"""Modules that read a layout and have no reason to connect anywhere."""
CLIENTS = ("elasticsearch", "elastic_transport", "opentelemetry.sdk", "opentelemetry.exporter",
           "grpc")
LAYOUT_NAMES = {
    "otel_ai_audit/backends/elasticsearch/layout.py":
        ("-records", "-checkpoints", "-anchors", "-keys", "-findings"),
    "otel_ai_audit/backends/splunk_hec/layout.py": ("otel_ai_audit:",),
    "otel_ai_audit/backends/otlp/layout.py":
        ("ai_audit.record", "ai_audit.record.base64", "ai_audit.chain.", "ai_audit.checkpoint.",
         "ai_audit.key.", "ai_audit.kind", "elasticsearch.document_id"),
}
"""Per layout module, the names only it may spell in code: index suffixes (as in
f"{prefix}-records"), sourcetypes, span attributes. A name ending in "." or ":" is a prefix;
any other is a whole string."""


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module", LAYOUT_READERS)
def test_layout_readers_load_no_client_library_or_sdk(module: str) -> None:
    loaded = json.loads(run_python(
        f"import sys, json, {module}; print(json.dumps(list(sys.modules)))").stdout)
    clients = sorted(name for name in loaded
                     if any(name == bad or name.startswith(f"{bad}.") for bad in CLIENTS))
    assert module in loaded
    assert clients == [], f"import {module} loads {clients}"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the string constants of a module's code: docstrings left out, f-strings
    by their literal parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and (body := node.body) and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def _spells(text: str, name: str) -> bool:
    return text.startswith(name) if name.endswith((".", ":")) else text == name


def test_each_layout_name_is_spelled_in_its_layout_only() -> None:
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        strings = _code_strings(path)
        for layout, names in LAYOUT_NAMES.items():
            if relative == layout:
                continue
            elsewhere += [f"{relative}:{line}: {text!r} (the name of {layout})"
                          for line, text in strings
                          if any(_spells(text, name) for name in names)]
    assert elsewhere == []


def test_without_the_elasticsearch_extra_each_use_says_which_extra(tmp_path: Path) -> None:
    """`elasticsearch` made unimportable (None in sys.modules, as if not installed): commands
    end with one line and exit 2, the API raises an error that is a ValueError and an
    ImportError; the layout and the Kibana objects still work."""
    store = tmp_path / "audit.db"
    AuditStore(str(store)).close()
    script = f"""
import json, subprocess, sys
sys.modules["elasticsearch"] = None
from click.testing import CliRunner
from otel_ai_audit.cli import main
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.dashboards import kibana
from otel_ai_audit.sinks import configured_sinks

down = "http://127.0.0.1:9"
results = {{}}
for name, args in {{"verify": ["verify", "--elasticsearch", down],
                    "ship": ["ship", {str(store)!r}, "--elasticsearch", down, "--once"],
                    "drift": ["drift", "--elasticsearch", down, "--model", "m",
                              "--from", "2026-01-01", "--to", "2026-01-02"]}}.items():
    outcome = CliRunner().invoke(main, args)
    results[name] = [outcome.exit_code, outcome.output, repr(outcome.exception)]
try:
    configured_sinks(AuditSettings.from_env(elasticsearch_url=down))
except ValueError as error:
    results["api"] = [str(error), isinstance(error, ImportError)]
results["objects"] = len(kibana.saved_objects())
print(json.dumps(results))
"""
    run = run_python(script)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    line = "Elasticsearch support needs the `elasticsearch` extra: " \
           "pip install 'otel-ai-audit[elasticsearch]'"
    for command in ("verify", "ship", "drift"):
        code, output, _ = results[command]
        assert code == 2, (command, results[command])
        (said,) = output.strip().splitlines()
        assert said.endswith(line), (command, output)
    assert results["api"] == [line, True]
    assert results["objects"] > 0
