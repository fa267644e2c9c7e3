"""Good OpenTelemetry neighbours: the audit trail is installed beside another distro and
configurator (the real `opentelemetry-distro`, installed into a folder of its own that only
these tests' subprocesses see, so it changes no other test's exporters), and otel-ai-audit
changes no application's exporters: the app's own spans reach the real Collector when it asks
for OTLP, while its audit records reach the store.

Each test runs an unmodified program under `opentelemetry-instrument` in a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.integration.test_zero_code import (
    BIN,
    NO_EXPORT,
    decision_count,
    run_environment,
    verify,
)
from tests.services.base import cache_root, wait_until
from tests.services.collector import CollectorService

APP = """\
import os, sys
import numpy as np
from opentelemetry import trace
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(3)
model = LogisticRegression().fit(rng.normal(size=(60, 3)), rng.integers(0, 2, 60))
with trace.get_tracer("neighbour-app").start_as_current_span(sys.argv[1]):
    for row in rng.normal(size=(int(sys.argv[2]), 3)):
        model.predict(row[None, :])
print("traces exporter:", os.environ.get("OTEL_TRACES_EXPORTER"), flush=True)
"""
DECISIONS = 4


ENTRY_POINTS = """\
import json
from importlib.metadata import distribution, entry_points
print(json.dumps({"distro": distribution("opentelemetry-distro").version, **{
    group: [entry.value for entry in entry_points(group=group)]
    for group in ("opentelemetry_distro", "opentelemetry_configurator",
                  "opentelemetry_pre_instrument")}}))
"""


@pytest.fixture(scope="module")
def distro_site() -> Iterator[Path]:
    """`opentelemetry-distro` at the contrib release installed here, in a folder of its own."""
    release = version("opentelemetry-instrumentation")
    site = cache_root() / "opentelemetry-distro" / release
    if not (site / "opentelemetry" / "distro").is_dir():
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--target", str(site), f"opentelemetry-distro=={release}"],
            capture_output=True, text=True, timeout=600, check=False)
        assert installed.returncode == 0, installed.stderr
    yield site


def run_app(workdir: Path, span: str, *, unset: tuple[str, ...] = (),
            site: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """The app under `opentelemetry-instrument`, its span named `span`, without `unset`;
    with the packages of `site` importable."""
    app = workdir / "app.py"
    app.write_text(APP)
    env = run_environment(workdir / "audit.db", OTEL_SERVICE_NAME=f"neighbour-{span}",
                          OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="torch,mlflow", **variables)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    for name in unset:
        env.pop(name)
    return subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(app), span,
                           str(DECISIONS)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def spans_named(collector: CollectorService, name: str) -> list[dict]:
    """The spans called `name` the Collector has written, each with its service name."""
    if not collector.traces_path.exists():
        return []
    found = []
    for line in collector.traces_path.read_text().splitlines():
        for resource_spans in json.loads(line).get("resourceSpans", []):
            service = next((a["value"].get("stringValue") for a in
                            resource_spans["resource"].get("attributes", [])
                            if a["key"] == "service.name"), None)
            for scope in resource_spans.get("scopeSpans", []):
                found += [{**span, "service": service} for span in scope.get("spans", [])
                          if span["name"] == name]
    return found


def audit_trail_kept(workdir: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "NOT active" not in result.stderr, result.stderr
    assert decision_count(workdir / "audit.db") == DECISIONS
    report = verify(workdir / "audit.db")
    assert report["ok"], report["findings"]


def test_opentelemetry_distro_is_installed_beside_us(distro_site: Path) -> None:
    """The other tests' premise: another distro and configurator are found first or alone,
    and otel-ai-audit registers neither (only its pre-instrument hook)."""
    env = {**os.environ, "PYTHONPATH": str(distro_site)}
    found = json.loads(subprocess.run([sys.executable, "-c", ENTRY_POINTS], env=env,
                                      capture_output=True, text=True, check=True).stdout)
    assert found["distro"] == version("opentelemetry-instrumentation")
    for group in ("opentelemetry_distro", "opentelemetry_configurator"):
        assert found[group] and not [value for value in found[group]
                                     if value.startswith("otel_ai_audit")]
    assert "otel_ai_audit.distro:install" in found["opentelemetry_pre_instrument"]


@pytest.mark.parametrize("selection", [{}, {"OTEL_PYTHON_DISTRO": "distro",
                                            "OTEL_PYTHON_CONFIGURATOR": "configurator"}],
                         ids=["first-found", "named"])
def test_audit_records_flow_beside_opentelemetry_distro(
        tmp_path: Path, collector: CollectorService, distro_site: Path,
        selection: dict[str, str]) -> None:
    """`opentelemetry-distro`'s distro and configurator set the app up (its own default,
    OTLP, stays in force: we change no exporter) and the audit trail is kept all the same."""
    span = f"distro-{uuid.uuid4().hex[:8]}"
    result = run_app(tmp_path, span, unset=tuple(NO_EXPORT), site=distro_site,
                     OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_grpc_endpoint, **selection)
    audit_trail_kept(tmp_path, result)
    assert "traces exporter: otlp" in result.stdout, "opentelemetry-distro's default"
    assert wait_until(lambda: spans_named(collector, span), timeout=30)


def test_app_spans_reach_the_collector_while_audit_records_reach_the_store(
        tmp_path: Path, collector: CollectorService) -> None:
    span = f"otlp-{uuid.uuid4().hex[:8]}"
    result = run_app(tmp_path, span, OTEL_TRACES_EXPORTER="otlp",
                     OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc",
                     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.otlp_grpc_endpoint)
    audit_trail_kept(tmp_path, result)
    assert wait_until(lambda: spans_named(collector, span), timeout=30), \
        "the app's own span did not reach the Collector"
    (own,) = spans_named(collector, span)
    assert own["service"] == f"neighbour-{span}"
