"""A Splunk app with the same views and alerts as the Kibana objects, over HEC-shipped records.

Records arrive with sourcetype `otel_ai_audit:record` and `_raw` = the canonical record JSON
(see `otel_ai_audit.backends.splunk_hec.layout`). Their search fields are the HEC indexed
fields `chain.id`, `chain.seq` and `layout.RECORD_FIELDS` (`event.type`, `event.model.name`,
`event.drift.score`, ...), so they exist whatever the record's size; searches match them with
`field::value` and `props.conf` turns search-time JSON extraction off for the sourcetype
(`KV_MODE = none`), which would otherwise give each indexed field a second, equal value.
Searches start from the macro `otel_ai_audit_records`, which users point at their index.

Alerts fire when their search returns a row (`counttype = number of events`, `relation =
greater than`, `quantity = 0`: the savedsearches.conf keys; `alert_type`... are the REST
API's names, which a .conf file ignores). The one-hour alerts select by index time
(`_index_earliest`), so records that arrive late after an outage are still seen.

The signed checkpoints reach Splunk base64-encoded, so their counters (the sampling accounting
panel in Kibana) are not searchable here; chain completeness (gaps by seq) is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from otel_ai_audit.backends.splunk_hec.layout import RECORD_FIELDS, RECORD_SOURCETYPE

APP = "otel_ai_audit"
MACRO = "otel_ai_audit_records"
_RECORDS = f"`{MACRO}`"


@dataclass(frozen=True)
class Search:
    """A Splunk search shown as a dashboard panel (`chart`) or scheduled as an alert, which
    fires when the search returns any row (`cron` set)."""

    title: str
    query: str
    chart: str = "table"
    earliest: str = "-7d"
    cron: str = ""
    description: str = ""
    severity: int = 3


LATE_DELIVERY = "-24h"
"""How far back in event time the one-hour alerts look for records indexed in the last hour:
records delivered more than this late are left to the chain-gap alert and to verification."""
GAP_WINDOW = "-7d"
"""Chain completeness looks at records indexed in this window, which must be shorter than the
index's retention (`frozenTimePeriodInSecs`): then retention ageing out a chain's first
records is never a gap, and a record deleted inside the window always is."""
_LAST_HOUR = "_index_earliest=-1h _index_latest=now"

COMPLETENESS = (f"{_RECORDS} _index_earliest={GAP_WINDOW} _index_latest=now | stats count "
                "dc(chain.seq) as seqs min(chain.seq) as lowest max(chain.seq) as highest by "
                "chain.id | eval missing=highest-lowest+1-seqs")
"""Per chain, the seqs missing between the lowest and highest indexed in `GAP_WINDOW` (the
panel, and with `where missing>0` the alert)."""

PANELS: tuple[Search, ...] = (
    Search("Decisions over time by model",
           f"{_RECORDS} event.type::inference | timechart count by event.model.name",
           "column"),
    Search("Decisions by model and version",
           f"{_RECORDS} event.type::inference | stats count avg(event.latency_ms) as "
           "mean_latency_ms by event.model.name event.model.version"),
    Search("Risk mix", f"{_RECORDS} event.type::inference | stats count by event.risk.level",
           "pie"),
    Search("Model latency (ms)",
           f"{_RECORDS} event.type::inference | timechart avg(event.latency_ms) as mean "
           "max(event.latency_ms) as max", "line"),
    Search("Chain completeness", COMPLETENESS, earliest="-30d"),
    Search("Drift score per feature",
           f"{_RECORDS} event.type::drift | timechart max(event.drift.score) by "
           "event.drift.feature", "line"),
    Search("Drifted features",
           f"{_RECORDS} event.type::drift event.drift.drifted::true | stats count "
           "max(event.drift.score) as worst max(event.drift.threshold) as threshold by "
           "event.model.name event.drift.feature"),
    Search("Fairness per slice",
           f"{_RECORDS} event.type::fairness | stats avg(event.fairness.selection_rate) as "
           "selection_rate avg(event.fairness.tpr) as tpr avg(event.fairness.fpr) as fpr "
           "sum(event.fairness.count) as decisions by event.fairness.attribute "
           "event.fairness.slice"),
    Search("Fairness gaps over time",
           f"{_RECORDS} event.type::fairness | timechart max(event.fairness.dp_difference) by "
           "event.fairness.attribute", "line"),
    Search("Human-oversight actions",
           f"{_RECORDS} event.type::oversight | timechart count by event.action", "column"),
    Search("Overrides by reviewer",
           f"{_RECORDS} event.type::oversight event.action::overridden | stats count by "
           "event.reviewer.id"),
)

ALERTS: tuple[Search, ...] = (
    Search("otel-ai-audit: drift over threshold",
           f"{_RECORDS} event.type::drift event.drift.drifted::true {_LAST_HOUR} | stats count "
           "max(event.drift.score) as score by event.model.name event.model.version "
           "event.drift.feature", earliest=LATE_DELIVERY, cron="*/15 * * * *",
           description="A monitored feature drifted past its threshold.", severity=4),
    Search("otel-ai-audit: chain gap", f"{COMPLETENESS} | where missing>0", earliest="-30d",
           cron="7 * * * *",
           description="Records are missing inside a chain (deleted, or never delivered).",
           severity=5),
    Search("otel-ai-audit: no decisions recorded",
           f"{_RECORDS} event.type::inference {_LAST_HOUR} | stats count | where count<1",
           earliest=LATE_DELIVERY, cron="*/15 * * * *",
           description="No inference record arrived in the last hour.", severity=4),
    Search("otel-ai-audit: decision volume drop",
           f"{_RECORDS} event.type::inference {_LAST_HOUR} | stats count by event.model.name "
           "| where count<10", earliest=LATE_DELIVERY, cron="*/15 * * * *",
           description="A model recorded fewer than 10 decisions in the last hour."),
    Search("otel-ai-audit: override-rate spike",
           f"{_RECORDS} event.type::oversight {_LAST_HOUR} "
           "| eval overridden=if(in('event.action', \"overridden\", \"reversed\"), 1, 0) "
           "| stats avg(overridden) as override_rate | where override_rate>0.3",
           earliest=LATE_DELIVERY, cron="*/15 * * * *",
           description="Reviewers overrode or reversed the model in more than 30% of their "
                       "oversight actions of the last hour."),
)


def savedsearches_conf() -> str:
    """Each alert as a scheduled saved search that fires when its search returns a row."""
    stanzas = []
    for alert in ALERTS:
        settings = {
            "description": alert.description, "search": alert.query,
            "enableSched": "1", "cron_schedule": alert.cron,
            "dispatch.earliest_time": alert.earliest, "dispatch.latest_time": "now",
            "counttype": "number of events", "relation": "greater than", "quantity": "0",
            "alert.track": "1", "alert.digest_mode": "1",
            "alert.severity": str(alert.severity), "alert.suppress": "0"}
        stanzas.append(f"[{alert.title}]\n" + "".join(f"{key} = {value}\n"
                                                      for key, value in settings.items()))
    return "\n".join(stanzas)


def dashboard_xml() -> str:
    root = ElementTree.Element("dashboard", version="1.1")
    ElementTree.SubElement(root, "label").text = "otel-ai-audit"
    ElementTree.SubElement(root, "description").text = (
        "Decisions, risk, latency, chain completeness, drift, fairness and human oversight "
        "from the otel-ai-audit records.")
    for start in range(0, len(PANELS), 2):  # two panels a row
        row = ElementTree.SubElement(root, "row")
        for panel in PANELS[start:start + 2]:
            element = ElementTree.SubElement(ElementTree.SubElement(row, "panel"),
                                             "table" if panel.chart == "table" else "chart")
            ElementTree.SubElement(element, "title").text = panel.title
            search = ElementTree.SubElement(element, "search")
            ElementTree.SubElement(search, "query").text = panel.query
            ElementTree.SubElement(search, "earliest").text = panel.earliest
            ElementTree.SubElement(search, "latest").text = "now"
            if panel.chart != "table":
                ElementTree.SubElement(element, "option",
                                       name="charting.chart").text = panel.chart
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def app_files() -> dict[str, str]:
    """{path inside the app folder: text} of the whole Splunk app."""
    return {
        "default/app.conf": ("[install]\nis_configured = 0\n\n[ui]\nis_visible = 1\n"
                             "label = otel-ai-audit\n\n[launcher]\nauthor = otel-ai-audit\n"
                             "description = Audit trail dashboards and alerts\n"
                             "version = 0.1.0\n"),
        "default/props.conf": f"[{RECORD_SOURCETYPE}]\nKV_MODE = none\nTRUNCATE = 0\n",
        "default/fields.conf": "\n".join(f"[{name}]\nINDEXED = true\n"
                                          for name in ("chain.id", "chain.seq",
                                                       *RECORD_FIELDS)),
        "default/macros.conf": (f"[{MACRO}]\n"
                                f'definition = sourcetype="{RECORD_SOURCETYPE}"\n'
                                "iseval = 0\n"),
        "default/savedsearches.conf": savedsearches_conf(),
        f"default/data/ui/views/{APP}.xml": dashboard_xml(),
        "metadata/default.meta": "[]\naccess = read : [ * ], write : [ admin ]\nexport = system\n",
    }
