"""Dashboards and alert rules for the audit indices: Kibana (`kibana`) and Splunk (`splunk`).

The files under `dashboards/` in the repository are generated from these builders
(`python -m otel_ai_audit.dashboards`); `otel-ai-audit kibana install` uses them directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from otel_ai_audit.dashboards import kibana, splunk

KIBANA_OBJECTS = "kibana/otel-ai-audit.ndjson"
KIBANA_RULES = "kibana/rules"
SPLUNK_APP = f"splunk/{splunk.APP}"


def generated_files() -> dict[str, str]:
    """{path under `dashboards/`: text} of every generated file, for the default prefix."""
    files = {KIBANA_OBJECTS: kibana.to_ndjson(kibana.saved_objects())}
    for rule in kibana.RULES:
        files[f"{KIBANA_RULES}/{rule.key}.json"] = json.dumps(
            kibana.rule_body(rule), indent=2, sort_keys=True) + "\n"
    for path, text in splunk.app_files().items():
        files[f"{SPLUNK_APP}/{path}"] = text
    return files


def write(directory: Path) -> list[Path]:
    """Write every generated file under `directory`; return their paths."""
    written = []
    for name, text in generated_files().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
