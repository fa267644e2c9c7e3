"""Kibana saved objects (data views, Lens panels, dashboards) and alert rules for the audit indices.

One builder for everything: `python -m otel_ai_audit.dashboards` writes the files under
`dashboards/kibana/` from it, and `otel-ai-audit kibana install` posts the same objects, so a
pip install needs no repository checkout. Object ids are derived from the index prefix, so
installing again overwrites (never duplicates), and two prefixes can live in one space.

Panels are declared as small specs (`Panel`: data view, KQL filter, columns) and rendered into
Kibana 8.x Lens state (`formBased` layers referenced as `indexpattern-datasource-layer-<id>`),
so what a panel queries is stated once, in a form tests can run against Elasticsearch.
Targets Kibana 8.19; older `typeMigrationVersion`s are used on purpose: Kibana migrates an
import forward from the version it declares, and refuses one newer than itself.

Why one module: the panels, dashboards and alert rules are built on the same data views
(`DATA_VIEWS`, `index_of`, `object_id`) and installed together; a rule reads the index and
time field its data view declares, so both halves change when a data view does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from otel_ai_audit.backends.elasticsearch.layout import anchors_index, findings_index, index_names
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.7.0"}
_NAMESPACE = uuid.UUID("5b0e1c52-3d3f-4b8e-9a44-4e3f1b2d7a10")

DATA_VIEWS = {
    # key (see `index_of`): (time field, display name)
    "records": ("@timestamp", "otel-ai-audit records"),
    "checkpoints": ("@timestamp", "otel-ai-audit checkpoints"),
    "findings": ("@timestamp", "otel-ai-audit integrity findings"),
    "anchors": ("@timestamp", "otel-ai-audit anchors"),
}


@dataclass(frozen=True)
class Column:
    """One Lens column: a bucket (`date_histogram`, `terms`) or a metric (`count`, `average`,
    `max`, `min`, `sum`); `data_type` is the field's Lens type."""

    operation: str
    field: str | None = None
    label: str | None = None
    data_type: str = "number"
    size: int = 10

    @property
    def bucketed(self) -> bool:
        return self.operation in ("date_histogram", "terms")


@dataclass(frozen=True)
class Panel:
    """A Lens visualization: `chart` is `bar_stacked`, `line`, `donut` or `table`.
    For XY charts the first bucket column is the x axis, a second one splits the series."""

    key: str
    title: str
    description: str
    data_view: str
    query: str
    chart: str
    columns: tuple[Column, ...]
    width: int = 24
    height: int = 12


_TIME = Column("date_histogram", "@timestamp", "@timestamp", "date")
_COUNT = Column("count", None, "Count")


def _terms(name: str, label: str, data_type: str = "string", size: int = 10) -> Column:
    return Column("terms", name, label, data_type, size)


