"""The Splunk app: every setting of its .conf files is one Splunk reads, its searches use
only fields real records have and HEC indexes, its dashboard is valid Simple XML, and its
alerts fire exactly when they should on records that went through HEC.

Splunk cannot run here (it is on none of the registries we can reach). Settings are checked
against the setting names of Splunk 9.0.3's spec files (`tests/splunk_conf_spec.json`, with
its source). Searches run with `tests.splunk_spl` over what the HEC stand-in indexed from a
real instrumented process, shipped by the real sink.
"""

from __future__ import annotations

import configparser
import json
import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from otel_ai_audit import last_decision_ids, record_oversight, register_model
from otel_ai_audit.backends.splunk_hec.layout import RECORD_FIELDS, RECORD_SOURCETYPE
from otel_ai_audit.dashboards import SPLUNK_APP, splunk
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.store.sqlite import AuditStore
from tests.instrumentation_fixtures import audited_process, instrumented
from tests.integration.test_kibana_dashboards import DASHBOARDS, monitoring_events
from tests.services.splunk_hec import SplunkHec, Token, serve
from tests.splunk_spl import fires, run, run_saved_search, search_time_fields

APP = DASHBOARDS / SPLUNK_APP / "default"
SPEC = json.loads((Path(__file__).parents[1] / "splunk_conf_spec.json").read_text())
"""Setting names Splunk 9.0.3 reads, per .conf file (source and version in the file)."""
FIELD = re.compile(r"\b(?:chain|event)\.[A-Za-z0-9_.]*[A-Za-z0-9_]")
MACRO = re.compile(r"`([^`]+)`")


def conf(name: str) -> configparser.ConfigParser:
    """A .conf file as Splunk reads it: stanzas of `key = value`, no interpolation; a
    repeated stanza or key is an error."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True,
                                       default_section="default")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.SECTCRE = re.compile(r"\[(?P<header>.*)\]")  # default.meta's `[]` is a stanza
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


def unknown_settings(name: str, parser: configparser.ConfigParser) -> set[str]:
    """The `[stanza] key`s of a .conf file that its spec has no setting for (Splunk ignores
    them; btool reports them as invalid)."""
    stanzas = SPEC["keys"][name]
    unknown = set()
    for stanza in parser.sections():
        known = stanzas.get("*") or stanzas.get(stanza, [])
        patterns = [re.compile(re.sub(r"<[^>]*>", ".+", re.escape(key).replace(r"\<", "<")
                                      .replace(r"\>", ">")) + r"\Z") for key in known]
        unknown |= {f"[{stanza}] {key}" for key in parser[stanza]
                    if not any(pattern.match(key) for pattern in patterns)}
    return unknown


def test_every_setting_of_the_app_is_one_splunk_reads() -> None:
    names = [path.name for path in APP.glob("*.conf")]
    assert {"savedsearches.conf", "props.conf", "macros.conf", "fields.conf"} <= set(names)
    for name in [*names, "../metadata/default.meta"]:
        parser = conf(name)
        assert unknown_settings(Path(name).name, parser) == set(), name


def test_the_rest_apis_alert_names_are_not_settings() -> None:
    """`alert_type`, `alert_comparator`, `alert_threshold` are parameters of the saved/searches
    REST endpoint; in savedsearches.conf they are ignored and `counttype` defaults to
    `always`: the alert would fire on every run."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.read_string("[a]\nalert_type = number of events\nalert_comparator = greater than\n"
                       "alert_threshold = 0\ncounttype = number of events\n")
    assert unknown_settings("savedsearches.conf", parser) == {
        "[a] alert_type", "[a] alert_comparator", "[a] alert_threshold"}


