"""Zero-code: unmodified programs run under `opentelemetry-instrument` keep an audit trail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.audit_fixtures import key_beside
from tests.services.base import wait_until
from tests.services.collector import CollectorService

APP = Path(__file__).parents[1] / "apps" / "score_loop.py"
BIN = Path(sys.executable).parent


NO_EXPORT = {f"OTEL_{signal}_EXPORTER": "none" for signal in ("TRACES", "METRICS", "LOGS")}
"""Said explicitly: with `opentelemetry-distro` installed beside us, its default is `otlp`."""


def run_environment(store: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **NO_EXPORT,
                "OTEL_AI_AUDIT_STORE": str(store), "OTEL_SERVICE_NAME": "score-loop",
                "OTEL_AI_AUDIT_SIGNING_KEY": str(key_beside(store)), **extra})
    return env


def verify(store: Path) -> dict:
    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "verify", str(store), "--public-key", f"{store}.pub.pem",
         "--json"], capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1), result.stderr
    return report


def decision_count(store: Path) -> int:
    import sqlite3

    with sqlite3.connect(store) as db:
        return db.execute("SELECT count(*) FROM records WHERE type = 'inference'").fetchone()[0]


def test_unmodified_script_gets_one_verified_record_per_decision(tmp_path: Path) -> None:
    store = tmp_path / "audit.db"
    result = subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(APP), "25"],
                            env=run_environment(store), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 25, "the program's own output is unchanged"
    report = verify(store)
    assert report["ok"], report["findings"]
    assert decision_count(store) == 25


def test_audit_trail_coexists_with_otlp_export_to_the_collector(
        tmp_path: Path, collector: CollectorService) -> None:
    store = tmp_path / "audit.db"
    env = run_environment(store, OTEL_TRACES_EXPORTER="otlp",
                          OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
                          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.otlp_grpc_endpoint)
    result = subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(APP), "5"],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert verify(store)["ok"]
    assert decision_count(store) == 5

    def exported() -> bool:
        text = collector.traces_path.read_text() if collector.traces_path.exists() else ""
        return text.count('"ai_audit.model.name"') >= 5 and "score-loop" in text

    assert wait_until(exported, timeout=30), "model spans did not reach the Collector"


def test_sigterm_closes_the_chain(tmp_path: Path) -> None:
    store, ready = tmp_path / "audit.db", tmp_path / "ready"
    process = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), "python", str(APP), "3", "--forever",
         str(ready)], env=run_environment(store), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(ready.exists, timeout=120), "the app never became ready"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    report = verify(store)
    assert report["ok"], report["findings"]
    assert report["chain_summaries"][0]["closed"]
    assert decision_count(store) >= 4