PANELS: tuple[Panel, ...] = (
    Panel("decisions-by-model", "Decisions over time by model",
          "Inference records per interval, stacked by model name.",
          "records", "event.type : inference", "bar_stacked",
          (_TIME, _COUNT, _terms("model.name", "Model"))),
    Panel("decisions-by-version", "Decisions by model and version",
          "Which model versions decided how often, with their mean latency.",
          "records", "event.type : inference", "table",
          (_terms("model.name", "Model"), _terms("model.version", "Version"), _COUNT,
           Column("average", "latency_ms", "Mean latency (ms)"))),
    Panel("risk-mix", "Risk mix",
          "Share of recorded decisions per risk level.",
          "records", "event.type : inference", "donut",
          (_terms("risk.level", "Risk level"), _COUNT)),
    Panel("latency", "Model latency (ms)",
          "Mean and worst latency of the model calls per interval.",
          "records", "event.type : inference", "line",
          (_TIME, Column("average", "latency_ms", "Mean latency (ms)"),
           Column("max", "latency_ms", "Max latency (ms)"))),
    Panel("sampling-accounting", "Sampling accounting (signed checkpoints)",
          "Per chain: records chained, decisions sampled out and events lost before sealing, "
          "as the signed checkpoints count them.",
          "checkpoints", "", "table",
          (_terms("chain.id", "Chain", size=50), Column("max", "checkpoint.size", "Records"),
           Column("max", "counters.sampled_out", "Sampled out"),
           Column("max", "counters.failed", "Failed"))),
    Panel("findings-by-kind", "Integrity findings over time by kind",
          "Findings of `otel-ai-audit verify --publish-findings` runs: any bar is a failure.",
          "findings", "type : finding", "bar_stacked",
          (_TIME, _COUNT, _terms("finding.kind", "Finding"))),
    Panel("gaps", "Gaps and truncations by chain",
          "Chains with records missing in the middle or at the end, and the first missing seq.",
          "findings", "type : finding and (finding.kind : gap or finding.kind : truncated)",
          "table",
          (_terms("chain.id", "Chain", size=50), _terms("finding.kind", "Finding"), _COUNT,
           Column("min", "chain.seq", "First seq"))),
    Panel("verify-runs", "Verification runs",
          "Each verified source: runs, and the most findings and records one run saw.",
          "findings", "type : run", "table",
          (_terms("run.source", "Source"), _COUNT, Column("max", "run.findings", "Findings"),
           Column("max", "run.records", "Records"),
           Column("max", "run.closed_chains", "Closed chains"))),
    Panel("drift-score", "Drift score per feature",
          "The drift statistic of each feature per monitoring window.",
          "records", "event.type : drift", "line",
          (_TIME, Column("max", "drift.score", "Drift score"),
           _terms("drift.feature", "Feature", size=20))),
    Panel("drifted-features", "Drifted features",
          "Windows in which a feature crossed its drift threshold.",
          "records", "event.type : drift and drift.drifted : true", "table",
          (_terms("model.name", "Model"), _terms("drift.feature", "Feature", size=50), _COUNT,
           Column("max", "drift.score", "Worst score"),
           Column("max", "drift.threshold", "Threshold"))),
    Panel("fairness-slices", "Fairness per slice",
          "Selection rate, true and false positive rates of each slice of each attribute.",
          "records", "event.type : fairness", "table",
          (_terms("fairness.attribute", "Attribute"), _terms("fairness.slice", "Slice", size=50),
           Column("average", "fairness.selection_rate", "Selection rate"),
           Column("average", "fairness.tpr", "TPR"), Column("average", "fairness.fpr", "FPR"),
           Column("sum", "fairness.count", "Decisions"))),
    Panel("fairness-gaps", "Fairness gaps over time",
          "Demographic-parity difference per attribute and window.",
          "records", "event.type : fairness", "line",
          (_TIME, Column("max", "fairness.dp_difference", "Demographic parity difference"),
           _terms("fairness.attribute", "Attribute"))),
    Panel("oversight-actions", "Human-oversight actions",
          "Reviews of decisions per interval, by action (EU AI Act Art. 14).",
          "records", "event.type : oversight", "bar_stacked",
          (_TIME, _COUNT, _terms("action", "Action"))),
    Panel("overrides-by-reviewer", "Overrides by reviewer",
          "Who overrode the model's decisions, and how often.",
          "records", "event.type : oversight and action : overridden", "table",
          (_terms("reviewer.id", "Reviewer", size=50), _COUNT)),
)

DASHBOARDS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("decisions", "otel-ai-audit: decisions",
     "Decisions over time by model and version, risk mix, latency and sampling accounting.",
     ("decisions-by-model", "decisions-by-version", "risk-mix", "latency",
      "sampling-accounting")),
    ("integrity", "otel-ai-audit: chain integrity",
     "Findings of the verifier over time, gaps and truncations, verification runs.",
     ("findings-by-kind", "gaps", "verify-runs", "sampling-accounting")),
    ("monitoring", "otel-ai-audit: drift, fairness and oversight",
     "Drift per feature, fairness per slice, human-oversight actions and overrides.",
     ("drift-score", "drifted-features", "fairness-slices", "fairness-gaps",
      "oversight-actions", "overrides-by-reviewer")),
)


def object_id(prefix: str, kind: str, key: str) -> str:
    """A stable id per (prefix, kind, key), in UUID v4 form: Kibana accepts predefined ids
    of objects with encrypted attributes (rules) only when they look random."""
    return str(uuid.UUID(bytes=uuid.uuid5(_NAMESPACE, f"{prefix}/{kind}/{key}").bytes,
                         version=4))