def test_saved_searches_are_scheduled_alerts() -> None:
    alerts = conf("savedsearches.conf")
    assert set(alerts.sections()) == {alert.title for alert in splunk.ALERTS}
    for name in alerts.sections():
        stanza = alerts[name]
        assert stanza["search"].strip() and stanza["enableSched"] == "1"
        fields = stanza["cron_schedule"].split()
        assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", part) for part in fields)
        assert stanza["dispatch.earliest_time"] and stanza["dispatch.latest_time"] == "now"
        assert (stanza["counttype"], stanza["relation"], stanza["quantity"]) == (
            "number of events", "greater than", "0")
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
    fields = conf("fields.conf")
    assert not search_time_fields(props, RECORD_SOURCETYPE)  # one value per field, not two
    assert f'sourcetype="{RECORD_SOURCETYPE}"' in macros[splunk.MACRO]["definition"]
    indexed = {"chain.id", "chain.seq", *RECORD_FIELDS}
    assert set(fields.sections()) == indexed
    assert all(fields[name]["INDEXED"] == "true" for name in indexed)
    contract = record_contract(tmp_path)
    for name, query in searches().items():
        assert MACRO.findall(query) == [splunk.MACRO], name
        used = set(FIELD.findall(query))
        assert used, f"{name} reads no record field"
        assert used <= contract, f"{name} uses fields no record has: {used - contract}"
        assert used <= indexed, f"{name} uses fields HEC does not index: {used - indexed}"


# --- the searches, run over what HEC indexed --------------------------------------------------

TOKEN = "00000000-0000-0000-0000-00000000c0de"
LATE = 3 * 3600
"""How late the seeded records reach Splunk: indexed three hours after their event time, as
after an outage, so the one-hour alerts must select by index time to see them."""
WIDE_FEATURES = 1000
"""Features of the model whose records are over 20 KB (one `monitor.features.*` entry and
one captured input per feature)."""
ALERT = {alert.title.removeprefix("otel-ai-audit: "): alert.title for alert in splunk.ALERTS}


@dataclass(frozen=True)
class Seeded:
    """The search results of the seeded process's events, and the Splunk time they are
    searched at (`now`: three hours after the decisions, within the hour they arrived)."""

    results: list[dict[str, Any]]
    now: float


