"""The Splunk app: its .conf files parse, its searches use only fields real records have, and
its dashboard is valid Simple XML with a query in every panel.

Splunk cannot run here (it is on none of the registries we can reach). The field check is
against records the instrumentation really writes (inference, oversight, drift, fairness),
flattened as KV_MODE=json flattens the `_raw` canonical JSON.
"""

from __future__ import annotations

import configparser
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from otel_ai_audit import last_decision_ids, record_oversight, register_model
from otel_ai_audit.backends.splunk_hec.layout import RECORD_SOURCETYPE
from otel_ai_audit.dashboards import SPLUNK_APP, splunk
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.store.sqlite import AuditStore
from tests.instrumentation_fixtures import instrumented
from tests.integration.test_kibana_dashboards import DASHBOARDS, monitoring_events

APP = DASHBOARDS / SPLUNK_APP / "default"
FIELD = re.compile(r"\b(?:chain|event)\.[A-Za-z0-9_.]*[A-Za-z0-9_]")
MACRO = re.compile(r"`([^`]+)`")


def conf(name: str) -> configparser.ConfigParser:
    """A .conf file as Splunk reads it: stanzas of `key = value`, no interpolation; a
    repeated stanza or key is an error."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True,
                                       default_section="default")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((APP / name).read_text(encoding="utf-8"), source=name)
    return parser


def flatten(data: Any, prefix: str = "") -> set[str]:
    if isinstance(data, dict):
        return {name for key, value in data.items()
                for name in flatten(value, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


def record_contract(tmp_path: Path) -> set[str]:
    """Every field path of the records one instrumented process writes."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 3))
    with instrumented(tmp_path, SklearnInstrumentor) as process:
        model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
        register_model(model, name="adult-income", version="2")
        model.predict(features)
        for decision in last_decision_ids()[:2]:
            record_oversight(decision, reviewer="r-1", action="overridden", reason="policy")
        monitoring_events(drifted=True)
        process.close()
    with AuditStore(process.store, create=False, readonly=True) as store:
        records = [json.loads(data) for chain in store.chain_ids()
                   for _, data in store.records(chain)]
    types = {record["event"]["type"] for record in records}
    assert {"inference", "oversight", "drift", "fairness"} <= types
    return {name for record in records for name in flatten(record)}


def searches() -> dict[str, str]:
    alerts = conf("savedsearches.conf")
    found = {f"alert {name}": alerts[name]["search"] for name in alerts.sections()}
    root = ElementTree.parse(APP / "data/ui/views" / f"{splunk.APP}.xml").getroot()
    for panel in root.iter("panel"):
        (title,) = panel.iter("title")
        (query,) = panel.iter("query")
        found[f"panel {title.text}"] = query.text or ""
    return found


def test_saved_searches_are_scheduled_alerts() -> None:
    alerts = conf("savedsearches.conf")
    assert set(alerts.sections()) == {alert.title for alert in splunk.ALERTS}
    for name in alerts.sections():
        stanza = alerts[name]
        assert stanza["search"].strip() and stanza["enableSched"] == "1"
        fields = stanza["cron_schedule"].split()
        assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", part) for part in fields)
        assert stanza["dispatch.earliest_time"] and stanza["dispatch.latest_time"] == "now"
        assert stanza["alert_type"] == "number of events"
        assert stanza["alert_comparator"] == "greater than" and stanza["alert_threshold"] == "0"
        assert stanza["alert.track"] == "1" and 1 <= int(stanza["alert.severity"]) <= 6


def test_dashboard_is_simple_xml_with_a_query_per_panel() -> None:
    root = ElementTree.parse(APP / "data/ui/views" / f"{splunk.APP}.xml").getroot()
    assert root.tag == "dashboard" and root.findtext("label")
    panels = list(root.iter("panel"))
    assert len(panels) == len(splunk.PANELS)
    for panel in panels:
        (element,) = list(panel)
        assert element.tag in ("chart", "table") and element.findtext("title")
        assert element.findtext("search/query", "").strip()
        assert element.findtext("search/earliest") and element.findtext("search/latest")


def test_every_search_reads_records_through_the_macro_and_known_fields(tmp_path: Path) -> None:
    macros = conf("macros.conf")
    props = conf("props.conf")
    assert props[RECORD_SOURCETYPE]["KV_MODE"] == "json"
    assert f'sourcetype="{RECORD_SOURCETYPE}"' in macros[splunk.MACRO]["definition"]
    contract = record_contract(tmp_path)
    for name, query in searches().items():
        assert MACRO.findall(query) == [splunk.MACRO], name
        used = set(FIELD.findall(query))
        assert used, f"{name} reads no record field"
        assert used <= contract, f"{name} uses fields no record has: {used - contract}"