def index_of(data_view: str, prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> str:
    """The index (or data stream) a data view reads."""
    records, checkpoints, _ = index_names(prefix)
    return {"records": records, "checkpoints": checkpoints,
            "findings": findings_index(prefix), "anchors": anchors_index(prefix)}[data_view]


def _saved(kind: str, saved_id: str, attributes: dict[str, Any],
           references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "id": saved_id, "attributes": attributes, "references": references,
            "managed": False, "coreMigrationVersion": CORE_MIGRATION_VERSION,
            "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[kind]}


def _data_view(key: str, prefix: str) -> dict[str, Any]:
    time_field, name = DATA_VIEWS[key]
    return _saved("index-pattern", object_id(prefix, "data-view", key), {
        "title": index_of(key, prefix), "name": name if prefix == ELASTICSEARCH_INDEX_PREFIX
        else f"{name} ({prefix})", "timeFieldName": time_field, "allowHidden": False,
        "fields": "[]", "fieldAttrs": "{}", "fieldFormatMap": "{}", "runtimeFieldMap": "{}",
        "sourceFilters": json.dumps([{"value": "canonical"}, {"value": "payload"},
                                     {"value": "signature"}]),
        "typeMeta": "{}"}, [])


def column_ids(panel: Panel) -> list[str]:
    return [f"{panel.key}-{index}" for index in range(len(panel.columns))]


def _lens_column(column: Column, metric_id: str | None) -> dict[str, Any]:
    lens: dict[str, Any] = {"label": column.label or column.field or "Count",
                            "customLabel": column.label is not None,
                            "dataType": column.data_type,
                            "operationType": column.operation,
                            "isBucketed": column.bucketed}
    if column.operation == "date_histogram":
        lens.update(sourceField=column.field, scale="interval",
                    params={"interval": "auto", "includeEmptyRows": True, "dropPartials": False})
    elif column.operation == "terms":
        order = ({"type": "column", "columnId": metric_id} if metric_id
                 else {"type": "alphabetical"})
        lens.update(sourceField=column.field, scale="ordinal",
                    params={"size": column.size, "orderBy": order, "orderDirection": "desc",
                            "otherBucket": True, "missingBucket": False,
                            "parentFormat": {"id": "terms"}})
    elif column.operation == "count":
        lens.update(sourceField="___records___", scale="ratio", params={"emptyAsNull": True})
    else:
        lens.update(sourceField=column.field, scale="ratio", params={"emptyAsNull": True})
    return lens


def _visualization(panel: Panel, layer_id: str, ids: list[str]) -> tuple[str, dict[str, Any]]:
    buckets = [i for i, column in zip(ids, panel.columns, strict=True) if column.bucketed]
    metrics = [i for i, column in zip(ids, panel.columns, strict=True) if not column.bucketed]
    layer = {"layerId": layer_id, "layerType": "data"}
    if panel.chart in ("bar_stacked", "line"):
        xy_layer: dict[str, Any] = {**layer, "seriesType": panel.chart, "xAccessor": buckets[0],
                                    "accessors": metrics}
        if len(buckets) > 1:
            xy_layer["splitAccessor"] = buckets[1]
        return "lnsXY", {"legend": {"isVisible": True, "position": "right"},
                         "valueLabels": "hide", "preferredSeriesType": panel.chart,
                         "layers": [xy_layer]}
    if panel.chart == "donut":
        return "lnsPie", {"shape": "donut", "layers": [
            {**layer, "primaryGroups": buckets, "metrics": metrics, "numberDisplay": "percent",
             "categoryDisplay": "default", "legendDisplay": "default", "nestedLegend": False}]}
    if panel.chart == "table":
        return "lnsDatatable", {**layer, "columns": [{"columnId": i} for i in ids]}
    raise ValueError(f"unknown chart {panel.chart!r}")


def _lens(panel: Panel, prefix: str) -> dict[str, Any]:
    layer_id = f"{panel.key}-layer"
    ids = column_ids(panel)
    first_metric = next((i for i, column in zip(ids, panel.columns, strict=True)
                         if not column.bucketed), None)
    columns = {i: _lens_column(column, first_metric)
               for i, column in zip(ids, panel.columns, strict=True)}
    # Lens evaluates buckets outermost first, in columnOrder; metrics come last.
    order = [i for i in ids if columns[i]["isBucketed"]] + \
        [i for i in ids if not columns[i]["isBucketed"]]
    kind, visualization = _visualization(panel, layer_id, ids)
    data_view = object_id(prefix, "data-view", panel.data_view)
    state = {"datasourceStates": {"formBased": {"layers": {layer_id: {
                 "columns": columns, "columnOrder": order, "incompleteColumns": {}}}}},
             "visualization": visualization,
             "query": {"query": panel.query, "language": "kuery"},
             "filters": [], "internalReferences": [], "adHocDataViews": {}}
    return _saved("lens", object_id(prefix, "lens", panel.key), {
        "title": panel.title, "description": panel.description, "visualizationType": kind,
        "state": state}, [{"type": "index-pattern", "id": data_view, "name": name}
                          for name in ("indexpattern-datasource-current-indexpattern",
                                       f"indexpattern-datasource-layer-{layer_id}")])


def _dashboard(key: str, title: str, description: str, panel_keys: tuple[str, ...],
               prefix: str) -> dict[str, Any]:
    by_key = {panel.key: panel for panel in PANELS}
    panels, references = [], []
    x = y = row_height = 0
    for number, panel_key in enumerate(panel_keys, start=1):
        panel = by_key[panel_key]
        if x + panel.width > 48:
            x, y, row_height = 0, y + row_height, 0
        index = str(number)
        panels.append({"type": "lens", "panelIndex": index,
                       "gridData": {"x": x, "y": y, "w": panel.width, "h": panel.height,
                                    "i": index},
                       "embeddableConfig": {"enhancements": {}},
                       "panelRefName": f"panel_{index}"})
        references.append({"name": f"{index}:panel_{index}", "type": "lens",
                           "id": object_id(prefix, "lens", panel_key)})
        x += panel.width
        row_height = max(row_height, panel.height)
    return _saved("dashboard", object_id(prefix, "dashboard", key), {
        "title": title if prefix == ELASTICSEARCH_INDEX_PREFIX else f"{title} ({prefix})",
        "description": description, "panelsJSON": json.dumps(panels),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}),
        "timeRestore": True, "timeFrom": "now-7d", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60_000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
            {"query": {"query": "", "language": "kuery"}, "filter": []})},
        "version": 1}, references)


