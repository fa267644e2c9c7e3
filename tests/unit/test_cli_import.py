"""`otel-ai-audit import`: a trail exported through a Collector copied into a store as it is."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from otel_ai_audit.backends.otlp.source import read_otlp_export
from otel_ai_audit.cli import main
from otel_ai_audit.store.sqlite import AuditStore

VECTORS = Path(__file__).parents[1] / "vectors"
TRAIL = VECTORS / "otlp_trail.jsonl"
"""A closed chain of 10 records with 3 checkpoints, as the OTLP sink sends it."""


def test_the_imported_store_holds_the_trail_as_it_was_and_verifies(tmp_path: Path) -> None:
    store = tmp_path / "imported.db"
    result = CliRunner().invoke(main, ["import", str(store), "--otlp-export", str(TRAIL)])
    assert result.exit_code == 0, result.output
    assert "imported 10 record(s) of 1 chain(s)" in result.output
    export = read_otlp_export(TRAIL)
    with AuditStore(store, create=False, readonly=True) as imported:
        (chain_id,) = imported.chain_ids()
        assert list(imported.records(chain_id)) == list(export.records(chain_id))
        assert imported.checkpoints(chain_id) == export.checkpoints(chain_id)
        assert imported.public_keys() == export.public_keys()
        assert imported.find_record(json.loads(export.record_at(chain_id, 4) or b"")[
            "event"]["id"]) == (chain_id, 4, export.record_at(chain_id, 4))
    result = CliRunner().invoke(main, ["verify", str(store), "--public-key",
                                       str(VECTORS / "otlp_trail.pub.pem")])
    assert result.exit_code == 0, result.output

    again = CliRunner().invoke(main, ["import", str(store), "--otlp-export", str(TRAIL)])
    assert again.exit_code == 2 and f"already holds chain(s) {chain_id}" in again.output


def test_two_records_at_one_position_are_refused(tmp_path: Path) -> None:
    lines = TRAIL.read_text().splitlines()
    document = json.loads(lines[0])
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    record = next(span for span in spans if any(
        a["key"] == "ai_audit.kind" and a["value"]["stringValue"] == "record"
        for a in span["attributes"]))
    for attribute in record["attributes"]:
        if attribute["key"] == "ai_audit.record":
            attribute["value"]["stringValue"] = attribute["value"]["stringValue"].replace(
                '"type":"', '"type":"x')
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join([*lines, json.dumps(document)]) + "\n")
    result = CliRunner().invoke(main, ["import", str(tmp_path / "s.db"), "--otlp-export",
                                       str(export)])
    assert result.exit_code == 2 and "two records at one position" in result.output, \
        result.output


def test_one_source_is_needed() -> None:
    result = CliRunner().invoke(main, ["import", "s.db"])
    assert result.exit_code == 2
    assert "give one of --otlp-export FILE or --splunk-export FILE" in result.output


def test_a_rotated_export_is_read_as_one_archive(tmp_path: Path) -> None:
    """A file exporter with `rotation` leaves the current file and backups: given together
    they verify and import as the one trail; one of them alone is missing records."""
    document = json.loads(TRAIL.read_text())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    files = []
    for name, part in (("archive-2026-12-07T10-00-00.000.jsonl", spans[:len(spans) // 2]),
                       ("archive.jsonl", spans[len(spans) // 2:])):
        rotated = json.loads(TRAIL.read_text())
        rotated["resourceSpans"][0]["scopeSpans"][0]["spans"] = part
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(rotated) + "\n")
    key = ["--public-key", str(VECTORS / "otlp_trail.pub.pem")]
    exports = [option for path in reversed(files) for option in ("--otlp-export", str(path))]

    together = CliRunner().invoke(main, ["verify", *exports, *key])
    assert together.exit_code == 0, together.output
    alone = CliRunner().invoke(main, ["verify", "--otlp-export", str(files[0]), *key])
    assert alone.exit_code == 1, alone.output

    whole = read_otlp_export(TRAIL)
    (chain_id,) = whole.chain_ids()
    assert list(read_otlp_export(*files).records(chain_id)) == list(whole.records(chain_id))
    result = CliRunner().invoke(main, ["import", str(tmp_path / "s.db"), *exports])
    assert result.exit_code == 0 and "and 1 more files (OTLP export)" in result.output, \
        result.output
