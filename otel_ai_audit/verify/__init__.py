"""Verifying audit trails: `verifier.Verifier` checks every chain a `RecordSource` holds.

Importing this package loads only the protocol a record source meets (no numpy, no backend).
"""

from otel_ai_audit.verify.source import IndexedRecordSource, RecordSource

__all__ = ["IndexedRecordSource", "RecordSource"]
