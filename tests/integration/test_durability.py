"""Nothing a caller was answered is lost: decisions across SIGKILL, for one process, `os.fork`
children and `multiprocessing` workers (fork and spawn), at `process` and `async` durability.

Each app scores one row at a time with a real scikit-learn model and prints an acknowledgement
(its pid and the decision id) after each `predict()` returns. The whole process group is killed
with SIGKILL at a random moment; every acknowledgement printed before that is then looked up in
the store. Under `process` durability every one must be there once `otel-ai-audit recover` has
done what the next start of the service does (commit the journals the killed processes left),
and the store verifies with no finding but the killed chains' `chain_not_closed`; under `async`
some may be missing (the queue of the last moments), but every process that acknowledged a
decision has a chain.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.store.journal import unrecovered
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier

ROOT = Path(__file__).resolve().parents[2]
APP = textwrap.dedent("""
    import multiprocessing, os, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    import otel_ai_audit
    from otel_ai_audit.decisions import last_decision_ids
    from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

    rng = np.random.default_rng(7)
    model = LogisticRegression().fit(rng.normal(size=(300, 4)), rng.integers(0, 2, 300))
    otel_ai_audit.configure(store=os.environ["STORE"], signing_key=os.environ["KEY"],
                            durability=os.environ["DURABILITY"])
    SklearnInstrumentor().instrument()

    def loop():
        rows = np.random.default_rng(os.getpid()).normal(size=(100_000, 4))
        for row in rows:
            model.predict(row[None, :])
            os.write(1, f"ACK {os.getpid()} {last_decision_ids()[0]}\\n".encode())

    if __name__ == "__main__":
        mode = sys.argv[1]
        if mode == "fork":
            for _ in range(3):
                if os.fork() == 0:
                    loop()
                    os._exit(0)
        elif mode.startswith("mp-"):
            context = multiprocessing.get_context(mode[3:])
            for _ in range(2):
                context.Process(target=loop).start()
        loop()
""")
PROCESSES = {"single": 1, "fork": 4, "mp-fork": 3, "mp-spawn": 3}


def run_and_kill(tmp_path: Path, mode: str, durability: str,
                 ) -> tuple[dict[str, int], Path, SigningKey]:
    """Start the app, SIGKILL its process group once every process acknowledged decisions;
    every acknowledged decision id, with the pid that made it."""
    key = SigningKey.generate()
    key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    script = tmp_path / "app.py"
    script.write_text(APP)
    store = tmp_path / "audit.db"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "STORE": str(store), "KEY": str(tmp_path / "k.key.pem"), "DURABILITY": durability,
           "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, str(script), mode], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert app.stdout is not None
    acks: dict[str, int] = {}
    per_process: Counter[int] = Counter()
    deadline = time.monotonic() + 120
    wanted = random.Random(mode + durability).randint(150, 400)
    try:
        while time.monotonic() < deadline:
            line = app.stdout.readline()
            if not line:
                break
            words = line.split()
            assert len(words) == 3 and words[0] == "ACK", line
            _, pid, decision = words
            acks[decision] = int(pid)
            per_process[int(pid)] += 1
            if len(per_process) == PROCESSES[mode] and min(per_process.values()) >= 10 and (
                    len(acks) >= wanted):
                break
        os.killpg(app.pid, signal.SIGKILL)
        for line in app.stdout:  # printed before the kill: acknowledged all the same
            if line.startswith("ACK") and len(line.split()) == 3:
                _, pid, decision = line.split()
                acks[decision] = int(pid)
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
        app.wait(timeout=30)
    assert len(set(acks.values())) == PROCESSES[mode], app.stderr.read() if app.stderr else ""
    return acks, store, key


def recover(store: Path) -> None:
    """What the next start of the service does: commit the journals the killed processes left,
    here with `otel-ai-audit recover`, which says how many records it took."""
    pending = sum(journal.records for journal in unrecovered(str(store)))
    done = subprocess.run([str(Path(sys.executable).parent / "otel-ai-audit"), "recover",
                           str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert unrecovered(str(store)) == []
    if pending:
        assert f"recovered {pending} records" in done.stdout, done.stdout


def stored(store: Path) -> tuple[set[str], dict[int, str], Verifier]:
    """Record ids in the store, each chain's pid (from its chain_open)."""
    with AuditStore(store, create=False, readonly=True) as opened:
        ids = {row[0] for row in opened._rows("SELECT record_id FROM records")}
        pids = {}
        for chain in opened.chain_ids():
            first = opened.record_at(chain, 0)
            assert first is not None
            event = json.loads(first)["event"]
            assert event["type"] == "chain_open"
            pids[int(event["process"]["pid"])] = chain
    return ids, pids, Verifier()


