"""The Kibana saved objects and alert rules, validated and run against a real Elasticsearch.

Kibana itself cannot run here. So the committed NDJSON is parsed line by line, every reference
is resolved (dashboard panels to Lens objects, Lens layers to data views), and each panel's
query and each rule's search is rebuilt from the artifact (`tests.kibana_queries`) and run on
a real Elasticsearch seeded the production way: an instrumented scikit-learn process with
sampling, oversight, drift and fairness records, shipped by its runtime shipper.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from sklearn.linear_model import LogisticRegression

from otel_ai_audit import last_decision_ids, record_oversight, register_model
from otel_ai_audit.anchor.publish import Anchorer
from otel_ai_audit.backends.elasticsearch.layout import (
    anchors_index,
    findings_index,
    index_names,
    record_fields,
)
from otel_ai_audit.backends.elasticsearch.sink import ElasticsearchSink
from otel_ai_audit.cli import main
from otel_ai_audit.dashboards import KIBANA_OBJECTS, generated_files, kibana
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.runtime import get_runtime
from otel_ai_audit.sinks import Shipper
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import (
    chain_ids,
    checkpoints,
    edit_event,
    inference_event,
    key_beside,
)
from tests.instrumentation_fixtures import audited_process, instrumented
from tests.kibana_queries import kql, layer_data_view, lens_layer, lens_rows, rule_outcome
from tests.services.base import free_port
from tests.services.elasticsearch import ElasticsearchService

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
LENS_TYPES = {"keyword": "string", "long": "number", "double": "number", "date": "date",
              "date_nanos": "date", "boolean": "boolean"}


def committed_objects() -> list[dict[str, Any]]:
    lines = (DASHBOARDS / KIBANA_OBJECTS).read_text(encoding="utf-8").splitlines()
    assert lines and all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def by_type(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in objects if item["type"] == kind}


# --- the artifacts, without Elasticsearch ----------------------------------------------------


def test_committed_files_are_generated_from_the_builder() -> None:
    """`python -m otel_ai_audit.dashboards` regenerates them; nothing stale, nothing extra."""
    expected = generated_files()
    for name, text in expected.items():
        assert (DASHBOARDS / name).read_text(encoding="utf-8") == text, \
            f"{name} is stale: run python -m otel_ai_audit.dashboards"
    on_disk = {str(path.relative_to(DASHBOARDS)) for folder in ("kibana", "splunk")
               for path in (DASHBOARDS / folder).rglob("*") if path.is_file()}
    assert on_disk == set(expected)


def test_every_line_is_a_saved_object_and_every_reference_resolves() -> None:
    objects = committed_objects()
    ids = [(item["type"], item["id"]) for item in objects]
    assert len(ids) == len(set(ids))
    for item in objects:
        assert set(item) >= {"type", "id", "attributes", "references", "coreMigrationVersion",
                             "typeMigrationVersion"}, item["id"]
        uuid.UUID(item["id"])
        for reference in item["references"]:
            assert (reference["type"], reference["id"]) in ids, (item["id"], reference)
    data_views = by_type(objects, "index-pattern")
    assert {view["attributes"]["title"] for view in data_views.values()} == {
        *index_names()[:2], findings_index(), anchors_index()}
    lenses = by_type(objects, "lens")
    assert len(lenses) == len(kibana.PANELS)
    for lens in lenses.values():
        layer_id, layer = lens_layer(lens)
        # The layer's data view, and the same as the editor's default ("current").
        assert {ref["name"] for ref in lens["references"]} == {
            f"indexpattern-datasource-layer-{layer_id}",
            "indexpattern-datasource-current-indexpattern"}
        assert len({(ref["type"], ref["id"]) for ref in lens["references"]}) == 1
        assert lens["references"][0]["type"] == "index-pattern"
        assert layer_data_view(lens) in data_views
        columns = layer["columns"]
        assert sorted(layer["columnOrder"]) == sorted(columns)
        for column in columns.values():
            if column["operationType"] == "terms":
                ordered = column["params"]["orderBy"].get("columnId")
                assert ordered is None or ordered in columns
        visualization = lens["attributes"]["state"]["visualization"]
        accessors = _accessors(lens["attributes"]["visualizationType"], visualization)
        assert accessors and set(accessors) <= set(columns), lens["attributes"]["title"]
        assert set(columns) <= set(accessors), f"unused columns in {lens['attributes']['title']}"
        kql(lens["attributes"]["state"]["query"]["query"])  # in the subset the tests translate
    dashboards = by_type(objects, "dashboard")
    assert len(dashboards) == len(kibana.DASHBOARDS)
    shown: set[str] = set()
    for dashboard in dashboards.values():
        attributes = dashboard["attributes"]
        json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        json.loads(attributes["optionsJSON"])
        panels = json.loads(attributes["panelsJSON"])
        references = {ref["name"]: ref for ref in dashboard["references"]}
        cells: set[tuple[int, int]] = set()
        for panel in panels:
            reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
            assert reference["type"] == panel["type"] == "lens" and reference["id"] in lenses
            shown.add(reference["id"])
            grid = panel["gridData"]
            assert grid["i"] == panel["panelIndex"] and grid["x"] + grid["w"] <= 48
            area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                    for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not area & cells, f"panels overlap in {attributes['title']}"
            cells |= area
        assert len(references) == len(panels)
    assert shown == set(lenses), "a Lens panel is on no dashboard"


def _accessors(kind: str, visualization: dict[str, Any]) -> list[str]:
    if kind == "lnsXY":
        return [accessor for layer in visualization["layers"]
                for accessor in (layer["xAccessor"], *layer["accessors"],
                                 *([layer["splitAccessor"]] if "splitAccessor" in layer else []))]
    if kind == "lnsPie":
        return [accessor for layer in visualization["layers"]
                for accessor in (*layer["primaryGroups"], *layer["metrics"])]
    assert kind == "lnsDatatable", kind
    return [column["columnId"] for column in visualization["columns"]]


def test_rule_bodies_are_what_the_alerting_api_takes() -> None:
    indices = {*index_names()[:2], findings_index(), anchors_index()}
    for rule in kibana.RULES:
        body = json.loads((DASHBOARDS / f"kibana/rules/{rule.key}.json").read_text())
        assert set(body) == {"name", "rule_type_id", "consumer", "enabled", "schedule", "tags",
                             "params", "actions"}
        params = body["params"]
        (index,) = params["index"]
        assert index.rstrip("*") in indices and params["timeField"] == "@timestamp"
        assert params["thresholdComparator"] in (">", ">=", "<", "<=")
        assert params["timeWindowUnit"] in ("s", "m", "h", "d")
        if body["rule_type_id"] == ".es-query":
            assert params["searchType"] == "esQuery"
            assert set(json.loads(params["esQuery"])) == {"query"}
        else:
            assert body["rule_type_id"] == ".index-threshold"
            kql(params["filterKuery"])
    with_action = kibana.alert_rules(connector_id="slack-1")
    for body in with_action.values():
        (action,) = body["actions"]
        assert action["id"] == "slack-1" and action["group"] == kibana.ACTION_GROUPS[
            body["rule_type_id"]] and action["params"]["message"]


def test_another_prefix_gets_its_own_objects() -> None:
    default, other = kibana.saved_objects(), kibana.saved_objects("acme-audit")
    assert not {item["id"] for item in default} & {item["id"] for item in other}
    titles = {view["attributes"]["title"] for view in by_type(other, "index-pattern").values()}
    assert titles == {"acme-audit-records", "acme-audit-checkpoints", "acme-audit-findings",
                      "acme-audit-anchors"}
    references = {ref["id"] for item in other for ref in item["references"]}
    assert references <= {item["id"] for item in other}
    assert all(body["params"]["index"][0].startswith("acme-audit-")
               for body in kibana.alert_rules("acme-audit").values())


# --- seeded by the instrumentation, shipped to a real Elasticsearch --------------------------


@dataclass
class Seeded:
    prefix: str
    store: Path
    client: Elasticsearch
    overrides: int
    oversight_actions: int
    published: Any


MODELS = (("adult-income", "1"), ("adult-income", "2"), ("churn", "1"))
RARE = 3
"""Decisions of the low-volume model "rare" (the volume-drop rule's target)."""
REVIEWED = 13
"""Decisions a reviewer acted on, every second one overridden (the override-rate rule's)."""


def _submit(event: dict[str, Any]) -> None:
    runtime = get_runtime()
    assert runtime is not None
    runtime.processor.submit_event(event)


def monitoring_events(*, drifted: bool) -> None:
    """Drift and fairness records of one window ending now, in the shared contract's shape."""
    now = time.time_ns()
    window = {"start": rfc3339_from_ns(now - 3600 * 10**9), "end": rfc3339_from_ns(now)}
    model = {"name": "adult-income", "version": "2", "fingerprint": "f" * 64}
    for feature, kind, score in (("age", "numeric", 0.31 if drifted else 0.04),
                                 ("workclass", "categorical", 0.02),
                                 ("prediction", "prediction", 0.01)):
        _submit(new_event(EventType.DRIFT, time_ns=now, model=model, window=window, drift={
            "feature": feature, "kind": kind, "method": "psi", "score": score,
            "threshold": 0.25, "drifted": score > 0.25, "psi": score, "p_value": None,
            "reference_count": 1000, "current_count": 400}))
    for attribute, slices in (("sex", {"Female": (120, 0.18), "Male": (280, 0.31)}),
                              ("race", {"White": (340, 0.27), "Black": (60, 0.2)})):
        rates = [rate for _, rate in slices.values()]
        for name, (count, rate) in slices.items():
            _submit(new_event(EventType.FAIRNESS, time_ns=now, model=model, window=window,
                              fairness={"attribute": attribute, "slice": name, "count": count,
                                        "positives": int(count * 0.6), "selection_rate": rate,
                                        "tpr": rate + 0.4, "fpr": rate / 3,
                                        "dp_difference": max(rates) - min(rates),
                                        "eo_difference": 0.05}))


def _delete(client: Elasticsearch, index: str, doc_id: str) -> None:
    client.indices.refresh(index=index)
    (hit,) = client.search(index=index, query={"ids": {"values": [doc_id]}})["hits"]["hits"]
    client.delete(index=hit["_index"], id=doc_id, refresh=True)


def publish(url: str, prefix: str, public_key: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", "--elasticsearch", url, "--index-prefix",
                                       prefix, "--public-key", str(public_key), "--json",
                                       "--publish-findings"])
    assert result.exit_code in (0, 1), result.output
    assert f"to {findings_index(prefix)}" in result.stderr
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory,
           elasticsearch: ElasticsearchService) -> Iterator[Seeded]:
    """Three model versions deciding, a fourth rarely; half the low-risk decisions sampled
    out; oversight with overrides; a drifted feature; fairness slices. Then one record is
    deleted in Elasticsearch and a verification publishes the gap."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    rng = np.random.default_rng(7)
    features = rng.normal(size=(400, 3))
    labels = (features[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    overrides = 0
    with instrumented(tmp_path_factory.mktemp("seeded"), SklearnInstrumentor,
                      elasticsearch_url=elasticsearch.url, elasticsearch_index_prefix=prefix,
                      sampling_rate=0.5, sampling_keep_risk=("high",)) as process:
        decisions: list[str] = []
        for name, version in (*MODELS, ("rare", "1")):
            model = LogisticRegression().fit(features, labels)
            risk: dict[str, Any] = {"risk": "high"} if name == "rare" else {
                "risk_fn": lambda label: "high" if int(label) == 1 else "low"}
            register_model(model, name=name, version=version, **risk)
            rows = features[:RARE] if name == "rare" else features
            for start in range(0, len(rows), 100):
                model.predict(rows[start:start + 100])
                decisions += last_decision_ids()
        for i, decision in enumerate(decisions[:REVIEWED]):
            action = "overridden" if i % 2 else "accepted"
            overrides += action == "overridden"
            record_oversight(decision, reviewer=f"reviewer-{i % 3}", action=action,
                             role="underwriter", reason="checked against the file")
        monitoring_events(drifted=True)
        process.close()
    anchor_and_ship(process.store, elasticsearch.url, prefix)
    client = Elasticsearch(elasticsearch.url)
    (chain,) = chain_ids(process.store)
    _delete(client, index_names(prefix)[0], f"{chain}:5")
    code, report = publish(elasticsearch.url, prefix, Path(f"{process.store}.pub.pem"))
    assert code == 1 and [(f["seq"], f["kind"]) for f in report["findings"]] == [(5, "gap")]
    yield Seeded(prefix, process.store, client, overrides, REVIEWED, report)
    client.close()


def test_panel_fields_are_mapped_with_the_types_the_panels_declare(seeded: Seeded) -> None:
    objects = kibana.saved_objects(seeded.prefix)
    views = by_type(objects, "index-pattern")
    mappings: dict[str, dict[str, str]] = {}
    for view in views.values():
        index = view["attributes"]["title"]
        found = seeded.client.indices.get_field_mapping(index=index, fields="*")
        mappings[view["id"]] = {name: mapping["type"] for backing in found.values()
                                for name, spec in backing["mappings"].items()
                                for mapping in spec["mapping"].values() if "type" in mapping}
    for lens in by_type(objects, "lens").values():
        _, layer = lens_layer(lens)
        mapped = mappings[layer_data_view(lens)]
        for column in layer["columns"].values():
            if column["operationType"] == "count":
                continue
            field = column["sourceField"]
            assert field in mapped, f"{lens['attributes']['title']}: {field} is not indexed"
            assert LENS_TYPES[mapped[field]] == column["dataType"], (field, mapped[field])


@pytest.mark.parametrize("panel", [panel.key for panel in kibana.PANELS])
def test_every_panel_returns_data_on_seeded_data(seeded: Seeded, panel: str) -> None:
    objects = kibana.saved_objects(seeded.prefix)
    lens = by_type(objects, "lens")[kibana.object_id(seeded.prefix, "lens", panel)]
    view = by_type(objects, "index-pattern")[layer_data_view(lens)]
    rows = lens_rows(seeded.client, lens, view)
    assert rows, f"{lens['attributes']['title']} shows nothing"
    _, layer = lens_layer(lens)
    for column_id, column in layer["columns"].items():
        values = [row[column_id] for row in rows if row[column_id] is not None]
        assert values, f"{lens['attributes']['title']}: column {column['label']} is empty"


def test_panels_show_what_was_recorded(seeded: Seeded) -> None:
    """A few panels checked cell by cell against what the seeding did."""
    objects = kibana.saved_objects(seeded.prefix)
    views = by_type(objects, "index-pattern")

    def table(panel: str) -> list[list[Any]]:
        lens = by_type(objects, "lens")[kibana.object_id(seeded.prefix, "lens", panel)]
        _, layer = lens_layer(lens)
        rows = lens_rows(seeded.client, lens, views[layer_data_view(lens)])
        return sorted([row[i] for i in layer["columnOrder"]] for row in rows)

    versions = table("decisions-by-version")
    assert [row[:2] for row in versions] == [["adult-income", "1"], ["adult-income", "2"],
                                             ["churn", "1"], ["rare", "1"]]
    assert versions[3][2] == RARE
    assert {row[0] for row in table("risk-mix")} == {"high", "low"}
    assert table("overrides-by-reviewer") == sorted(
        [f"reviewer-{r}", sum(1 for i in range(1, 13, 2) if i % 3 == r)] for r in range(3))
    assert table("drifted-features") == [["adult-income", "age", 1, 0.31, 0.25]]
    (accounting,) = table("sampling-accounting")
    (chain,) = chain_ids(seeded.store)
    last = Checkpoint.from_payload(checkpoints(seeded.store, chain)[-1].payload)
    sampled_out = sum(last.counters["sampled_out"].values())
    assert sampled_out > 0 and accounting == [chain, last.size, sampled_out, 0]
    assert table("gaps") == [[chain_ids(seeded.store)[0], "gap", 1, 5]]


def anchor_and_ship(store: Path, url: str, prefix: str) -> None:
    """An anchor of the closed store (kept in its outbox: the WORM side has its own tests),
    shipped to Elasticsearch like everything else, for the `anchoring stalled` rule."""
    with AuditStore(store) as opened:
        key = SigningKey.load(key_beside(store))
        assert Anchorer(opened, key, None).run().built == 1
    shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(url), index_prefix=prefix))
    assert shipper.drain(timeout=60)
    shipper.close()


def test_rules_on_seeded_data(seeded: Seeded) -> None:
    outcomes = {rule.key: rule_outcome(seeded.client, body) for rule, body in zip(
        kibana.RULES, kibana.alert_rules(seeded.prefix).values(), strict=True)}
    assert outcomes == {
        "drift": {"all": 1},
        "integrity": {"all": 1},
        "verify-not-run": {},
        "no-decisions": {},
        "decision-volume-drop": {"rare": RARE},
        "anchoring-stalled": {},
        "override-rate": {"all": pytest.approx(seeded.overrides / seeded.oversight_actions)},
    }
    (anchor,) = seeded.client.search(index=anchors_index(seeded.prefix))["hits"]["hits"]
    assert anchor["_source"]["anchor.seq"] == 1 and anchor["_source"]["anchor.daily"]


def test_rules_stay_silent_on_clean_data(tmp_path: Path,
                                         elasticsearch: ElasticsearchService) -> None:
    """No drifted feature, no verification ever (no findings index), no decisions: only the
    rules about absence fire."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    for process in audited_process(tmp_path, elasticsearch_url=elasticsearch.url,
                                   elasticsearch_index_prefix=prefix):
        monitoring_events(drifted=False)
        process.close()
    client = Elasticsearch(elasticsearch.url)
    assert not client.indices.exists(index=findings_index(prefix))
    outcomes = {rule.key: rule_outcome(client, body) for rule, body in zip(
        kibana.RULES, kibana.alert_rules(prefix).values(), strict=True)}
    assert outcomes == {"drift": {}, "integrity": {}, "verify-not-run": {"all": 0},
                        "no-decisions": {"all": 0}, "decision-volume-drop": {},
                        "anchoring-stalled": {"all": 0}, "override-rate": {}}