def alerts_fired(results: list[dict[str, Any]], now: float) -> dict[str, list[dict[str, Any]]]:
    """{alert: the rows it fired with} for the alerts that fire, as the generated
    savedsearches.conf schedules them."""
    saved, macros = conf("savedsearches.conf"), conf("macros.conf")
    fired = {}
    for short, title in ALERT.items():
        rows = run_saved_search(saved[title], results, macros=macros, now=now)
        if fires(saved[title], rows):
            fired[short] = rows
    return fired


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A process deciding with two models (one wide, rarely used, whose decision records are
    over 20 KB), reviewers overriding half of four decisions, a drifted feature; shipped by
    the HEC sink to the stand-in, which indexes everything `LATE`."""
    rng = np.random.default_rng(3)
    hec = SplunkHec(tokens={TOKEN: Token()}, clock=lambda: time.time() + LATE)
    with serve(hec), instrumented(tmp_path_factory.mktemp("splunk"), SklearnInstrumentor,
                                  splunk_hec_url=hec.url, splunk_hec_token=TOKEN,
                                  capture_inputs="full",
                                  capture_max_bytes=1_000_000) as process:
        narrow = rng.normal(size=(60, 3))
        model = LogisticRegression().fit(narrow, (narrow[:, 0] > 0).astype(int))
        register_model(model, name="adult-income", version="2")
        for start in range(0, 60, 20):
            model.predict(narrow[start:start + 20])
        for i, decision in enumerate(last_decision_ids()[:4]):
            record_oversight(decision, reviewer=f"r-{i}",
                             action="overridden" if i % 2 else "accepted")
        wide = rng.normal(size=(30, WIDE_FEATURES))
        model = LogisticRegression().fit(wide, (wide[:, 0] > 0).astype(int))
        register_model(model, name="wide", version="1")
        for row in range(3):
            model.predict(wide[row:row + 1])
        monitoring_events(drifted=True)
        process.close()
    yield Seeded(hec.results(), time.time() + LATE)


def test_alerts_fire_on_what_happened_and_see_late_records(seeded: Seeded) -> None:
    fired = alerts_fired(seeded.results, seeded.now)
    assert set(fired) == {"drift over threshold", "decision volume drop", "override-rate spike"}
    assert [(row["event.drift.feature"], row["count"])
            for row in fired["drift over threshold"]] == [("age", 1)]
    assert fired["decision volume drop"] == [{"event.model.name": "wide", "count": 3}]
    assert fired["override-rate spike"] == [{"override_rate": 0.5}]
    # By event time alone (the app's searches before), the last hour holds nothing.
    macros = conf("macros.conf")
    assert run(f"`{splunk.MACRO}` event.type::inference | stats count", seeded.results,
               macros=macros, now=seeded.now, earliest="-1h") == [{"count": 0}]


def test_a_record_over_20_kb_keeps_the_fields_the_alerts_read(seeded: Seeded) -> None:
    """Canonical JSON sorts `type` after `model`, `monitor`, `input`...: Splunk's automatic
    JSON extraction, which stops at `[spath] extraction_cutoff`, would never reach it; the
    indexed fields carry it whatever the size."""
    cutoff = SPEC["limits.conf defaults"]["spath.extraction_cutoff"]
    wide = [result for result in seeded.results if result.get("event.model.name") == "wide"
            and result.get("event.type") == "inference"]
    assert len(wide) == 3
    for result in wide:
        raw = result["_raw"].encode()
        assert len(raw) > 20_000
        assert raw.index(b'"type":"inference"') > cutoff
        assert raw.index(b'"name":"wide"') > cutoff
        assert {name: result[name] for name in ("event.type", "event.model.name",
                                                "event.model.version")} == {
            "event.type": "inference", "event.model.name": "wide", "event.model.version": "1"}
        assert isinstance(result["event.latency_ms"], str)


def test_chain_gap_fires_on_a_deleted_record_not_on_retention(seeded: Seeded) -> None:
    """The completeness panel and the gap alert are one search: a record deleted inside the
    window is a gap in both; the oldest records aged out by retention are a gap in neither."""
    saved, macros = conf("savedsearches.conf"), conf("macros.conf")
    (chain,) = {result["chain.id"] for result in seeded.results if "chain.seq" in result}

    def records_without(seqs: set[int]) -> list[dict[str, Any]]:
        return [result for result in seeded.results
                if "chain.seq" not in result or int(result["chain.seq"]) not in seqs]

    def panel(results: list[dict[str, Any]]) -> list[tuple[str, float]]:
        return [(row["chain.id"], row["missing"]) for row in run(
            splunk.COMPLETENESS, results, macros=macros, now=seeded.now, earliest="-30d")]

    assert panel(seeded.results) == [(chain, 0)]
    aged_out = records_without({0, 1, 2, 3})
    assert panel(aged_out) == [(chain, 0)] and "chain gap" not in alerts_fired(aged_out,
                                                                                seeded.now)
    deleted = records_without({5})
    assert panel(deleted) == [(chain, 1)]
    (row,) = run_saved_search(saved[ALERT["chain gap"]], deleted, macros=macros,
                              now=seeded.now)
    assert (row["chain.id"], row["missing"]) == (chain, 1)


def test_every_panel_returns_rows_with_values(seeded: Seeded) -> None:
    macros = conf("macros.conf")
    root = ElementTree.parse(APP / "data/ui/views" / f"{splunk.APP}.xml").getroot()
    for panel in root.iter("panel"):
        rows = run(panel.findtext(".//query") or "", seeded.results, macros=macros,
                   now=seeded.now, earliest=panel.findtext(".//earliest") or "0")
        assert rows, panel.findtext(".//title")
        assert all(value is not None for row in rows for value in row.values()), rows


def test_only_the_absence_alert_fires_on_a_quiet_process(tmp_path: Path) -> None:
    """No decisions, no drift, no oversight: "no decisions recorded" fires, nothing else
    (before, each alert fired on every run: `counttype` defaults to `always`)."""
    hec = SplunkHec(tokens={TOKEN: Token()})
    with serve(hec):
        for process in audited_process(tmp_path, splunk_hec_url=hec.url,
                                       splunk_hec_token=TOKEN):
            monitoring_events(drifted=False)
            process.close()
    fired = alerts_fired(hec.results(), time.time())
    assert fired == {"no decisions recorded": [{"count": 0}]}
