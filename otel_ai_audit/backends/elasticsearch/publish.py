"""Publishing a verification's outcome into Elasticsearch, where alert rules and dashboards see it.

`otel-ai-audit verify ... --publish-findings` writes one document per finding and one summary
document per run into `<prefix>-findings` (`layout.finding_documents`, `layout.FINDINGS_MAPPING`).
The integrity rule fires on findings in its window; the "verify not run" rule on the absence
of run documents. A run with no findings still writes its summary: silence then means "checked
and clean", never "not checked".
"""

from __future__ import annotations

import datetime as _dt
import uuid

from otel_ai_audit.backends.elasticsearch import layout
from otel_ai_audit.backends.elasticsearch.client import (
    ApiError,
    Elasticsearch,
    TransportError,
    describe,
    explain,
)
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX
from otel_ai_audit.errors import BackendError
from otel_ai_audit.verify.findings import Report


class PublishError(BackendError):
    """The findings could not be written; the message is one line a user can act on."""


def publish_findings(client: Elasticsearch, report: Report, *,
                     index_prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                     run_id: str | None = None, time: _dt.datetime | None = None) -> str:
    """Write the run's documents (refreshed, so a rule sees them at once); return the run id."""
    template = layout.findings_template(index_prefix)
    index = template["name"]
    run_id = run_id or uuid.uuid4().hex
    documents = layout.finding_documents(report, run_id=run_id,
                                         time=time or _dt.datetime.now(_dt.timezone.utc))
    body = [line for number, document in enumerate(documents)
            for line in layout.create_lines(f"{run_id}:{number}", document)]
    try:
        client.indices.put_index_template(**template)
        response = client.bulk(index=index, operations=body, refresh="wait_for",
                               filter_path="errors,items.*.status,items.*.error.reason")
    except (ApiError, TransportError) as error:
        raise PublishError(explain(error, client, f"writing {index}")) from error
    if response.get("errors"):
        refused = [result for item in response["items"] for result in item.values()
                   if not 200 <= int(result.get("status", 0)) < 300]
        if refused:
            raise PublishError(f"Elasticsearch at {describe(client)} refused {len(refused)} of "
                               f"{len(documents)} finding document(s) in {index}: "
                               f"{refused[0].get('error', {})}")
    return run_id
