"""`otel-ai-audit demo`: the three scenarios end to end on the embedded store.

1. Document a trained model: the UCI Adult classifier is trained under the scikit-learn
   instrumentation (its training record is captured at `fit`), its model card is written and
   recorded, and applicants from adult.test are scored as audited decisions.
2. An audited churn API: the unmodified `examples/churn_api` app served by uvicorn under
   `opentelemetry-instrument`, loaded by its load script, stopped with SIGTERM.
3. A 48-hour evidence bundle for a high-risk triage system (`examples/triage`), built and
   verified offline.

Both examples are in the package too (`otel_ai_audit/demo/churn_api` and `.../triage` link to
them, and the wheel carries them), so the demo runs from any folder after `pip install`.

Every output lands under one folder: one store that all three scenarios write to (each process
its own chain), its public key, the model card, the bundle. The demo ends by verifying the
store the way an auditor would.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from otel_ai_audit import runtime
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, load_split
from otel_ai_audit.demo.churn import run_churn_api
from otel_ai_audit.integrity.keys import SigningKey, load_trusted_keys
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier

STORE_NAME = "audit.db"
KEY_PREFIX = "demo-signing"


@dataclass
class DemoResult:
    report: Report
    outputs: dict[str, Path] = field(default_factory=dict)
    bundle_ok: bool = True


def run_demo(out: Path, data_dir: str | None, decisions: int, requests: int,
             log: TextIO) -> DemoResult:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_NAME
    for stale in out.glob(f"{STORE_NAME}*"):
        stale.unlink()
    private_key, public_key = out / f"{KEY_PREFIX}.key.pem", out / f"{KEY_PREFIX}.pub.pem"
    private_key.unlink(missing_ok=True)
    public_key.unlink(missing_ok=True)
    SigningKey.generate().save(private_key, public_key)
    result = DemoResult(Report(str(store), "demo"),
                        {"store": store, "public key": public_key})

    _step(log, "1/3 document a trained model (UCI Adult)", started)
    result.outputs.update(_adult(out, store, private_key, data_dir, decisions, log))
    _step(log, "2/3 audited churn API (FastAPI under opentelemetry-instrument)", started)
    run_churn_api(store, private_key, requests, log)
    _step(log, "3/3 48-hour evidence bundle (high-risk triage system)", started)
    bundle, result.bundle_ok = _triage(out, store, private_key, public_key, log)
    result.outputs["evidence bundle"] = bundle

    _step(log, "verification", started)
    with AuditStore(store, create=False, readonly=True) as opened:
        result.report = Verifier(load_trusted_keys([public_key])).verify(opened)
        types = Counter(event_type for _, event_type in _event_types(opened))
    report = result.report
    log.write(f"store {store}: {report.record_count} records in {len(report.chains)} chains "
              f"({', '.join(f'{count} {name}' for name, count in types.most_common())})\n")
    log.write(f"verify: {'OK: intact, complete and signed' if report.ok else 'FAILED'}"
              f"{'' if report.ok else f' ({len(report.findings)} findings)'}\n")
    log.write(f"evidence bundle: {'OK' if result.bundle_ok else 'FAILED'} "
              "(manifest, signature, chain extract and proofs)\n")
    log.write("outputs:\n" + "".join(f"  {name:16} {path}\n"
                                     for name, path in result.outputs.items()))
    log.write("check it yourself:\n"
              f"  otel-ai-audit verify {store} --public-key {public_key}\n"
              f"  otel-ai-audit verify-bundle {bundle} --public-key {public_key}\n"
              f"demo finished in {time.perf_counter() - started:.0f} s\n")
    return result


def _step(log: TextIO, title: str, started: float) -> None:
    log.write(f"\n== {title}  [{time.perf_counter() - started:.0f} s]\n")
    log.flush()


def _adult(out: Path, store: Path, private_key: Path, data_dir: str | None, decisions: int,
           log: TextIO) -> dict[str, Path]:
    """Train and document the Adult classifier, then score applicants as audited decisions."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_ai_audit.document.adult import MODEL_NAME, document_adult
    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    documented = document_adult(data_dir, out / "model-card", store, signing_key=private_key)
    card = documented.card
    log.write(f"model card of {card.details.name} {card.details.version} "
              f"(accuracy {card.metrics['accuracy'].value:.3f}) in {out / 'model-card'}\n")
    applicants = load_split("test", data_dir).frame.head(decisions)[NUMERIC + CATEGORICAL]
    provider = TracerProvider()
    runtime.configure(provider, store=str(store), signing_key=str(private_key),
                      model_name=MODEL_NAME, model_version=card.details.version)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        for start in range(0, len(applicants), 100):
            documented.model.predict_proba(applicants.iloc[start:start + 100])
    finally:
        instrumentor.uninstrument()
        runtime.shutdown()
        provider.shutdown()
    log.write(f"scored {len(applicants)} applicants of adult.test: one audited decision each\n")
    return {"model card": out / "model-card" / "model-card.html"}


def _triage(out: Path, store: Path, private_key: Path, public_key: Path,
            log: TextIO) -> tuple[Path, bool]:
    """Play the triage system's 48 hours into the store, answer the authority's request for
    them with an evidence bundle, and check the bundle offline."""
    from otel_ai_audit.demo.triage import scenario as scenario_module
    from otel_ai_audit.evidence.verify import verify_bundle

    scenario = scenario_module.run_triage_scenario(out / "triage", store=store,
                                                   keys=(private_key, public_key))
    log.write(f"triage system {scenario_module.SYSTEM}: {scenario.decisions} decisions, "
              f"{scenario.overrides} overridden by nurses, a dispute, a rollout of v2, an "
              f"incident and a rollback, from {scenario.start} to {scenario.end}\n")
    bundle_path = out / "evidence-bundle"
    if bundle_path.exists():
        shutil.rmtree(bundle_path)
    bundle = scenario_module.answer_request(scenario, bundle_path)
    check = verify_bundle(bundle.path, load_trusted_keys([public_key]))
    log.write(f"evidence bundle of {bundle.decisions} decisions in {bundle.path}: report.html, "
              f"report.pdf, decision log, proofs, signed manifest\n")
    for problem in check.problems:
        log.write(f"  FAIL {problem}\n")
    return bundle.path, check.ok


def _event_types(store: AuditStore) -> list[tuple[str, str]]:
    import json

    return [(chain, json.loads(data)["event"]["type"]) for chain in store.chain_ids()
            for _, data in store.records(chain)]