def saved_objects(prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> list[dict[str, Any]]:
    """Data views, then Lens panels, then dashboards: referenced objects come first."""
    return ([_data_view(key, prefix) for key in DATA_VIEWS]
            + [_lens(panel, prefix) for panel in PANELS]
            + [_dashboard(*dashboard, prefix) for dashboard in DASHBOARDS])


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n"
                   for item in objects)


# --- alert rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An alert rule: `.es-query` (an Elasticsearch query DSL `query`, a count compared with
    `threshold`) or `.index-threshold` (`filter` KQL, the `aggregate` of `field` — or the
    count — per `group_by` term, or over all matching records)."""

    key: str
    name: str
    rule_type: str
    data_view: str
    comparator: str
    threshold: float
    window: tuple[int, str]
    interval: str
    message: str
    query: dict[str, Any] = field(default_factory=dict)
    filter: str = ""
    group_by: str = ""
    aggregate: str = "count"
    field: str = ""


def _term(name: str, value: Any) -> dict[str, Any]:
    return {"term": {name: value}}


RULES: tuple[Rule, ...] = (
    Rule("drift", "otel-ai-audit: drift over threshold", ".es-query", "records", ">", 0,
         (1, "h"), "15m",
         "Drift detected: {{context.hits.length}} drifted feature window(s). {{context.link}}",
         query={"bool": {"filter": [_term("event.type", "drift"),
                                    _term("drift.drifted", True)]}}),
    Rule("integrity", "otel-ai-audit: integrity failure", ".es-query", "findings", ">", 0,
         (1, "h"), "15m",
         "The audit trail failed verification: {{context.value}} finding(s). {{context.link}}",
         query={"bool": {"filter": [_term("type", "finding")]}}),
    Rule("verify-not-run", "otel-ai-audit: verification not run", ".es-query", "findings",
         "<", 1, (25, "h"), "1h",
         "No `otel-ai-audit verify --publish-findings` run in the last 25 hours.",
         query={"bool": {"filter": [_term("type", "run")]}}),
    Rule("no-decisions", "otel-ai-audit: no decisions recorded", ".es-query", "records", "<", 1,
         (1, "h"), "15m",
         "No inference record reached Elasticsearch in the last hour: the model, its "
         "instrumentation or the shipper has stopped.",
         query={"bool": {"filter": [_term("event.type", "inference")]}}),
    Rule("decision-volume-drop", "otel-ai-audit: decision volume drop", ".index-threshold",
         "records", "<", 10, (1, "h"), "15m",
         "Model {{context.group}} recorded {{context.value}} decision(s) in the last hour.",
         filter="event.type : inference", group_by="model.name"),
    Rule("anchoring-stalled", "otel-ai-audit: anchoring stalled", ".es-query", "anchors", "<", 1,
         (2, "h"), "15m",
         "No external anchor reached Elasticsearch in the last 2 hours (a running service "
         "anchors at least hourly): anchoring, S3 Object Lock or the TSA has failed, and what "
         "the store holds since is not protected against rollback. Check ai_audit.anchor.age.",
         query={"match_all": {}}),
    Rule("override-rate", "otel-ai-audit: override-rate spike", ".index-threshold", "records",
         ">", 0.3, (1, "h"), "15m",
         "Reviewers overrode or reversed the model in {{context.value}} of their oversight "
         "actions of the last hour (share, 0-1).",
         filter="event.type : oversight", aggregate="avg", field="oversight.overridden"),
)

ACTION_GROUPS = {".es-query": "query matched", ".index-threshold": "threshold met"}


def rule_params(rule: Rule, prefix: str = ELASTICSEARCH_INDEX_PREFIX) -> dict[str, Any]:
    """The rule type's `params`, as `POST /api/alerting/rule/{id}` takes them."""
    size, unit = rule.window
    index = index_of(rule.data_view, prefix)
    if rule.data_view in ("findings", "anchors"):
        # A pattern: before the first `verify --publish-findings` (or the first shipped anchor)
        # there is no index, and a pattern matching nothing is an empty result (the "not run"
        # and "stalled" rules fire) where a missing index would make every run fail.
        index += "*"
    common = {"index": [index],
              "timeField": DATA_VIEWS[rule.data_view][0], "timeWindowSize": size,
              "timeWindowUnit": unit, "thresholdComparator": rule.comparator,
              "threshold": [rule.threshold], "aggType": rule.aggregate}
    if rule.rule_type == ".es-query":
        return {**common, "searchType": "esQuery", "esQuery": json.dumps({"query": rule.query}),
                "size": 100, "excludeHitsFromPreviousRun": True, "groupBy": "all"}
    aggregated = {} if rule.aggregate == "count" else {"aggField": rule.field}
    grouped = ({"groupBy": "top", "termField": rule.group_by, "termSize": 100}
               if rule.group_by else {"groupBy": "all"})
    return {**common, **aggregated, **grouped, "filterKuery": rule.filter}


