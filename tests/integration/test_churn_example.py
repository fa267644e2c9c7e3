"""The churn API example as its README runs it: the load script may start before the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn_api"
BIN = Path(sys.executable).parent


def test_the_load_script_waits_for_the_server(tmp_path: Path) -> None:
    port = free_port()
    load = subprocess.Popen([sys.executable, str(EXAMPLE / "load.py"), "--url",
                             f"http://127.0.0.1:{port}", "--requests", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the load script is polling a port nothing listens on yet
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "OTEL_AI_AUDIT_STORE": str(tmp_path / "churn-audit.db"),
           "OTEL_AI_AUDIT_SIGNING_KEY": str(tmp_path / "k.key.pem"),
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none"}
    from otel_ai_audit.integrity.keys import SigningKey

    SigningKey.generate().save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    server = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), "uvicorn", "app:app", "--app-dir", str(EXAMPLE),
         "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, err = load.communicate(timeout=120)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert load.returncode == 0, err
    assert out.startswith("load: ") and "HTTP 200" in out
