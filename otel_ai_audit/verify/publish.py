"""Publishing a verification's outcome into Elasticsearch, where alert rules and dashboards see it.

`otel-ai-audit verify ... --publish-findings` writes one document per finding and one summary
document per run into `<prefix>-findings` (explicit mapping, `dynamic: false`):

* `type: "finding"`: `chain.id`, `chain.seq`, `finding.kind`, `finding.detail`;
* `type: "run"`: `run.ok`, `run.findings`, `run.chains`, `run.closed_chains`, `run.records`,
  `run.trust`.

Both carry `@timestamp` (when the run ended), `run.id` and `run.source` (what was verified).
The integrity rule fires on findings in its window; the "verify not run" rule on the absence
of run documents. A run with no findings still writes its summary: silence then means "checked
and clean", never "not checked".
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX
from otel_ai_audit.sinks.elasticsearch import describe, index_names, transport_reason
from otel_ai_audit.verify.findings import Report

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_LONG = {"type": "long"}

FINDINGS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "type": _KEYWORD,
        "run": {"properties": {
            "id": _KEYWORD, "source": _KEYWORD, "trust": _KEYWORD, "ok": {"type": "boolean"},
            "findings": _LONG, "chains": _LONG, "closed_chains": _LONG, "records": _LONG}},
        "chain": {"properties": {"id": _KEYWORD, "seq": _LONG}},
        "finding": {"properties": {
            "kind": _KEYWORD, "detail": {"type": "keyword", "index": False, "doc_values": False}}},
    },
}


class PublishError(Exception):
    """The findings could not be written; the message is one line a user can act on."""


def findings_index(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> str:
    """`<prefix>-findings`, for a prefix the other indices accept."""
    index_names(prefix)
    return f"{prefix}-findings"


def finding_documents(report: Report, *, run_id: str, time: _dt.datetime,
                      ) -> list[dict[str, Any]]:
    """The run's summary document first, then one per finding."""
    common = {"@timestamp": time.astimezone(_dt.timezone.utc).isoformat(timespec="milliseconds"),
              "run": {"id": run_id, "source": report.source}}
    summary = {**common, "type": "run", "run": {
        **common["run"], "ok": report.ok, "trust": report.trust,
        "findings": len(report.findings), "chains": len(report.chains),
        "closed_chains": sum(1 for chain in report.chains if chain.closed),
        "records": report.record_count}}
    documents = [summary]
    for finding in report.findings:
        document: dict[str, Any] = {**common, "type": "finding",
                                    "finding": {"kind": finding.kind.value,
                                                "detail": finding.detail}}
        chain = {"id": finding.chain_id, "seq": finding.seq}
        if any(value is not None for value in chain.values()):
            document["chain"] = {k: v for k, v in chain.items() if v is not None}
        documents.append(document)
    return documents


def publish_findings(client: Elasticsearch, report: Report, *,
                     index_prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                     run_id: str | None = None, time: _dt.datetime | None = None) -> str:
    """Write the run's documents (refreshed, so a rule sees them at once); return the run id."""
    index = findings_index(index_prefix)
    run_id = run_id or uuid.uuid4().hex
    documents = finding_documents(report, run_id=run_id,
                                  time=time or _dt.datetime.now(_dt.timezone.utc))
    body: list[bytes] = []
    for number, document in enumerate(documents):
        body.append(json.dumps({"create": {"_id": f"{run_id}:{number}"}}).encode())
        body.append(json.dumps(document, separators=(",", ":")).encode())
    where = f"Elasticsearch at {describe(client)}"
    try:
        client.indices.put_index_template(
            name=index, index_patterns=[index], priority=500,
            template={"mappings": FINDINGS_MAPPING}, meta={"managed_by": "otel-ai-audit"})
        response = client.bulk(index=index, operations=body, refresh="wait_for",
                               filter_path="errors,items.*.status,items.*.error.reason")
    except ApiError as error:
        raise PublishError(f"{where} answered HTTP {error.meta.status} writing {index}: "
                           f"{error.message}") from error
    except TransportError as error:
        raise PublishError(f"cannot reach {where}: {transport_reason(error)}") from error
    if response.get("errors"):
        refused = [result for item in response["items"] for result in item.values()
                   if not 200 <= int(result.get("status", 0)) < 300]
        if refused:
            raise PublishError(f"{where} refused {len(refused)} of {len(documents)} finding "
                               f"document(s) in {index}: {refused[0].get('error', {})}")
    return run_id
