"""External anchors: what an anchor costs, and what `verify --anchors` adds to `verify`.

Against the real S3 server with Object Lock (versitygw) and RFC 3161 TSA the tests use:

* CPU per anchor run (build + sign + time-stamp + publish, this process's CPU) and its wall
  time, for the minute anchors (a few chains changed) and for the daily full one;
* bytes per anchor per chain listed (the published object);
* plain `verify` and `verify --anchors` of the same 1,000,000-record store in the same run
  (four chains, checkpoints every 1,000), and their ratio;
* the decision hot path (an audited single-row scikit-learn predict, calling thread) while the
  anchoring thread runs every second, with S3 up and then down, in the same process: p99 ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Result
from benchmarks.bench_core import inference_events
from otel_ai_audit.anchor.publish import Anchorer, published_body
from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.timestamp import load_certificate_chain
from otel_ai_audit.anchor.verify import read_anchor_history
from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier

RECORDS = 1_000_000
CHAINS = 4
EVERY = 1000
ANCHOR_RUNS = 20
P99_TARGET = 1.2
HOT_PATH_SECONDS = 60.0


def run() -> list[Result]:
    from tests.services.s3 import S3Service
    from tests.services.tsa import TimestampAuthorityService

    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-anchor-") as folder:
        work = Path(folder)
        s3 = S3Service(work / "s3").start()
        tsa = TimestampAuthorityService(work / "tsa").start()
        try:
            return _run(work, s3, tsa)
        finally:
            s3.stop()
            tsa.stop()


def _client(s3: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                        config=Config(s3={"addressing_style": "path"}))


def _run(work: Path, s3: Any, tsa: Any) -> list[Result]:
    key = SigningKey.generate()
    client = _client(s3)
    client.create_bucket(Bucket="bench", ObjectLockEnabledForBucket=True)
    bucket = AnchorBucket("s3://bench/trail", client=client)
    path = work / "audit.db"
    chains = _write_store(path, key)
    results = _anchor_costs(path, key, bucket, tsa.url, chains)
    results += _verify_costs(path, key, bucket, load_certificate_chain(tsa.certchain_path))
    results += _hot_path(work, s3, tsa)
    return results


def _write_store(path: Path, key: SigningKey) -> list[Chain]:
    """CHAINS chains of RECORDS records in all, closed, checkpointed every EVERY records."""
    chains = [Chain() for _ in range(CHAINS)]
    per_chain = RECORDS // CHAINS
    start = time.time_ns()
    with AuditStore(path) as store:
        store.put_public_key(key.key_id, key.public_pem)
        for block in range(0, per_chain, 50_000):
            events = inference_events(min(50_000, per_chain - block), start + block * 20_000)
            for chain in chains:
                batch = []
                for index, event in enumerate(events):
                    batch.append(chain.seal(event, start + (block + index) * 20_000))
                    if chain.size % EVERY == 0:
                        store.write(batch, chain.checkpoint(key, time.time_ns()))
                        batch = []
                if batch:
                    store.write(batch)
        for chain in chains:
            store.write([], chain.checkpoint(key, time.time_ns(), closed=True))
    return chains


def _anchor_costs(path: Path, key: SigningKey, bucket: AnchorBucket, tsa_url: str,
                  chains: list[Chain]) -> list[Result]:
    """The first (daily, every chain) anchor, then minute anchors after one new chain each."""
    with AuditStore(path) as store:
        anchorer = Anchorer(store, key, bucket, tsa_url=tsa_url)
        cpu, wall = time.process_time(), time.perf_counter()
        first = anchorer.run()
        daily_cpu, daily_wall = time.process_time() - cpu, time.perf_counter() - wall
        cpus, walls = [], []
        for _ in range(ANCHOR_RUNS):
            extra = Chain()
            store.write([extra.seal(inference_events(1, time.time_ns())[0], time.time_ns())],
                        extra.checkpoint(key, time.time_ns(), closed=True))
            cpu, wall = time.process_time(), time.perf_counter()
            result = anchorer.run()
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
            if result.error or result.pending:
                raise RuntimeError(f"anchoring failed in the benchmark: {result}")
        published = store.anchors()
    if first.error:
        raise RuntimeError(f"anchoring failed in the benchmark: {first.error}")
    daily_bytes = len(published_body(published[0])) / (len(chains))
    minute_bytes = statistics.mean(len(published_body(a)) for a in published[1:])
    return [
        Result("anchor: daily, every chain (CPU)", daily_cpu * 1000, "ms",
               note=f"wall {daily_wall * 1000:.0f} ms incl. TSA and S3 round trips"),
        Result("anchor: one chain changed (CPU)", statistics.median(cpus) * 1000, "ms",
               note=f"median of {ANCHOR_RUNS}; wall {statistics.median(walls) * 1000:.0f} ms"),
        Result("anchor: bytes per chain listed", daily_bytes, "bytes",
               note=f"the daily anchor of {len(chains)} chains, signature and RFC 3161 token "
                    f"included; a one-chain anchor is {minute_bytes:,.0f} bytes"),
    ]


def _verify_costs(path: Path, key: SigningKey, bucket: AnchorBucket,
                  tsa_chain: list[Any]) -> list[Result]:
    trusted = {key.key_id: key.public_key}
    plain, anchored = [], []
    for _ in range(2):
        started = time.perf_counter()
        with AuditStore(path, create=False, readonly=True) as store:
            report = Verifier(trusted).verify(store)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        with AuditStore(path, create=False, readonly=True) as store:
            history = read_anchor_history(bucket, trusted, tsa_chain=tsa_chain,
                                          store_id=store.known_store_id())
            checked = Verifier(trusted, anchors=history).verify(store)
        anchored.append(time.perf_counter() - started)
        if report.findings or checked.findings:
            raise RuntimeError(f"the benchmark store does not verify: "
                               f"{(report.findings + checked.findings)[:3]}")
    return [
        Result(f"verify: {RECORDS:,} records", min(plain), "s"),
        Result(f"verify --anchors: {RECORDS:,} records", min(anchored), "s",
               note=f"{len(history.anchors)} anchors; {min(anchored) / min(plain):.2f}x plain "
                    "verify, best of 2 each, interleaved"),
    ]


HOT_PATH_APP = """
import json, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
import otel_ai_audit
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
otel_ai_audit.configure()
SklearnInstrumentor().instrument()
rng = np.random.default_rng(0)
model = LogisticRegression().fit(rng.normal(size=(200, 8)), rng.integers(0, 2, 200))
row = rng.normal(size=(1, 8))
for phase in sys.stdin:
    deadline = time.monotonic() + float(phase)
    samples = []
    while time.monotonic() < deadline:
        started = time.thread_time_ns()
        model.predict(row)
        samples.append(time.thread_time_ns() - started)
        time.sleep(0.001)
    print(json.dumps(samples), flush=True)
