"""Finding things: `models`, `decisions`, errors that say what exists, STORE taken the same way
by every command, one line for a missing extra, progress only on a terminal, default names.

The commands run as subprocesses, on the demo's store (`otel-ai-audit demo`, run once) and on a
small store written in this process by real scikit-learn and PyTorch models through the
instrumentation; what they print is checked against the records read from the store directly.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import otel_ai_audit
from otel_ai_audit.cli import main
from otel_ai_audit.instrumentation.naming import qualified_name
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.instrumentation.sklearn.identity import estimator_name
from otel_ai_audit.instrumentation.torch import TorchInstrumentor
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.store.sqlite import AuditStore

BIN = Path(sys.executable).parent
CLI = str(BIN / "otel-ai-audit")
DEMO_DECISIONS, DEMO_REQUESTS = 150, 40


def run(*arguments: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *arguments], capture_output=True, text=True, check=False,
                          timeout=600, **kwargs)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command that failed on bad input (exit 2, no traceback)."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otel-ai-audit: error: "), result.stderr
    return lines[0]


def events(store: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """(chain id, seq, event) of every record, read from the store directly."""
    with AuditStore(store, create=False, readonly=True) as opened:
        return [(chain, seq, json.loads(data)["event"]) for chain in opened.chain_ids()
                for seq, data in opened.records(chain)]


# --- a small store --------------------------------------------------------------------------

class Scorer(torch.nn.Module):
    """A model nobody named: its default name is this module and class."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layer(features), dim=-1)


@dataclass
class Small:
    store: Path
    public_key: Path
    credit: list[str]
    """Decision ids of the named model `credit` version 1, risk high: the first batch before
    `boundary`, the second after."""
    boundary: str
    tree: list[str]
    torch: list[str]
    outcomes: dict[str, Any]
    oversight: dict[str, str]
    disputed: str
    outcome_record: str


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    from tests.instrumentation_fixtures import instrumented

    folder = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "income": rng.normal(50, 15, 300)})
    target = (frame["income"] + rng.normal(0, 5, 300) > 50).astype(int)
    with instrumented(folder, SklearnInstrumentor, TorchInstrumentor) as process:
        credit = LogisticRegression().fit(frame, target)
        otel_ai_audit.register_model(credit, name="credit", version="1", risk="high")
        credit.predict(frame.head(4))
        first = otel_ai_audit.last_decision_ids()
        time.sleep(0.01)
        boundary = rfc3339_from_ns(time.time_ns())
        time.sleep(0.01)
        credit.predict(frame.tail(3))
        second = otel_ai_audit.last_decision_ids()
        tree = DecisionTreeClassifier(max_depth=3).fit(frame, target)
        tree.predict(frame.head(2))
        tree_ids = otel_ai_audit.last_decision_ids()
        with torch.no_grad():
            Scorer().eval()(torch.randn(2, 3))
        torch_ids = otel_ai_audit.last_decision_ids()
        outcomes = {first[0]: 1, first[1]: 0, second[0]: 1}
        outcome_records = [otel_ai_audit.record_outcome(decision, label=label)
                           for decision, label in outcomes.items()]
        oversight = {first[0]: "overridden", second[1]: "accepted"}
        for decision, action in oversight.items():
            otel_ai_audit.record_oversight(decision, reviewer="alice", action=action,
                                           role="analyst", reason="checked by hand")
        otel_ai_audit.record_dispute(first[2], reason="income misread", raised_by="applicant")
        process.close()
    return Small(process.store, Path(f"{process.store}.pub.pem"), first + second, boundary,
                 tree_ids, torch_ids, outcomes, oversight, first[2], outcome_records[0])


