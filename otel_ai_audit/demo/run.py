"""`otel-ai-audit demo`: the main job on the embedded store, end to end.

Trains a classifier on UCI Adult, records one audit decision per scored applicant in the
embedded store (hash-chained, checkpoints signed with a fresh demo key), then verifies the
store the way an auditor would.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, TextIO

from otel_ai_audit.demo.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.integrity.keys import SigningKey, load_trusted_keys
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import canonical_json, to_json_data
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier


def run_demo(out: Path, data_dir: str | None, decisions: int, log: TextIO) -> Report:
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "audit.db"
    for stale in out.glob("audit.db*"):
        stale.unlink()
    key = SigningKey.generate()
    private_path, public_path = out / "demo-signing.key.pem", out / "demo-signing.pub.pem"
    private_path.unlink(missing_ok=True)
    key.save(private_path, public_path)

    train, test = load_split("train", data_dir), load_split("test", data_dir)
    features = NUMERIC + CATEGORICAL
    model = adult_pipeline()
    started = time.perf_counter()
    model.fit(train.frame[features], train.frame[TARGET])
    log.write(f"trained {type(model[-1]).__name__} on {len(train.frame)} rows of {train.path} "
              f"in {time.perf_counter() - started:.1f}s\n")
    fingerprint = hashlib.sha256(canonical_json(to_json_data(
        {"coef": model[-1].coef_, "intercept": model[-1].intercept_}))).hexdigest()

    writer = AuditWriter(str(store_path), key, service_name="otel-ai-audit-demo")
    writer.submit(new_event(
        EventType.TRAINING, model=_identity(fingerprint),
        training={"dataset": {"path": train.path.name, "sha256": train.sha256,
                              "rows": len(train.frame)},
                  "hyperparameters": to_json_data(model[-1].get_params())}))
    sample = test.frame.head(decisions)
    scores = model.predict_proba(sample[features])[:, 1]
    for (_, row), score in zip(sample.iterrows(), scores, strict=True):
        writer.submit(new_event(
            EventType.INFERENCE, model=_identity(fingerprint),
            input={"hash": hashlib.sha256(canonical_json(to_json_data(row[features].to_dict())))
                   .hexdigest(), "policy": "hash"},
            output={"label": int(score >= 0.5), "score": float(score)},
            risk={"level": "high" if 0.4 <= score <= 0.6 else "low"}))
    writer.close()
    log.write(f"recorded {len(sample) + 1} audit records in {store_path}\n")

    with AuditStore(store_path, create=False, readonly=True) as store:
        report = Verifier(load_trusted_keys([public_path])).verify(store)
    log.write(f"verify: {'OK, intact and complete' if report.ok else 'FAILED'} "
              f"({report.record_count} records in {len(report.chains)} chain(s))\n")
    log.write("check it yourself:\n"
              f"  otel-ai-audit verify {store_path} --public-key {public_path}\n")
    return report


def _identity(fingerprint: str) -> dict[str, Any]:
    return {"name": "adult-income", "version": "1.0.0", "fingerprint": fingerprint}
