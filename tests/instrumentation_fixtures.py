"""In-process audit runtime for instrumentation tests: its own store, keys and TracerProvider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from otel_ai_audit import runtime as audit_runtime
from otel_ai_audit.integrity.keys import load_trusted_keys
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier
from tests.audit_fixtures import key_beside


@dataclass
class AuditedProcess:
    store: Path
    provider: TracerProvider
    runtime: audit_runtime.AuditRuntime

    def close(self) -> None:
        audit_runtime.shutdown()

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every record's event, in chain order (closes the runtime first)."""
        self.close()
        if not self.store.exists():
            return []
        with AuditStore(self.store, create=False, readonly=True) as store:
            events = [json.loads(data)["event"] for chain in store.chain_ids()
                      for _, data in store.records(chain)]
        return [e for e in events if event_type is None or e["type"] == event_type]

    def verify(self) -> Report:
        self.close()
        keys = load_trusted_keys([f"{self.store}.pub.pem"])
        with AuditStore(self.store, create=False, readonly=True) as store:
            return Verifier(keys).verify(store)


@contextmanager
def instrumented(tmp_path: Path, *instrumentors: type[BaseInstrumentor],
                 tracer_provider: TracerProvider | None = None,
                 **settings: Any) -> Iterator[AuditedProcess]:
    """An audited process with the given instrumentations on, off again afterwards."""
    for process in audited_process(tmp_path, tracer_provider=tracer_provider, **settings):
        active = [kind() for kind in instrumentors]
        for instrumentor in active:
            instrumentor.instrument(tracer_provider=process.provider)
        try:
            yield process
        finally:
            for instrumentor in active:
                instrumentor.uninstrument()


def audited_process(tmp_path: Path, tracer_provider: TracerProvider | None = None,
                    **settings: Any) -> Iterator[AuditedProcess]:
    """Configure the audit runtime on a fresh store (and a fresh TracerProvider unless one is
    given); shut both down afterwards."""
    audit_runtime.shutdown()
    tmp_path.mkdir(parents=True, exist_ok=True)
    provider = tracer_provider or TracerProvider()
    store = tmp_path / "audit.db"
    settings.setdefault("signing_key", str(key_beside(store)))
    runtime = audit_runtime.configure(provider, store=str(store), **settings)
    try:
        yield AuditedProcess(store, provider, runtime)
    finally:
        audit_runtime.shutdown()
        provider.shutdown()
