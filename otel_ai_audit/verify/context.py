"""One chain under verification: where it is read from, what pass 1 found, what is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_ai_audit.verify.findings import Finding, Kind
from otel_ai_audit.verify.reading import ChainData, read_chain
from otel_ai_audit.verify.source import RecordSource


@dataclass
class ChainContext:
    """Handed to every check of one chain, which adds what it finds with `add`: the one place
    a finding of the chain is made, so each check names only the seq, kind and detail."""

    source: RecordSource
    chain_id: str
    data: ChainData
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def read(cls, source: RecordSource, chain_id: str,
             data: ChainData | None = None) -> ChainContext:
        """Pass 1 over the chain (unless its `data` was read already); damage met while reading
        is its first finding."""
        context = cls(source, chain_id, read_chain(source, chain_id) if data is None else data)
        if context.data.corrupt:
            context.add(None, Kind.STORE_CORRUPT, context.data.corrupt)
        return context

    def add(self, seq: int | None, kind: Kind, detail: str) -> None:
        self.findings.append(Finding(self.chain_id, seq, kind, detail))