def test_integrity_rule_fires_on_a_tampered_chain_only(
        tmp_path: Path, elasticsearch: ElasticsearchService) -> None:
    key = SigningKey.generate()
    key.save(tmp_path / "audit.key.pem", tmp_path / "audit.pub.pem")
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), key, checkpoint_every=4, checkpoint_interval=3600.0)
    for i in range(20):
        writer.submit(inference_event(i))
    assert writer.close()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    shipper = Shipper(str(store), ElasticsearchSink(Elasticsearch(elasticsearch.url),
                                                    index_prefix=prefix))
    assert shipper.drain(timeout=60)
    shipper.close()
    client = Elasticsearch(elasticsearch.url)
    integrity, not_run = (rule_body(prefix, key) for key in ("integrity", "verify-not-run"))
    code, report = publish(elasticsearch.url, prefix, tmp_path / "audit.pub.pem")
    assert code == 0 and report["ok"]
    assert rule_outcome(client, integrity) == {} and rule_outcome(client, not_run) == {}
    # An insider rewrites a decision's risk level, bytes and indexed fields alike.
    (chain,) = chain_ids(store)
    index = index_names(prefix)[0]
    client.indices.refresh(index=index)
    (hit,) = client.search(index=index, query={"ids": {"values": [f"{chain}:8"]}},
                           seq_no_primary_term=True)["hits"]["hits"]
    data = edit_event(base64.b64decode(hit["_source"]["canonical"]), risk={"level": "low"})
    client.index(index=hit["_index"], id=hit["_id"], if_seq_no=hit["_seq_no"],
                 if_primary_term=hit["_primary_term"], refresh=True,
                 document={**record_fields(data), "canonical": base64.b64encode(data).decode()})
    code, report = publish(elasticsearch.url, prefix, tmp_path / "audit.pub.pem")
    assert code == 1 and [(f["seq"], f["kind"]) for f in report["findings"]] == [
        (8, "record_modified")]
    assert rule_outcome(client, integrity) == {"all": 1}
    client.indices.refresh(index=findings_index(prefix))
    runs = client.search(index=findings_index(prefix), query={"term": {"type": "run"}},
                         sort=[{"@timestamp": "asc"}])["hits"]["hits"]
    assert [(run["_source"]["run"]["ok"], run["_source"]["run"]["findings"])
            for run in runs] == [(True, 0), (False, 1)]