def decisions_json(store: Path, *filters: str) -> list[dict[str, Any]]:
    """`decisions --json` run in this process (many filters: no interpreter start each)."""
    result = CliRunner().invoke(main, ["decisions", str(store), "--limit", "0", "--json",
                                       *filters])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_lists_every_model_version(small: Small) -> None:
    result = run("models", str(small.store), "--json")
    assert result.returncode == 0, result.stderr
    listed = {(model["name"], model["version"]): model for model in json.loads(result.stdout)}
    inference = [event for _, _, event in events(small.store) if event["type"] == "inference"]
    expected = Counter((event["model"]["name"], event["model"]["version"])
                       for event in inference)
    assert {key: model["decisions"] for key, model in listed.items()} == expected
    credit = listed[("credit", "1")]
    assert credit["risk"] == ["high"] and len(credit["chains"]) == 1
    times = sorted(event["time"] for event in inference if event["model"]["name"] == "credit")
    assert (credit["first"], credit["last"]) == (times[0], times[-1])
    text = run("models", str(small.store))
    assert text.returncode == 0
    for (name, version), count in expected.items():
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(version)}\s+\S+\s+{count}\s",
                         text.stdout, re.MULTILINE), text.stdout


def test_unnamed_models_are_named_module_and_class(small: Small) -> None:
    names = {model["name"] for model in json.loads(run("models", str(small.store),
                                                       "--json").stdout)}
    assert "sklearn.tree.DecisionTreeClassifier" in names
    assert f"{__name__}.Scorer" in names
    assert qualified_name(HistGradientBoostingClassifier) == (
        "sklearn.ensemble.HistGradientBoostingClassifier")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    assert estimator_name(pipeline, qualified=True) == (
        "sklearn.pipeline.Pipeline(StandardScaler,LogisticRegression)")
    assert estimator_name(pipeline) == "Pipeline(StandardScaler,LogisticRegression)"


def test_decisions_filter_by_model_time_risk_outcome_and_oversight(small: Small) -> None:
    def ids(*filters: str) -> list[str]:
        return [decision["id"] for decision in decisions_json(small.store, *filters)]

    credit = small.credit
    assert ids("--model", "credit") == credit
    assert ids("--model", "credit", "--version", "1") == credit
    assert ids("--model", "credit", "--version", "2") == []
    assert ids("--model", "credit", "--since", small.boundary) == credit[4:]
    assert ids("--model", "credit", "--until", small.boundary) == credit[:4]
    assert set(ids("--risk", "high")) >= set(credit)
    assert ids("--outcome", "has") == list(small.outcomes)
    assert set(ids("--model", "credit", "--outcome", "none")) == set(credit) - set(small.outcomes)
    assert ids("--outcome", "1") == [d for d, label in small.outcomes.items() if label == 1]
    assert ids("--oversight", "has") == list(small.oversight)
    assert ids("--oversight", "overridden") == [
        d for d, action in small.oversight.items() if action == "overridden"]
    assert ids("--oversight", "none", "--model", "credit") == [
        d for d in credit if d not in small.oversight]
    assert len(ids("--limit", "3")) == 3
    listed = decisions_json(small.store, "--model", "credit")
    located = {event["id"]: (chain, seq) for chain, seq, event in events(small.store)}
    assert all((d["chain"]["id"], d["chain"]["seq"]) == located[d["id"]] for d in listed)
    first = next(d for d in listed if d["id"] == credit[0])
    assert first["outcome"] == 1 and first["oversight"] == ["overridden"]


def test_decisions_text_says_when_the_limit_cut(small: Small) -> None:
    result = run("decisions", str(small.store), "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^[0-9a-f]{32}", result.stdout, re.MULTILINE)) == 2
    assert "first 2 shown" in result.stdout
    everything = run("decisions", str(small.store), "--limit", "0")
    assert "shown" not in everything.stdout


