"""The README's code blocks, extracted from README.md and run as a user would, with real values.

The Python API snippet runs as written, both on its own (where `configure()` instruments the
installed libraries) and under `opentelemetry-instrument` (where the same settings come from the
environment, and a `configure()` asking for others says so in one line). The shell blocks of the
sections in `RUN_HERE` run in bash, a placeholder at a time replaced by a real value; every other
block must be listed in `NOT_RUN_HERE` with the reason, so a new block cannot go untested
unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.integration.test_zero_code import BIN, NO_EXPORT
from tests.services.base import REPO_ROOT
from tests.services.elasticsearch import ElasticsearchService

README = REPO_ROOT / "README.md"
INSTRUMENT = "Instrument a model, with no change to its code"
VERIFY = "Verify a store"
DOCUMENT = "Document a model"
FIND = "Find models and decisions"
SHIP = "Ship to Elasticsearch, and verify there"
RUN_HERE = (INSTRUMENT, DOCUMENT, VERIFY, FIND, SHIP)
NOT_RUN_HERE = {
    "Two commands": "`make demo` runs from a bare clone in test_demo.py; `make test` is this suite",
    "What you get": "a diagram",
    "Ship to Splunk HEC, or through an OpenTelemetry Collector": "no Splunk here; not run yet",
    "Monitor drift and fairness": "not run from the README yet (test_drift.py, "
                                  "test_fairness_monitoring.py)",
    "Prove nothing was left out: external anchors": "not run from the README yet "
                                                    "(test_anchor_services.py)",
    "Answer an authority's request: the evidence bundle": "not run from the README yet "
                                                          "(test_evidence_bundle.py)",
}
DECISIONS = 5
APP = f"""\
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(5)
model = LogisticRegression().fit(rng.normal(size=(80, 3)), rng.integers(0, 2, 80))
for row in rng.normal(size=({DECISIONS}, 3)):
    model.predict(row[None, :])
"""
"""`app.py` of the shell blocks: an unmodified scoring program, no otel-ai-audit import."""
STANDS_FOR_INSTALL = re.compile(r"^pip install .*$", re.M)
"""This venv is that install: the line stands for what the test environment already holds."""


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    code: str


def readme_blocks() -> list[Block]:
    """Every fenced code block of the README, with the `## ` section it is in."""
    blocks, section, fence, lines = [], "", None, []
    for line in README.read_text().splitlines():
        if fence is None and line.startswith("## "):
            section = line[3:].strip()
        elif fence is None and line.startswith("```"):
            fence, lines = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            blocks.append(Block(section, fence, "\n".join(lines) + "\n"))
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def the_block(section: str, language: str) -> str:
    (code,) = [block.code for block in readme_blocks()
               if block.section == section and block.language == language]
    return code


def environment(**variables: str) -> dict[str, str]:
    """A user's shell: this venv first on PATH, no OTEL_* of the test run, nothing exported;
    the PyTorch and MLflow instrumentations off (seconds to load, no part in these blocks)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **NO_EXPORT,
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "torch,mlflow", **variables})
    return env


def run(argv: list[str], workdir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=workdir, env=environment(**variables), capture_output=True,
                          text=True, timeout=300, check=False)


def keygen(workdir: Path) -> None:
    result = run([str(BIN / "otel-ai-audit"), "keygen", "--out", "audit-signing"], workdir)
    assert result.returncode == 0, result.stderr


def verified(store: Path, public_key: Path) -> dict:
    result = run([str(BIN / "otel-ai-audit"), "verify", str(store), "--public-key",
                  str(public_key), "--json"], store.parent)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], result.stdout + result.stderr
    return report


def events(store: Path, kind: str) -> list[dict]:
    with sqlite3.connect(store) as db:
        return [json.loads(data)["event"] for (data,) in
                db.execute("SELECT data FROM records WHERE type = ?", (kind,))]


def test_every_block_is_run_or_says_why_not() -> None:
    sections = {block.section for block in readme_blocks()}
    assert sections <= set(RUN_HERE) | set(NOT_RUN_HERE), sections - set(NOT_RUN_HERE)
    assert set(RUN_HERE) <= sections and set(NOT_RUN_HERE) <= sections, "stale entries"
    assert [block.language for block in readme_blocks()].count("python") == 1


def snippet_kept_its_decision(workdir: Path, result: subprocess.CompletedProcess[str]) -> None:
    """The snippet ran, and audit.db holds its decision (named as registered), the oversight
    record on it, and verifies with the user's own public key."""
    assert result.returncode == 0, result.stderr
    store = workdir / "audit.db"
    verified(store, workdir / "audit-signing.pub.pem")
    (decision,) = [event for event in events(store, "inference")
                   if event.get("model", {}).get("name") == "tumour-screen"]
    (oversight,) = events(store, "oversight")
    assert oversight["decision_id"] == decision["id"] and oversight["action"] == "overridden"


def test_the_python_snippet_works_as_written(tmp_path: Path) -> None:
    keygen(tmp_path)
    (tmp_path / "snippet.py").write_text(the_block(INSTRUMENT, "python"))
    result = run(["python", "snippet.py"], tmp_path)
    snippet_kept_its_decision(tmp_path, result)
    assert "otel-ai-audit" not in result.stderr, result.stderr


