"""Building (and checking) an evidence bundle for 1,000,000 decisions: time and peak memory.

The store is written with the writer directly (as `bench_core` does): a 48-hour window of
inference records with their inputs in full (age band and sex, for performance per subgroup),
human oversight on 3% and outcomes on 10% of them, and drift records every 6 hours. The bundle
is then built, and verified, each in a fresh Python process that reports its own peak resident
memory (VmHWM: `ru_maxrss` would report the forking benchmark process's size when that is
larger), so the numbers are those of the command a user runs.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Result
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import EventType, new_event

DECISIONS = int(os.environ.get("OTEL_AI_AUDIT_BENCH_EVIDENCE_DECISIONS", "1000000"))
SYSTEM = "bench-triage"
WINDOW_NS = 48 * 3600 * 1_000_000_000
PEAK_MEMORY_TARGET_MB = 1024.0
"""Bounded memory: a million decisions must not need more than a small server's spare RAM."""

_CHILD = """
import json, resource, sys, time
started = time.perf_counter()
{body}
try:  # this process image's own high-water mark; ru_maxrss keeps the forking parent's
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": time.perf_counter() - started, "peak_mb": peak_kb / 1024}}))
"""
_BUILD = """
from pathlib import Path
from otel_ai_audit.evidence import BundleRequest, Window, build_bundle
from otel_ai_audit.integrity.keys import SigningKey, load_trusted_keys
store, key, public, start, end, out = sys.argv[1:7]
bundle = build_bundle(BundleRequest(
    store=store, system="bench-triage", window=Window.parse(start, end), out=Path(out),
    signing_key=SigningKey.load(key), trusted_keys=load_trusted_keys([public]),
    subgroups=("age_band", "sex"), positive_labels=("1", "2")))
assert bundle.verified and bundle.decisions == int(sys.argv[7]), bundle
"""
_VERIFY = """
from otel_ai_audit.evidence import verify_bundle
from otel_ai_audit.integrity.keys import load_trusted_keys
check = verify_bundle(sys.argv[1], load_trusted_keys([sys.argv[2]]))
assert check.ok, check.problems
"""


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-evidence-") as directory:
        folder = Path(directory)
        key = SigningKey.generate()
        key.save(folder / "key.pem", folder / "key.pub.pem")
        start_ns = time.time_ns() - WINDOW_NS - 3_600_000_000_000
        started = time.perf_counter()
        write_store(folder / "audit.db", key, start_ns, DECISIONS)
        generated = time.perf_counter() - started
        build = _child(_BUILD, str(folder / "audit.db"), str(folder / "key.pem"),
                       str(folder / "key.pub.pem"), rfc3339_from_ns(start_ns),
                       rfc3339_from_ns(start_ns + WINDOW_NS), str(folder / "bundle"),
                       str(DECISIONS))
        size_mb = sum(p.stat().st_size for p in (folder / "bundle").rglob("*")
                      if p.is_file()) / 1e6
        check = _child(_VERIFY, str(folder / "bundle"), str(folder / "key.pub.pem"))
    label = f"{DECISIONS:,} decisions"
    return [
        Result("evidence: build bundle", build["seconds"], "s", higher_is_better=False,
               note=f"{label} in a 48 h window; store written in {generated:.0f}s"),
        Result("evidence: build throughput", DECISIONS / build["seconds"], "decisions/s"),
        Result("evidence: build peak memory", build["peak_mb"], "MB",
               target=PEAK_MEMORY_TARGET_MB, higher_is_better=False,
               note="VmHWM of the building process"),
        Result("evidence: bundle size", size_mb, "MB", higher_is_better=False),
        Result("evidence: verify-bundle", check["seconds"], "s", higher_is_better=False),
        Result("evidence: verify-bundle peak memory", check["peak_mb"], "MB",
               target=PEAK_MEMORY_TARGET_MB, higher_is_better=False),
    ]


def _child(body: str, *arguments: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", _CHILD.format(body=body), *arguments],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def write_store(path: Path, key: SigningKey, start_ns: int, count: int) -> None:
    """`count` decisions over 48 hours, with oversight, outcomes and drift, in one chain."""
    rng = random.Random(73)
    model = {"name": "triage-urgency", "version": "1.0.0", "fingerprint": "ab" * 32}
    writer = AuditWriter(str(path), key, service_name=SYSTEM, max_queue=50_000)
    step = WINDOW_NS // count
    writer.submit(new_event(EventType.DEPLOY, time_ns=start_ns, model=model))
    for index in range(count):
        at = start_ns + index * step
        urgency = rng.randint(1, 5)
        decision = new_event(
            EventType.INFERENCE, time_ns=at, model=model, operation="predict",
            input={"policy": "full", "value": {
                "age_band": rng.choice(("0-17", "18-39", "40-64", "65+")),
                "sex": rng.choice("FM"), "heart_rate": rng.randint(50, 140),
                "spo2": rng.randint(85, 100)}},
            output={"policy": "full", "value": urgency},
            risk={"level": "high" if urgency <= 2 else "low"},
            trace={"trace_id": f"{rng.getrandbits(128):032x}",
                   "span_id": f"{rng.getrandbits(64):016x}"})
        writer.submit(decision)
        if rng.random() < 0.03:
            writer.submit(new_event(EventType.OVERSIGHT, time_ns=at + 1000,
                                    decision_id=decision["id"], action="overridden",
                                    reviewer={"id": "nurse-1", "role": "triage nurse"}))
        if rng.random() < 0.10:
            writer.submit(new_event(EventType.OUTCOME, time_ns=at + 2000,
                                    decision_id=decision["id"],
                                    label=max(1, min(5, urgency + rng.choice((-1, 0, 0, 1))))))
        if index and index % (count // 8) == 0:
            window = {"start": rfc3339_from_ns(at - WINDOW_NS // 8), "end": rfc3339_from_ns(at)}
            for feature in ("age_band", "sex", "heart_rate", "spo2"):
                score = rng.random() * 0.3
                writer.submit(new_event(EventType.DRIFT, time_ns=at + 3000, model=model,
                                        window=window, drift={
                                            "feature": feature, "method": "psi", "psi": score,
                                            "score": score, "threshold": 0.1,
                                            "drifted": score > 0.1}))
    writer.close()