def verify(store: Path, key: SigningKey) -> set[str]:
    with AuditStore(store, create=False, readonly=True) as opened:
        report = Verifier({key.key_id: key.public_key}).verify(opened)
    return {finding.kind.value for finding in report.findings}


@pytest.mark.parametrize("mode", list(PROCESSES))
def test_process_durability_keeps_every_acknowledged_decision(tmp_path: Path,
                                                              mode: str) -> None:
    acks, store, key = run_and_kill(tmp_path, mode, "process")
    recover(store)
    ids, pids, _ = stored(store)
    missing = [decision for decision in acks if decision not in ids]
    assert missing == [], f"{len(missing)} of {len(acks)} acknowledged decisions are missing"
    assert set(acks.values()) <= set(pids)
    assert verify(store, key) <= {"chain_not_closed"}


@pytest.mark.parametrize("mode", list(PROCESSES))
def test_async_durability_gives_every_process_a_chain(tmp_path: Path, mode: str) -> None:
    acks, store, key = run_and_kill(tmp_path, mode, "async")
    ids, pids, _ = stored(store)
    assert set(acks.values()) <= set(pids), "a process that decided has no chain"
    made = Counter(acks.values())
    kept = Counter(pid for decision, pid in acks.items() if decision in ids)
    for pid, count in made.items():  # what is lost is the tail of the queue, never all of it
        assert kept[pid] >= 1 and count - kept[pid] < count
    assert verify(store, key) <= {"chain_not_closed"}


def test_an_api_with_two_workers_keeps_every_answered_request(tmp_path: Path) -> None:
    """The unmodified churn API under `opentelemetry-instrument uvicorn --workers 2` (spawned
    workers), its process group SIGKILLed while requests flow: every request the API answered
    has its decision in the store (high risk by default: `process` durable)."""
    import uuid

    import httpx

    from tests.services.base import free_port

    key = SigningKey.generate()
    key.save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OTEL_AI_AUDIT_STORE": str(tmp_path / "audit.db"),
           "OTEL_AI_AUDIT_SIGNING_KEY": str(tmp_path / "k.key.pem"),
           "OTEL_AI_AUDIT_FASTAPI_ROUTES": "POST /predict", "OTEL_SERVICE_NAME": "churn-api",
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "torch,mlflow"}
    server = subprocess.Popen(
        [str(bin_dir / "opentelemetry-instrument"), "uvicorn", "app:app", "--app-dir",
         str(ROOT / "examples" / "churn_api"), "--workers", "2", "--host", "127.0.0.1",
         "--port", str(port)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    answered: list[str] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            wanted = random.Random(7).randint(120, 240)
            while len(answered) < wanted:
                request_id = f"req-{uuid.uuid4().hex}"
                response = client.post("/predict", headers={"x-request-id": request_id}, json={
                    "tenure_months": 12, "monthly_charges": 70.5, "support_calls": 2})
                if response.status_code == 200:
                    answered.append(request_id)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    assert len(answered) >= 120
    recover(tmp_path / "audit.db")
    with AuditStore(tmp_path / "audit.db", create=False, readonly=True) as opened:
        decided = b"\n".join(bytes(row[0]) for row in opened._rows(
            "SELECT data FROM records WHERE type = 'inference'"))
        workers = {json.loads(opened.record_at(chain, 0) or b"{}")["event"]["process"]["pid"]
                   for chain in opened.chain_ids()}
    missing = [request_id for request_id in answered if request_id.encode() not in decided]
    assert missing == [], f"{len(missing)} of {len(answered)} answered requests are missing"
    assert len(workers) >= 1
    assert verify(tmp_path / "audit.db", key) <= {"chain_not_closed"}
