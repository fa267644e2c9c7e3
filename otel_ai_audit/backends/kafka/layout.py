"""The Kafka layout: the topics of the trail and what each message holds (what consumers and
`verify --kafka` rely on). No client library here.

* `<prefix>.records`: key = the chain id (a chain stays in one partition, in order), value =
  the record's canonical bytes exactly as hashed, headers `chain.id`, `chain.seq` (the stored
  position, as Elasticsearch's and Splunk's indexed fields) and the record's search fields
  (`RECORD_FIELDS`, shared with the Splunk layout), as UTF-8 strings.
* `<prefix>.checkpoints`: key = the chain id, value = `{"checkpoint": {chain_id, index, size,
  key_id, payload, signature}}` (payload and signature base64: the exact signed bytes),
  headers `chain.id`, `checkpoint.index`.
* `<prefix>.keys`: key = the key id, value = the public key's PEM (a compacted topic keeps
  the latest of each).
* `<prefix>.anchors`: key = the anchor's seq, value = the published anchor object, headers
  its search fields.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from otel_ai_audit.anchor.publish import anchor_fields, published_body
from otel_ai_audit.backends.splunk_hec.layout import record_fields
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.store.sqlite import StoredAnchor

DEFAULT_TOPIC_PREFIX = "otel-ai-audit"
RECORDS = "records"
CHECKPOINTS = "checkpoints"
KEYS = "keys"
ANCHORS = "anchors"
KINDS = (RECORDS, CHECKPOINTS, KEYS, ANCHORS)

Headers = list[tuple[str, "str | bytes | None"]]
"""A consumed message's headers."""
Message = tuple[bytes, bytes, dict[str, "str | bytes | None"]]
"""(key, value, headers) of one message to produce. Headers are a dict of text (librdkafka
sends the UTF-8 bytes): of str only, CPython's garbage collector does not track it, which
made building a record's message a third cheaper than a list of tuples."""


def topic(prefix: str, kind: str) -> str:
    """The topic of one kind of item (`KINDS`) under `prefix`."""
    return f"{prefix}.{kind}"


def topics(prefix: str) -> list[str]:
    return [topic(prefix, kind) for kind in KINDS]


def record_message(record: SealedRecord) -> Message:
    return record.chain_id.encode(), record.data, {
        "chain.id": record.chain_id, "chain.seq": str(record.seq), **record_fields(record.data)}


def checkpoint_message(signed: SignedCheckpoint) -> Message:
    body = {"chain_id": signed.chain_id, "index": signed.index, "size": signed.size,
            "key_id": signed.key_id,
            "payload": base64.b64encode(signed.payload).decode("ascii"),
            "signature": base64.b64encode(signed.signature).decode("ascii")}
    return (signed.chain_id.encode(), json.dumps({"checkpoint": body}, sort_keys=True).encode(),
            {"chain.id": signed.chain_id, "checkpoint.index": str(signed.index)})


def checkpoint_fields(value: bytes) -> dict[str, Any]:
    """The fields of a checkpoint message's value ({} for a value that is not one, which the
    verifier then rejects as a malformed checkpoint)."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    fields = parsed.get("checkpoint") if isinstance(parsed, dict) else None
    return fields if isinstance(fields, dict) else {}


def key_message(key_id: str, pem: str) -> Message:
    return key_id.encode(), pem.encode(), {}


def anchor_message(anchor: StoredAnchor) -> Message:
    return str(anchor.seq).encode(), published_body(anchor), {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in anchor_fields(anchor).items()}


def header_text(headers: Headers | None, name: str) -> str | None:
    """The last value of header `name` as text (None when absent or not UTF-8)."""
    for key, value in reversed(headers or []):
        if key == name and value is not None:
            if isinstance(value, str):
                return value
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None

