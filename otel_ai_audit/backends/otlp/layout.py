"""The OTLP layout: the attributes of the spans that carry the trail.

Each sealed record becomes one span that holds the exact canonical bytes, so whatever the
Collector routes it to (Elasticsearch, Splunk HEC, a file) keeps a verifiable copy:

* `ai_audit.record`: the canonical JSON text (or `ai_audit.record.base64` for bytes that are
  not UTF-8: a write torn by a crash, shipped as stored for the verifier to see);
* `ai_audit.chain.id`, `ai_audit.chain.seq`, `ai_audit.event.type`;
* `elasticsearch.document_id` = "<chain id>:<seq>", which the contrib elasticsearchexporter
  takes as the document id (`traces_dynamic_id`), so a span sent twice is one document.

Checkpoints (`ai_audit.checkpoint.*`, payload and signature base64), anchors
(`ai_audit.anchor.*`) and public keys (`ai_audit.key.*`) travel the same way, with ids
"<chain id>:checkpoint:<index>", "anchor:<store id>:<seq>" and "key:<key id>". Every span's
resource carries `ai_audit.pipeline` = "audit", the mark a Collector routes on; the trace id
is the chain id and the span id derives from the document id, so a repeat is the same span.

Names only (no SDK), so a verifier of a Collector's export reads them without loading it.
"""

from __future__ import annotations

PIPELINE = "ai_audit.pipeline"
"""Resource attribute marking audit spans (value `PIPELINE_VALUE`) for a Collector to route on."""
PIPELINE_VALUE = "audit"
SERVICE_NAME = "otel-ai-audit"
SCOPE_NAME = "otel_ai_audit.backends.otlp"
KIND = "ai_audit.kind"
"""What a span carries: "record", "checkpoint", "anchor" or "key"."""
RECORD = "ai_audit.record"
RECORD_BASE64 = "ai_audit.record.base64"
CHAIN_ID = "ai_audit.chain.id"
CHAIN_SEQ = "ai_audit.chain.seq"
EVENT_TYPE = "ai_audit.event.type"
CHECKPOINT_INDEX = "ai_audit.checkpoint.index"
CHECKPOINT_SIZE = "ai_audit.checkpoint.size"
CHECKPOINT_KEY_ID = "ai_audit.checkpoint.key_id"
CHECKPOINT_PAYLOAD = "ai_audit.checkpoint.payload"
CHECKPOINT_SIGNATURE = "ai_audit.checkpoint.signature"
ANCHOR_PUBLISHED = "ai_audit.anchor.published"
"""An anchor span's published object (canonical JSON: signed payload, signature, token)."""
ANCHOR_PREFIX = "ai_audit."
"""Before each of an anchor's search fields (`anchor.seq`, ...), as span attributes."""
KEY_ID = "ai_audit.key.id"
KEY_PEM = "ai_audit.key.pem"
DOCUMENT_ID = "elasticsearch.document_id"


def span_name(kind: str) -> str:
    """The name of a span carrying a `KIND` ("ai_audit.record", ...)."""
    return f"ai_audit.{kind}"


def record_id(chain_id: str, seq: int) -> str:
    return f"{chain_id}:{seq}"


def checkpoint_id(chain_id: str, index: int) -> str:
    return f"{chain_id}:checkpoint:{index}"


def anchor_id(store_id: str, seq: int) -> str:
    return f"anchor:{store_id}:{seq}"


def key_id(key: str) -> str:
    return f"key:{key}"