def test_one_decision_shows_its_chain_proof_and_linked_records(small: Small) -> None:
    decision = small.credit[0]
    shown = json.loads(run("decisions", str(small.store), decision, "--json").stdout)
    chain, seq = next((c, s) for c, s, e in events(small.store) if e["id"] == decision)
    assert shown["chain"] == {"id": chain, "seq": seq}
    assert shown["event"]["model"]["name"] == "credit"
    linked = {(record["type"], record["event"]["decision_id"]) for record in shown["linked"]}
    assert linked == {("outcome", decision), ("oversight", decision)}
    text = run("decisions", str(small.store), decision)
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^chain\s+{chain} seq {seq}$", text.stdout, re.MULTILINE)
    assert re.search(r"^oversight\s+overridden by alice \(analyst\)", text.stdout, re.MULTILINE)
    assert re.search(r"^outcome\s+label 1 ", text.stdout, re.MULTILINE)
    prove = re.search(r"^prove\s+(otel-ai-audit prove .*)$", text.stdout, re.MULTILINE)
    assert prove is not None and shlex.split(prove.group(1)) == shlex.split(shown["prove"])
    words = shlex.split(prove.group(1))
    proof = small.store.parent / "proof.json"
    assert run(*words[1:], "--out", str(proof)).returncode == 0
    checked = run("verify-proof", str(proof), "--public-key", str(small.public_key))
    assert checked.returncode == 0 and f"seq {seq} of chain {chain}" in checked.stdout
    disputed = run("decisions", str(small.store), small.disputed)
    assert re.search(r"^dispute\s+disputed by applicant: income misread", disputed.stdout,
                     re.MULTILINE), disputed.stdout


def test_lookups_that_fail_say_what_exists(small: Small, tmp_path: Path) -> None:
    store = str(small.store)
    assert "no decision nope" in one_error_line(run("decisions", store, "nope"))
    assert f"is an outcome record about decision {small.credit[0]}" in one_error_line(
        run("decisions", store, small.outcome_record))
    unknown = one_error_line(run("decisions", store, "--model", "bc"))
    assert "no decisions of model 'bc'" in unknown and "credit" in unknown
    assert "not an ISO 8601 time" in one_error_line(run("decisions", store, "--since", "soon"))
    assert "no such store file" in one_error_line(run("models", str(tmp_path / "none.db")))
    window = ("--from", "2000-01-01", "--to", "2100-01-01")
    drift = one_error_line(run("drift", store, "--model", "bc", *window))
    assert "no decisions of model 'bc'" in drift and "credit" in drift
    torch_model = one_error_line(run("drift", store, "--model", f"{__name__}.Scorer", *window))
    assert "otel_ai_audit.register_reference(model, data)" in torch_model
    fairness = one_error_line(run("fairness", store, "--model", "sklearn.tree."
                                  "DecisionTreeClassifier", "--attribute", "age", *window))
    assert "has an outcome" in fairness
    assert "otel_ai_audit.record_outcome(decision_id, label=...)" in fairness
    system = one_error_line(run(
        "evidence", store, "--system", "nope", "--from", "2000-01-01T00:00:00Z", "--to",
        "2100-01-01T00:00:00Z", "--out", str(tmp_path / "bundle"), "--signing-key",
        f"{store}.key.pem", "--public-key", str(small.public_key)))
    opened = next(event for _, seq, event in events(small.store) if seq == 0)
    assert f"systems in {store}: {opened['service']['name']}" in system


def test_every_command_takes_store_first_and_still_accepts_store_option(small: Small) -> None:
    window = ("--model", "credit", "--from", "2000-01-01", "--to", "2100-01-01", "--json")
    positional = run("drift", str(small.store), *window)
    assert positional.returncode == 0 and positional.stderr == "", positional.stderr
    deprecated = run("drift", "--store", str(small.store), *window)
    assert deprecated.returncode == 0
    assert json.loads(deprecated.stdout) == json.loads(positional.stdout)
    (warning,) = deprecated.stderr.strip().splitlines()
    assert "--store is deprecated" in warning and "otel-ai-audit drift STORE" in warning
    twice = one_error_line(run("drift", str(small.store), "--store", str(small.store), *window))
    assert "give the store once" in twice
    environment = {key: value for key, value in os.environ.items()
                   if key != "OTEL_AI_AUDIT_STORE"}
    assert "give the STORE to ship" in one_error_line(
        run("ship", "--once", env=environment))


