"""Scenario 2: the unmodified churn API of `examples/churn_api/`, served under
`opentelemetry-instrument` by a real uvicorn, loaded by its load script, stopped by SIGTERM.

Nothing here touches the app: the audit trail comes from the distro and the instrumentations
that `opentelemetry-instrument` loads, configured by `OTEL_AI_AUDIT_*` variables only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from otel_ai_audit.errors import DemoError

EXAMPLE = Path(__file__).parent / "churn_api"
"""`examples/churn_api`, which the package links to and the wheel carries."""
SERVICE_NAME = "churn-api"
STARTUP_TIMEOUT = 120.0


class ScenarioError(DemoError):
    """The scenario could not run (missing example, server that did not start)."""


@dataclass(frozen=True)
class ChurnRun:
    requests: int
    load_output: str
    server_exit: int


def run_churn_api(store: Path, signing_key: Path, requests: int, log: TextIO,
                  example: Path = EXAMPLE) -> ChurnRun:
    """Serve the example app audited into `store`, send it `requests` calls, stop it."""
    if not (example / "app.py").is_file():
        raise ScenarioError(f"{example}/app.py not found: this installation of otel-ai-audit "
                            "lacks the churn API example; reinstall it")
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_AI_AUDIT_STORE": str(store.resolve()),
        "OTEL_AI_AUDIT_SIGNING_KEY": str(signing_key.resolve()),
        "OTEL_AI_AUDIT_FASTAPI_ROUTES": "POST /predict",
        "OTEL_AI_AUDIT_MODEL_NAME": "churn", "OTEL_AI_AUDIT_MODEL_VERSION": "1.0.0",
    })
    server_log = store.parent / "churn-api.log"
    command = [str(bin_dir / "opentelemetry-instrument"), "uvicorn", "app:app", "--app-dir",
               str(example), "--host", "127.0.0.1", "--port", str(port)]
    log.write(f"churn API: {' '.join(command[:3])} ... on port {port} (log: {server_log})\n")
    with server_log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_for_health(f"http://127.0.0.1:{port}/health", server, server_log)
            load = subprocess.run(
                [sys.executable, str(example / "load.py"), "--url", f"http://127.0.0.1:{port}",
                 "--requests", str(requests)], capture_output=True, text=True, check=False)
            if load.returncode != 0:
                raise ScenarioError(f"the load script failed: {load.stderr.strip()}")
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    log.write(f"churn API: {load.stdout.strip()}; stopped with SIGTERM\n")
    return ChurnRun(requests, load.stdout.strip(), server.returncode)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_health(url: str, server: subprocess.Popen[bytes], server_log: Path) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ScenarioError(f"the churn API exited with {server.returncode}; see "
                                f"{server_log}:\n{server_log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise ScenarioError(f"the churn API did not answer {url} within {STARTUP_TIMEOUT:.0f} s; "
                        f"see {server_log}")