"""


def _hot_path(work: Path, s3: Any, tsa: Any) -> list[Result]:
    """p99 of the calling thread's CPU per decision, anchoring healthy vs S3 down."""
    key = SigningKey.generate()
    key.save(work / "hot.key.pem", work / "hot.pub.pem")
    client = _client(s3)
    client.create_bucket(Bucket="hot", ObjectLockEnabledForBucket=True)
    env = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
           "OTEL_AI_AUDIT_STORE": str(work / "hot.db"),
           "OTEL_AI_AUDIT_SIGNING_KEY": str(work / "hot.key.pem"),
           "OTEL_AI_AUDIT_ANCHOR_S3": "s3://hot/trail",
           "OTEL_AI_AUDIT_ANCHOR_S3_ENDPOINT": s3.endpoint,
           "OTEL_AI_AUDIT_ANCHOR_INTERVAL": "1", "OTEL_AI_AUDIT_TSA_URL": tsa.url,
           "PATH": "/usr/bin:/bin", "HOME": str(work)}
    app = subprocess.Popen([sys.executable, "-c", HOT_PATH_APP], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert app.stdin is not None and app.stdout is not None

    def phase() -> list[int]:
        assert app.stdin is not None and app.stdout is not None
        app.stdin.write(f"{HOT_PATH_SECONDS}\n")
        app.stdin.flush()
        import json

        return list(json.loads(app.stdout.readline()))

    phase()  # warm-up
    healthy = phase()
    s3.stop()
    try:
        down = phase()
    finally:
        s3.start()
    app.stdin.close()
    app.wait(timeout=60)
    p99_up, p99_down = _p99(healthy), _p99(down)
    return [Result("hot path p99 with S3 down / up", p99_down / p99_up, "ratio", P99_TARGET,
                   higher_is_better=False,
                   note=f"calling thread CPU per audited predict: p99 {p99_up / 1000:.0f} us "
                        f"(anchoring healthy) vs {p99_down / 1000:.0f} us (S3 down), "
                        f"{HOT_PATH_SECONDS:.0f} s each")]


def _p99(samples: list[int]) -> float:
    ordered = sorted(samples)
    return float(ordered[int(len(ordered) * 0.99)])