def rule_body(prefix: str, key: str) -> dict[str, Any]:
    return kibana.alert_rules(prefix)[kibana.object_id(prefix, "rule", key)]


def test_a_store_verification_publishes_into_the_given_elasticsearch(
        seeded: Seeded, elasticsearch: ElasticsearchService) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    public_key = f"{seeded.store}.pub.pem"
    result = CliRunner().invoke(main, [
        "verify", str(seeded.store), "--public-key", public_key, "--publish-findings",
        "--publish-to", elasticsearch.url, "--index-prefix", prefix])
    assert result.exit_code == 0, result.output
    client = seeded.client
    client.indices.refresh(index=findings_index(prefix))
    (run,) = client.search(index=findings_index(prefix))["hits"]["hits"]
    assert run["_source"]["type"] == "run" and run["_source"]["run"]["ok"] is True
    assert run["_source"]["run"]["source"] == str(seeded.store)
    (mapping,) = client.indices.get_mapping(index=findings_index(prefix)).values()
    assert mapping["mappings"]["dynamic"] == "false"
    down = f"http://127.0.0.1:{free_port()}"
    for arguments, message in (
            (["--publish-findings"], "needs an Elasticsearch to publish into: --publish-to URL"),
            (["--publish-to", elasticsearch.url], "--publish-to goes with --publish-findings"),
            (["--publish-findings", "--publish-to", down], "cannot reach Elasticsearch at")):
        result = CliRunner(env={"OTEL_AI_AUDIT_ELASTICSEARCH_URL": None}).invoke(
            main, ["verify", str(seeded.store), "--public-key", public_key, *arguments])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("otel-ai-audit: error: ") and message in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_drift_rule_on_records_of_the_drift_command(
        tmp_path: Path, elasticsearch: ElasticsearchService) -> None:
    """End to end with the monitoring engineer's `drift --record`: the UCI Adult pipeline
    decides on the test split, then on a shifted copy; the rule stays silent while only the
    clean window is recorded and fires once the shifted one is."""
    train, test = load_split("train").frame[:4000], load_split("test").frame[:1000]
    shifted = test.copy()
    shifted["age"] = shifted["age"] + 15
    shifted["hours_per_week"] = shifted["hours_per_week"] * 1.5
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        model = adult_pipeline().fit(train[NUMERIC + CATEGORICAL], train[TARGET])
        register_model(model, name="adult-income", version="2")
        moments = [time.time_ns()]
        for frame in (test, shifted):
            model.predict_proba(frame[NUMERIC + CATEGORICAL])
            time.sleep(0.002)
            moments.append(time.time_ns())
        process.close()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    rule = rule_body(prefix, "drift")
    client = Elasticsearch(elasticsearch.url)
    runner = CliRunner()
    outcomes = []
    for start, end in zip(moments, moments[1:], strict=False):
        recorded = runner.invoke(main, [
            "drift", "--store", str(process.store), "--model", "adult-income", "--record",
            "--signing-key", str(key_beside(process.store)), "--from", rfc3339_from_ns(start),
            "--to", rfc3339_from_ns(end)])
        assert recorded.exit_code == 0, recorded.output
        shipped = runner.invoke(main, ["ship", "--store", str(process.store), "--elasticsearch",
                                       elasticsearch.url, "--index-prefix", prefix, "--once"])
        assert shipped.exit_code == 0, shipped.output
        outcomes.append(rule_outcome(client, rule))
    assert outcomes[0] == {}
    assert outcomes[1]["all"] >= 2  # age and hours_per_week at least
