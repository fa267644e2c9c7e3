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
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from tests.audit_fixtures import edit_event
from tests.integration.test_otlp_collector_path import Route
from tests.integration.test_zero_code import BIN, NO_EXPORT
from tests.services.base import REPO_ROOT, wait_until
from tests.services.elasticsearch import ElasticsearchService
from tests.services.s3 import S3Service
from tests.services.splunk_hec import SplunkHec, Token, serve
from tests.services.tsa import TimestampAuthorityService

README = REPO_ROOT / "README.md"
INSTRUMENT = "Instrument a model, with no change to its code"
VERIFY = "Verify a store"
DOCUMENT = "Document a model"
FIND = "Find models and decisions"
SHIP = "Ship to Elasticsearch, and verify there"
SPLUNK = "Ship to Splunk HEC, or through an OpenTelemetry Collector"
MONITOR = "Monitor drift and fairness"
ANCHORS = "Prove nothing was left out: external anchors"
EVIDENCE = "Answer an authority's request: the evidence bundle"
RUN_HERE = (INSTRUMENT, DOCUMENT, VERIFY, FIND, SHIP, SPLUNK, MONITOR, ANCHORS, EVIDENCE)
NOT_RUN_HERE = {
    "Two commands": "`make demo` runs from a bare clone in test_demo.py; `make test` is this suite",
    "What you get": "a diagram",
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


def run_line() -> str:
    """The zero-code block's command that runs the service, for a block's "run your service"."""
    (line,) = [line.split("#")[0].strip() for line in the_block(INSTRUMENT, "bash").splitlines()
               if line.startswith("opentelemetry-instrument")]
    return line


def test_the_zero_code_block(tmp_path: Path) -> None:
    result = shell(STANDS_FOR_INSTALL.sub(":", the_block(INSTRUMENT, "bash")), tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(events(tmp_path / "otel-ai-audit.db", "inference")) == DECISIONS
    verified(tmp_path / "otel-ai-audit.db", tmp_path / "audit-signing.pub.pem")


def test_the_verify_block(tmp_path: Path) -> None:
    """Its "run your service" is the zero-code block's own command, and DECISION_ID one of the
    decisions that made; each command must succeed (verify exits 1 on any finding)."""
    (tmp_path / "first_decision.py").write_text(
        "import sqlite3\n"
        "print(sqlite3.connect('otel-ai-audit.db').execute(\n"
        "    \"SELECT record_id FROM records WHERE type = 'inference'\").fetchone()[0])\n")
    code = (the_block(VERIFY, "bash").replace("# ... run your service ...", run_line())
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


HEC_TOKEN = "00000000-0000-0000-0000-0000000ead3e"
"""The HEC token the stand-in accepts, in the place of the block's `...`."""
LATER = re.compile(r"^# \.\.\. run your service; later, .*\n(?:# .*\n)*", re.M)
"""The Splunk block's "run your service; later, export ...": its two halves run around it."""


def archived_all_of(route: Route, store: Path) -> bool:
    """The archive Collector's file holds a span for every record, checkpoint and public key of
    the store (by the document ids the spans carry): the gateway forwards them after the app has
    left."""
    with sqlite3.connect(store) as db:
        wanted = {f"{chain}:{seq}"
                  for chain, seq in db.execute("SELECT chain_id, seq FROM records")}
        wanted |= {f"{chain}:checkpoint:{index}"
                   for chain, index in db.execute("SELECT chain_id, idx FROM checkpoints")}
        wanted |= {f"key:{key_id}" for (key_id,) in db.execute("SELECT key_id FROM public_keys")}
    if not route.archived.exists():
        return False
    text = route.archived.read_text()
    return all(f'"{document_id}"' in text for document_id in wanted)


def tampered_splunk_export(export: Path) -> Path:
    """A copy of the export with one record's `_raw` edited (its output score)."""
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    result = next(line["result"] for line in lines
                  if line["result"]["sourcetype"] == "otel_ai_audit:record")
    result["_raw"] = edit_event(result["_raw"].encode(), output={"score": 0.99}).decode()
    copy = export.with_name(f"tampered-{export.name}")
    copy.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return copy


def tampered_archive(archive: Path) -> Path:
    """A copy of the archive with one record span's `ai_audit.record` edited (its output score)."""
    documents = [json.loads(line) for line in archive.read_text().splitlines()]
    record = next(attribute["value"] for document in documents
                  for resource in document["resourceSpans"]
                  for scope in resource["scopeSpans"] for span in scope["spans"]
                  for attribute in span["attributes"] if attribute["key"] == "ai_audit.record")
    record["stringValue"] = edit_event(record["stringValue"].encode(),
                                       output={"score": 0.99}).decode()
    copy = archive.with_name(f"tampered-{archive.name}")
    copy.write_text("".join(json.dumps(document) + "\n" for document in documents))
    return copy


def test_the_splunk_and_collector_block(tmp_path: Path) -> None:
    """After the zero-code block, in its shell: the service runs again (the zero-code block's
    command in "run your service"'s place) shipping to the HEC stand-in (its URL and a token it
    accepts for the example's) and to a real Collector gateway (its audit receiver for
    otel-gateway:4319) that forwards to an archive Collector. Then, for "later, export ...":
    Splunk's search export of what HEC indexed is the stand-in's export (the same documented
    shape; no search API here) and archive.jsonl the archive's `file` exporter output. The two
    verify lines then pass as written, and fail (exit 1) on a copy with one record edited; the
    import line copies the whole archive into a store."""
    store, archive = tmp_path / "otel-ai-audit.db", tmp_path / "archive.jsonl"
    route = Route(tmp_path / "collectors").start()
    try:
        with serve(SplunkHec(tokens={HEC_TOKEN: Token()})) as hec:
            block = (the_block(SPLUNK, "bash").replace("https://splunk.example:8088", hec.url)
                     .replace("_TOKEN=...", f"_TOKEN={HEC_TOKEN}")
                     .replace("http://otel-gateway:4319", route.audit_endpoint))
            ship, verify = LATER.split(block)
            result = shell(STANDS_FOR_INSTALL.sub(":", the_block(INSTRUMENT, "bash"))
                           + ship + run_line() + "\n", tmp_path)
            assert result.returncode == 0, result.stdout + result.stderr
            export = hec.export(tmp_path / "audit-export.json")
        assert wait_until(lambda: archived_all_of(route, store), 60), route.gateway.log_tail()
    finally:
        route.stop()  # the archive's file exporter flushed and closed
    shutil.copy(route.archived, archive)
    result = shell(verify, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(store) as db:
        (stored,) = db.execute("SELECT count(*) FROM records").fetchone()
    # Both copies hold the whole store: the zero-code block's run and this one, each closed.
    assert result.stdout.count(f"2 chain(s), {stored} record(s), 2 closed;") == 2, result.stdout
    assert result.stdout.count("OK: intact and complete") == 2, result.stdout
    assert f"imported {stored} record(s) of 2 chain(s)" in result.stdout, result.stdout
    for original, tampered in ((export.name, tampered_splunk_export(export).name),
                               (archive.name, tampered_archive(archive).name)):
        (line,) = [line for line in verify.splitlines()
                   if line.startswith("otel-ai-audit verify") and f" {original} " in line]
        result = shell(line.replace(original, tampered), tmp_path)
        assert result.returncode == 1 and "record_modified" in result.stdout, result.stdout


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


ADULT_DECISIONS = 1500
ADULT_APP = f"""\
import otel_ai_audit
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split

otel_ai_audit.configure()
features = NUMERIC + CATEGORICAL
train, test = load_split("train").frame.head(6000), load_split("test").frame.head({ADULT_DECISIONS})
model = adult_pipeline().fit(train[features], train[TARGET])
otel_ai_audit.register_model(model, name="adult-income", version="1.0")
model.predict(test[features])
for decision_id, label in zip(otel_ai_audit.last_decision_ids(), test[TARGET], strict=True):
    otel_ai_audit.record_outcome(decision_id, label=int(label))
"""
"""The scoring program the monitoring block reads: the UCI Adult classifier (shipped with the
package) trained under the instrumentation, scoring applicants, whose true incomes arrive as
outcomes; its settings are the environment's, as the zero-code block exported them."""


def test_the_monitoring_block(tmp_path: Path) -> None:
    """On the store ADULT_APP just made: drift over the last four weeks day by day (one day has
    decisions), fairness per slice of sex and race recorded into the trail, which verifies."""
    keygen(tmp_path)
    signing_key = {"OTEL_AI_AUDIT_SIGNING_KEY": str(tmp_path / "audit-signing.key.pem")}
    (tmp_path / "adult_app.py").write_text(ADULT_APP)
    made = run(["python", "adult_app.py"], tmp_path, **signing_key)
    assert made.returncode == 0, made.stderr
    result = shell(the_block(MONITOR, "bash"), tmp_path, **signing_key)
    assert result.returncode == 0, result.stdout + result.stderr
    drift_line, fairness_line = [line for line in result.stdout.splitlines()
                                 if "model adult-income version 1.0" in line]
    assert f"{ADULT_DECISIONS} decisions" in drift_line, result.stdout
    assert f"{ADULT_DECISIONS} with an outcome" in fairness_line, result.stdout
    recorded = events(tmp_path / "otel-ai-audit.db", "fairness")
    assert {event["fairness"]["attribute"] for event in recorded} == {"sex", "race"}
    verified(tmp_path / "otel-ai-audit.db", tmp_path / "audit-signing.pub.pem")


def test_the_anchors_block(tmp_path: Path, s3_service: S3Service,
                           tsa_service: TimestampAuthorityService) -> None:
    """After the zero-code block, in its shell: the service runs again with anchoring on, and
    the store verifies against its anchors on the real S3 server with Object Lock and the real
    TSA. Stand-ins: a fresh bucket (made with Object Lock, as docs/deploy.md sets it up) for
    the example's, the test TSA's URL and its certificate chain (the file a TSA publishes) for
    tsa.example's, and the S3 server's endpoint and credentials in the variables a user of an
    S3-compatible store sets."""
    bucket = f"readme-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_service.endpoint, region_name=s3_service.region,
                 aws_access_key_id=s3_service.access_key,
                 aws_secret_access_key=s3_service.secret_key,
                 config=Config(s3={"addressing_style": "path"}),
                 ).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    shutil.copy(tsa_service.certchain_path, tmp_path / "tsa-chain.pem")
    code = (STANDS_FOR_INSTALL.sub(":", the_block(INSTRUMENT, "bash"))
            + STANDS_FOR_INSTALL.sub(":", the_block(ANCHORS, "bash"))
            .replace("s3://my-anchor-bucket/", f"s3://{bucket}/")
            .replace("https://tsa.example/tsr", tsa_service.url)
            .replace("# ... run your service; later, or as an auditor:", run_line()))
    result = shell(code, tmp_path, OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT=s3_service.endpoint,
                   AWS_ACCESS_KEY_ID=s3_service.access_key,
                   AWS_SECRET_ACCESS_KEY=s3_service.secret_key,
                   AWS_DEFAULT_REGION=s3_service.region)
    assert result.returncode == 0, result.stdout + result.stderr
    # Both runs' chains: the one made before anchoring was on is witnessed by the later anchors.
    assert re.search(rf"anchors: [1-9][0-9]* at s3://{bucket}/credit-scoring, .*, "
                     r"2 chain\(s\) witnessed$", result.stdout, re.M), result.stdout
    assert "OK" in result.stdout.splitlines()[-1], result.stdout


TRIAGE_APP = """\
from pathlib import Path
from otel_ai_audit.demo.triage.scenario import run_triage_scenario

keys = Path("audit-signing.key.pem"), Path("audit-signing.pub.pem")
scenario = run_triage_scenario("triage", store=Path("audit.db"), keys=keys)
print(scenario.disputed_decision)
"""
"""The system the evidence block answers for: the triage scenario (in the package, as the demo
runs it) playing its 48 hours into audit.db, signed with the user's key; prints the id of the
decision the patient disputed, the one a request would name."""


def test_the_evidence_block(tmp_path: Path) -> None:
    """On the store TRIAGE_APP just made: the bundle of the last 48 hours, with the disputed
    decision's proof (its id in DECISION_ID's place), checked offline with both keys."""
    keygen(tmp_path)
    (tmp_path / "triage_app.py").write_text(TRIAGE_APP)
    made = run(["python", "triage_app.py"], tmp_path)
    assert made.returncode == 0, made.stderr
    disputed = made.stdout.strip()
    assert disputed, "the scenario's 48 hours had no disputed decision"
    result = shell(the_block(EVIDENCE, "bash").replace("DECISION_ID", disputed), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    decisions = len(events(tmp_path / "audit.db", "inference"))
    assert f"written to bundle: {decisions} decision(s)" in result.stdout, result.stdout
    assert (tmp_path / "bundle" / "integrity" / "proofs" / f"{disputed}.json").is_file()
    assert {"report.html", "report.pdf"} <= {path.name for path in (tmp_path / "bundle").iterdir()}
    assert result.stdout.splitlines()[-1].startswith("OK: system triage-assist"), result.stdout