def rule_body(rule: Rule, prefix: str = ELASTICSEARCH_INDEX_PREFIX,
              connector_id: str | None = None) -> dict[str, Any]:
    """The whole create request; with `connector_id`, one action sending `message`."""
    actions = [] if connector_id is None else [{
        "id": connector_id, "group": ACTION_GROUPS[rule.rule_type],
        "params": {"message": rule.message},
        "frequency": {"summary": False, "notify_when": "onActionGroupChange",
                      "throttle": None}}]
    return {"name": rule.name if prefix == ELASTICSEARCH_INDEX_PREFIX
            else f"{rule.name} ({prefix})",
            "rule_type_id": rule.rule_type, "consumer": "stackAlerts", "enabled": True,
            "schedule": {"interval": rule.interval}, "tags": ["otel-ai-audit"],
            "params": rule_params(rule, prefix), "actions": actions}


UPDATABLE_RULE_FIELDS = ("name", "tags", "schedule", "params", "actions")
"""What `PUT /api/alerting/rule/{id}` accepts (type, consumer and enabled are fixed)."""


def alert_rules(prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                connector_id: str | None = None) -> dict[str, dict[str, Any]]:
    """{rule id: create request body} for every rule."""
    return {object_id(prefix, "rule", rule.key): rule_body(rule, prefix, connector_id)
            for rule in RULES}
