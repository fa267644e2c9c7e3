"""The model card's two ends on the audit trail: the `training` record it starts from, and the
`model_card` record that makes the card itself dated and tamper-evident."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otel_ai_audit.datasets.source import sha256_of
from otel_ai_audit.errors import RequestError
from otel_ai_audit.instrumentation.sklearn.identity import fingerprint
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.record.schema import EventType, new_event, parse_record
from otel_ai_audit.runtime import configure, get_runtime
from otel_ai_audit.store.sqlite import AuditStore

if TYPE_CHECKING:
    from otel_ai_audit.document.card import ModelCard

_TRAINING = EventType.TRAINING.value


class TrainingRecordNotFound(RequestError, LookupError):
    """The store holds no training record (of the model asked for)."""


@dataclass(frozen=True)
class RecordRef:
    """Where a record sits: enough for `otel-ai-audit prove STORE ID` to prove it on its own,
    and its leaf hash, which binds whoever cites it to the record's exact bytes."""

    store: str
    id: str
    chain_id: str
    seq: int
    leaf_hash: str


@dataclass(frozen=True)
class StoredRecord:
    ref: RecordRef
    event: dict[str, Any]


def find_training_record(store: str | os.PathLike[str], model: Any = None) -> StoredRecord:
    """The latest `training` record in `store`; with `model`, the latest of that fitted model
    (matched by its fitted-state fingerprint, so a refit or another model never matches).

    Records this process has still queued for that store are flushed first, so the record of a
    `fit` just made is found.
    """
    runtime = get_runtime()
    if runtime is not None and Path(runtime.settings.store).resolve() == Path(store).resolve():
        runtime.writer.flush()
    wanted = None if model is None else fingerprint(model)
    latest: tuple[str, StoredRecord] | None = None
    with AuditStore(store, create=False, readonly=True) as source:
        for chain_id in source.chain_ids():
            for seq, time, kind, record_id in source.indexed_columns(chain_id):
                if kind != _TRAINING or (latest is not None and time <= latest[0]):
                    continue  # not a training record, or no later than the one found
                data = source.record_at(chain_id, seq)
                if data is None:
                    continue
                event = parse_record(data)["event"]
                if wanted is None or event.get("model", {}).get("fingerprint") == wanted:
                    latest = (time, StoredRecord(RecordRef(
                        str(store), record_id, chain_id, seq, leaf_hash(data).hex()), event))
    if latest is None:
        of = f" of the model with fingerprint {wanted}" if wanted else ""
        raise TrainingRecordNotFound(f"{store}: no training record{of}; fit the model with the "
                                     "scikit-learn instrumentation on")
    return latest[1]


def record_model_card(card: ModelCard, files: Mapping[str, str | os.PathLike[str]]) -> str:
    """Put a model card on this process's audit trail; returns the record id.

    The record holds the SHA-256 of each file written (so any later edit of the card shows) and
    its headline numbers (so the claims are on the trail even if the files are lost), dated and
    chained like the decisions the card documents.
    """
    event = new_event(EventType.MODEL_CARD, **to_json_data({
        "model": card.identity(),
        "model_card": {**card.headline(),
                       "files": {name: sha256_of(Path(path)) for name, path in files.items()}}}))
    configure().processor.submit_event(event)
    return str(event["id"])