def test_the_find_block_on_the_snippets_store(tmp_path: Path) -> None:
    """The snippet's store (its file name in the block's place): the model it named, its
    decision found by model, date and oversight, and that decision shown with its links."""
    keygen(tmp_path)
    (tmp_path / "snippet.py").write_text(the_block(INSTRUMENT, "python"))
    snippet_kept_its_decision(tmp_path, run(["python", "snippet.py"], tmp_path))
    (decision,) = [event for event in events(tmp_path / "audit.db", "inference")
                   if event["model"]["name"] == "tumour-screen"]
    code = (the_block(FIND, "bash").replace("otel-ai-audit.db", "audit.db")
            .replace("DECISION_ID", decision["id"]))
    result = shell(code, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tumour-screen" in result.stdout and result.stdout.count(decision["id"]) >= 2
    assert "otel-ai-audit prove audit.db " + decision["id"] in result.stdout, result.stdout


def test_the_python_snippet_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """With the settings in the environment, as the README says: the same records, silently."""
    keygen(tmp_path)
    (tmp_path / "snippet.py").write_text(the_block(INSTRUMENT, "python"))
    result = run([str(BIN / "opentelemetry-instrument"), "python", "snippet.py"], tmp_path,
                 OTEL_AI_AUDIT_STORE="audit.db",
                 OTEL_AI_AUDIT_SIGNING_KEY="audit-signing.key.pem")
    snippet_kept_its_decision(tmp_path, result)
    assert "otel-ai-audit" not in result.stderr, result.stderr


def test_a_conflicting_configure_under_opentelemetry_instrument_says_so(tmp_path: Path) -> None:
    """Other settings in the environment than in the snippet's `configure()`: the environment's
    are in force, and one line on stderr names both and the variables to set instead."""
    keygen(tmp_path)
    (tmp_path / "snippet.py").write_text(the_block(INSTRUMENT, "python"))
    result = run([str(BIN / "opentelemetry-instrument"), "python", "snippet.py"], tmp_path,
                 OTEL_AI_AUDIT_STORE="elsewhere.db",
                 OTEL_AI_AUDIT_SIGNING_KEY="audit-signing.key.pem")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "otel-ai-audit" in line]
    assert line.startswith("otel-ai-audit: configure(store='audit.db') ignored: "
                           "opentelemetry-instrument already set up the audit trail with "
                           "store='elsewhere.db'"), line
    assert "OTEL_AI_AUDIT_STORE=audit.db opentelemetry-instrument" in line, line
    assert "signing_key" not in line, "the key is the same: not a conflict"
    assert not (tmp_path / "audit.db").exists()
    assert events(tmp_path / "elsewhere.db", "oversight")


def shell(code: str, workdir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run a README shell block in bash, stopping at the first command that fails."""
    (workdir / "app.py").write_text(APP)
    (workdir / "block.sh").write_text(f"set -euo pipefail\n{code}")
    return run(["bash", "block.sh"], workdir, **variables)


def test_the_zero_code_block(tmp_path: Path) -> None:
    result = shell(STANDS_FOR_INSTALL.sub(":", the_block(INSTRUMENT, "bash")), tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(events(tmp_path / "otel-ai-audit.db", "inference")) == DECISIONS
    verified(tmp_path / "otel-ai-audit.db", tmp_path / "audit-signing.pub.pem")


def test_the_verify_block(tmp_path: Path) -> None:
    """Its "run your service" is the zero-code block's own command, and DECISION_ID one of the
    decisions that made; each command must succeed (verify exits 1 on any finding)."""
    (run_line,) = [line.split("#")[0].strip() for line in
                   the_block(INSTRUMENT, "bash").splitlines()
                   if line.startswith("opentelemetry-instrument")]
    (tmp_path / "first_decision.py").write_text(
        "import sqlite3\n"
        "print(sqlite3.connect('otel-ai-audit.db').execute(\n"
        "    \"SELECT record_id FROM records WHERE type = 'inference'\").fetchone()[0])\n")
    code = (the_block(VERIFY, "bash").replace("# ... run your service ...", run_line)
            .replace("DECISION_ID", '"$(python first_decision.py)"'))
    result = shell(code, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    proven = json.loads(json.loads((tmp_path / "proof.json").read_text())["record"])["event"]
    assert proven in events(tmp_path / "otel-ai-audit.db", "inference")


def test_the_elasticsearch_block(tmp_path: Path, elasticsearch: ElasticsearchService) -> None:
    """After the zero-code block, in its shell: shipped to the real node (its URL in the
    placeholders' place, an index prefix of this test's own) and verified there."""
    code = (STANDS_FOR_INSTALL.sub(":", the_block(INSTRUMENT, "bash")) + the_block(SHIP, "bash")
            .replace("https://es.example:9200", elasticsearch.url)
            .replace(" URL", f" {elasticsearch.url}"))
    result = shell(code, tmp_path,
                   OTEL_AI_AUDIT_ELASTICSEARCH_INDEX_PREFIX=f"readme-{uuid.uuid4().hex[:8]}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout.splitlines()[-1], result.stdout


def test_the_document_block(tmp_path: Path) -> None:
    """Run in the shell of the zero-code block, where the signing key was exported."""
    keygen(tmp_path)
    result = shell(the_block(DOCUMENT, "bash"), tmp_path,
                   OTEL_AI_AUDIT_SIGNING_KEY=str(tmp_path / "audit-signing.key.pem"))
    assert result.returncode == 0, result.stderr
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert {path.suffix for path in folder.iterdir()} >= {".md", ".html", ".json"}
    assert len(events(folder / "audit.db", "model_card")) == 1
    verified(folder / "audit.db", tmp_path / "audit-signing.pub.pem")