@pytest.mark.parametrize("module", ["pandas", "scipy", "sklearn", "matplotlib", "jinja2"])
def test_evidence_without_the_ml_extra_is_one_line(module: str, small: Small,
                                                   tmp_path: Path) -> None:
    result = without(module, "evidence", str(small.store), "--system", "x", "--from",
                     "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--out",
                     str(tmp_path / "b"), "--signing-key", f"{small.store}.key.pem")
    line = one_error_line(result)
    assert "pip install 'otel-ai-audit[ml]'" in line and module in line


@pytest.mark.parametrize("arguments", [
    ("drift", "{store}", "--model", "credit", "--from", "2000-01-01", "--to", "2100-01-01"),
    ("fairness", "{store}", "--model", "credit", "--attribute", "age", "--from", "2000-01-01",
     "--to", "2100-01-01"),
    ("demo", "--out", "{tmp}/demo"),
    ("document", "adult", "--out", "{tmp}/card"),
])
def test_commands_without_pandas_say_which_extra(arguments: tuple[str, ...], small: Small,
                                                 tmp_path: Path) -> None:
    filled = [word.format(store=small.store, tmp=tmp_path) for word in arguments]
    assert "pip install 'otel-ai-audit[ml]'" in one_error_line(without("pandas", *filled))


def without(module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where `module` cannot be imported, as on a base install."""
    script = (f"import sys; sys.modules[{module!r}] = None; sys.argv[0] = 'otel-ai-audit'; "
              "from otel_ai_audit.cli import main; main()")
    return subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True,
                          text=True, check=False, timeout=300)


def test_progress_shows_on_a_terminal_only(small: Small) -> None:
    arguments = ["verify", str(small.store), "--public-key", str(small.public_key)]
    piped = run(*arguments)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert "verifying" not in piped.stdout
    controller, terminal = pty.openpty()
    process = subprocess.Popen([CLI, *arguments], stdout=terminal, stderr=terminal,
                               env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"})
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert "verifying" in text and "OK: intact and complete" in text


# --- the demo's store -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run("demo", "--out", str(out), "--decisions", str(DEMO_DECISIONS), "--requests",
                 str(DEMO_REQUESTS))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "audit.db"


def test_models_on_the_demo_store(demo_store: Path) -> None:
    inference = [event for _, _, event in events(demo_store) if event["type"] == "inference"]
    expected = Counter((event["model"]["name"], event["model"]["version"])
                       for event in inference)
    listed = json.loads(run("models", str(demo_store), "--json").stdout)
    assert {(m["name"], m["version"]): m["decisions"] for m in listed} == expected
    assert sum(m["decisions"] for m in listed if m["name"] == "adult-income") == DEMO_DECISIONS
    text = run("models", str(demo_store))
    assert text.returncode == 0
    assert all(name in text.stdout for name, _ in expected)


def test_decisions_on_the_demo_store(demo_store: Path) -> None:
    records = events(demo_store)
    overridden = {event["decision_id"] for _, _, event in records
                  if event["type"] == "oversight" and event["action"] == "overridden"}
    assert overridden, "the demo's triage scenario records overrides"
    listed = decisions_json(demo_store, "--oversight", "overridden")
    assert {decision["id"] for decision in listed} == overridden
    model = listed[0]["model"]["name"]
    text = run("decisions", str(demo_store), "--oversight", "overridden", "--model", model,
               "--limit", "0")
    assert text.returncode == 0
    shown_ids = set(re.findall(r"^(\S+)\s+\d{4}-", text.stdout, re.MULTILINE))
    assert shown_ids == {d["id"] for d in listed if d["model"]["name"] == model}
    one = run("decisions", str(demo_store), listed[0]["id"])
    assert one.returncode == 0 and re.search(r"^oversight\s+overridden by ", one.stdout,
                                             re.MULTILINE)
    assert f"otel-ai-audit prove {demo_store} {listed[0]['id']}" in one.stdout
