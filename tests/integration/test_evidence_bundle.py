"""The 48-hour evidence bundle, end to end: the triage scenario played through the real
scikit-learn instrumentation into a real store, the bundle built and checked by the real CLI
in subprocesses, its report opened in a real headless Chromium.

Every expected number is counted from the store itself, never written down by hand.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from examples.triage.data import HIGH_URGENCY
from examples.triage.scenario import SYSTEM, TriageScenario, run_triage_scenario
from otel_ai_audit.evidence.manifest import SIGNATURE_CONTEXT, write_manifest
from otel_ai_audit.integrity.keys import SigningKey, load_trusted_keys
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import ns_from_rfc3339, rfc3339_from_ns
from otel_ai_audit.record.schema import EventType, new_event, parse_record
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import saved_key, tamper
from tests.conftest import _service_unavailable
from tests.services.base import REPO_ROOT, ServiceStartError
from tests.services.chromium import chromium_binary, render
from tests.services.poppler import pdf_pages, pdf_text

CLI = str(Path(sys.executable).parent / "otel-ai-audit")
IMAGES = REPO_ROOT / "docs" / "images"
"""Where the screenshots of the report go, for the docs and for a person to look at."""
PAGE_HEIGHT = 12000


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *arguments], capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> TriageScenario:
    return run_triage_scenario(tmp_path_factory.mktemp("triage"), patients_per_hour=20,
                               hour_seconds=0.02)


@pytest.fixture(scope="module")
def bundle_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The key the bundle is signed with: the authority's contact's, not the trail's."""
    folder = tmp_path_factory.mktemp("bundle-key")
    _, public = saved_key(folder)
    return folder / "audit.key.pem", public


def evidence(scenario: TriageScenario, bundle_key: tuple[Path, Path], out: Path, start: str,
             end: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("evidence", str(scenario.store), "--system", SYSTEM, "--from", start,
               "--to", end, "--out", str(out), "--signing-key", str(bundle_key[0]),
               "--public-key", str(scenario.public_key), "--subgroup", "age_band",
               "--subgroup", "sex", *(f"--positive-label={label}" for label in HIGH_URGENCY),
               "--dataset", str(scenario.training_data), *extra)


@pytest.fixture(scope="module")
def bundle(scenario: TriageScenario, bundle_key: tuple[Path, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evidence") / "bundle"
    result = evidence(scenario, bundle_key, out, scenario.start, scenario.end,
                      "--decision", scenario.disputed_decision,
                      "--decision", scenario.overridden_decision)
    assert result.returncode == 0, result.stderr + result.stdout
    return out


def trusted(scenario: TriageScenario, bundle_key: tuple[Path, Path]) -> list[str]:
    return ["--public-key", str(scenario.public_key), "--public-key", str(bundle_key[1])]


def store_events(scenario: TriageScenario, start: str, end: str) -> list[dict[str, Any]]:
    """Every event of the store with event time in [start, end), read independently."""
    with AuditStore(scenario.store, create=False, readonly=True) as store:
        events = [parse_record(data)["event"] for chain in store.chain_ids()
                  for _, data in store.records(chain)]
    return [event for event in events if start <= event["time"] < end]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the bundle and its manifest -------------------------------------------------------------


def test_bundle_verifies_offline(scenario: TriageScenario, bundle_key: tuple[Path, Path],
                                 bundle: Path) -> None:
    result = cli("verify-bundle", str(bundle), *trusted(scenario, bundle_key))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"OK: system {SYSTEM}, window ")
    assert "1 chain(s), " in result.stdout and f"({scenario.decisions} decisions)" in result.stdout


def test_manifest_lists_every_file_with_its_sha256_and_is_signed(
        bundle: Path, bundle_key: tuple[Path, Path]) -> None:
    payload = (bundle / "manifest.json").read_bytes()
    manifest = json.loads(payload)
    on_disk = {path.relative_to(bundle).as_posix() for path in bundle.rglob("*")
               if path.is_file()} - {"manifest.json", "manifest.sig"}
    assert {entry["path"] for entry in manifest["files"]} == on_disk
    for entry in manifest["files"]:
        data = (bundle / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), entry["path"]
        assert entry["size"] == len(data)
    [(key_id, public_key)] = load_trusted_keys([bundle_key[1]]).items()
    assert manifest["signing_key_id"] == key_id
    signature = base64.b64decode((bundle / "manifest.sig").read_text())
    assert isinstance(public_key, Ed25519PublicKey)
    public_key.verify(signature, SIGNATURE_CONTEXT + payload)  # raises if it does not hold
    for required in ("report.html", "report.pdf", "decisions.csv", "decisions.jsonl",
                     "decisions-fields.json", "sections/timeline.json", "sections/oversight.json",
                     "sections/incidents.json", "sections/drift.json",
                     "sections/performance.json", "sections/lineage.json",
                     "integrity/verification.json", "keys/bundle-signer.pub.pem",
                     "charts/volume.svg", "charts/overrides.svg", "charts/drift.svg"):
        assert required in on_disk, required
    assert (bundle / "report.pdf").read_bytes().startswith(b"%PDF-")


def test_sections_hold_the_numbers_of_the_store(scenario: TriageScenario, bundle: Path) -> None:
    events = store_events(scenario, scenario.start, scenario.end)
    decisions = {e["id"]: e for e in events if e["type"] == "inference"}
    oversight = [e for e in events if e["type"] == "oversight"]
    outcomes = {e["decision_id"]: e["label"] for e in events if e["type"] == "outcome"}

    rows = read_csv(bundle / "decisions.csv")
    assert len(rows) == len(decisions) == scenario.decisions
    assert {row["record_id"] for row in rows} == set(decisions)
    jsonl = [json.loads(line) for line in (bundle / "decisions.jsonl").read_text().splitlines()]
    assert [line["event"] for line in jsonl] == [decisions[row["record_id"]] for row in rows]
    fields = json.loads((bundle / "decisions-fields.json").read_text())["fields"]
    assert list(fields) == list(rows[0])
    for row in rows:
        assert row["outcome"] == (str(outcomes[row["record_id"]])
                                  if row["record_id"] in outcomes else "")
    assert sum(row["oversight_action"] == "overridden" for row in rows) == scenario.overrides
    assert [row["record_id"] for row in rows if row["disputed"] == "true"] == [
        scenario.disputed_decision]

    section = json.loads((bundle / "sections/oversight.json").read_text())
    assert section["actions"] == dict(Counter(e["action"] for e in oversight))
    assert section["actions"]["overridden"] == scenario.overrides
    high = [e for e in decisions.values() if e["risk"]["level"] == "high"]
    assert section["high_risk_decisions"] == len(high)

    incidents = json.loads((bundle / "sections/incidents.json").read_text())
    [incident] = incidents["incidents"]
    assert incident["event"]["incident"]["id"] == scenario.incident_id
    assert incident["event"]["incident"]["decisions"] == [scenario.disputed_decision]
    assert [d["event"]["decision_id"] for d in incidents["disputes"]] == [
        scenario.disputed_decision]

    timeline = json.loads((bundle / "sections/timeline.json").read_text())
    assert [(e["event"]["type"], e["event"]["model"]["version"]) for e in timeline["events"]] == [
        ("deploy", "1.0.0"), ("deploy", "2.0.0"), ("rollback", "1.0.0")]
    served = {v["version"]: v["decisions"] for v in timeline["served"]}
    assert served == dict(Counter(e["model"]["version"] for e in decisions.values()))

    drift = json.loads((bundle / "sections/drift.json").read_text())
    assert len(drift["records"]) == sum(e["type"] == "drift" for e in events)
    assert drift["drifted"] > 0  # the flu wave

    performance = json.loads((bundle / "sections/performance.json").read_text())
    scored = [e for e in decisions.values() if e["id"] in outcomes]
    assert performance["decisions_with_outcome"] == len(scored)
    overall = next(v for v in performance["versions"] if v["version"] == "all versions")
    everyone = next(s for s in overall["slices"] if s["attribute"] == "(all)")
    correct = sum(str(e["output"]["value"]) == str(outcomes[e["id"]]) for e in scored)
    assert everyone["accuracy"]["value"] == pytest.approx(correct / len(scored))
    bands = {s["value"]: s["count"] for s in overall["slices"] if s["attribute"] == "age_band"}
    assert bands == dict(Counter(e["input"]["value"]["age_band"] for e in scored))

    lineage = json.loads((bundle / "sections/lineage.json").read_text())
    assert sorted(t["version"] for t in lineage["trainings"]) == ["1.0.0", "2.0.0"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    [dataset] = manifest["datasets"]
    assert dataset["sha256"] == hashlib.sha256(scenario.training_data.read_bytes()).hexdigest()

    verification = json.loads((bundle / "integrity/verification.json").read_text())
    assert verification["ok"] and verification["trust"] == "pinned"


def test_window_selects_records_by_event_time(scenario: TriageScenario,
                                              bundle_key: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    """The window from the rollout of v2 to its rollback holds exactly v2's decisions."""
    start, end = scenario.lifecycle["rollout_v2"], scenario.lifecycle["rollback"]
    result = evidence(scenario, bundle_key, tmp_path / "v2", start, end)
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "v2" / "decisions.csv")
    expected = [e["id"] for e in store_events(scenario, start, end) if e["type"] == "inference"]
    assert sorted(row["record_id"] for row in rows) == sorted(expected) and expected
    assert {row["model_version"] for row in rows} == {"2.0.0"}
    assert all(start <= row["time"] < end for row in rows)
    verified = cli("verify-bundle", str(tmp_path / "v2"), *trusted(scenario, bundle_key))
    assert verified.returncode == 0, verified.stdout


def test_charts_show_the_described_time_and_the_window_stays_on_the_recorded_time(
        scenario: TriageScenario, bundle: Path) -> None:
    """The scenario's records describe 48 simulated hours (played in seconds): the charts
    count them by those hours; the window and the OK line are the real, recorded times."""
    decisions = [e for e in store_events(scenario, scenario.start, scenario.end)
                 if e["type"] == "inference"]
    described = sorted({e["described_time"] for e in decisions})
    assert len(described) == 48 and all(e["described_time"] < e["time"] for e in decisions)
    volume = json.loads((bundle / "sections/volume.json").read_text())
    axis = volume["axis"]
    assert axis["time"] == "described" and axis["seconds"] == 48 * 3600
    start = ns_from_rfc3339(axis["start"])
    hours = Counter((ns_from_rfc3339(e["described_time"]) - start) // 3_600_000_000_000
                    for e in decisions)
    assert volume["decisions"] == [hours.get(hour, 0) for hour in range(48)]
    window = json.loads((bundle / "manifest.json").read_text())["window"]
    assert (window["from"], window["selects"]) == (scenario.start, "event.time")
    html = (bundle / "report.html").read_text()
    assert "hours since" in html and "described time" in html


def test_named_decisions_carry_inclusion_proofs(scenario: TriageScenario, bundle: Path) -> None:
    for decision in (scenario.disputed_decision, scenario.overridden_decision):
        proof = bundle / "integrity" / "proofs" / f"{decision}.json"
        result = cli("verify-proof", str(proof), "--public-key", str(scenario.public_key))
        assert result.returncode == 0, result.stdout
        assert parse_record(json.loads(proof.read_text())["record"].encode())["event"][
            "id"] == decision


# --- tampering ---------------------------------------------------------------------------------


def _edit_report(bundle: Path) -> None:
    path = bundle / "report.html"
    path.write_text(path.read_text().replace("verified", "verifled", 1))


def _edit_csv(bundle: Path) -> None:
    path = bundle / "decisions.csv"
    rows = path.read_text().splitlines()
    rows[1] = rows[1].replace(",high,", ",low,") if ",high," in rows[1] else rows[1] + " "
    path.write_text("\n".join(rows) + "\n")


def _remove_section(bundle: Path) -> None:
    (bundle / "sections" / "incidents.json").unlink()


def _add_file(bundle: Path) -> None:
    (bundle / "sections" / "note.txt").write_text("added later\n")


def _forge_manifest(bundle: Path) -> None:
    """Edit the CSV and put its new hash into the manifest, without the key to re-sign it."""
    _edit_csv(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "decisions.csv":
            data = (bundle / "decisions.csv").read_bytes()
            entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _resign_with_another_key(bundle: Path) -> None:
    """Rewrite a record of the chain extract and re-sign everything with the forger's key."""
    extract = next((bundle / "integrity").glob("chain-*.jsonl"))
    lines = extract.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b'"time":"2', b'"time":"1', 1)
    extract.write_bytes(b"\n".join(lines))
    forger = SigningKey.generate()
    (bundle / "keys" / "bundle-signer.pub.pem").write_text(forger.public_pem)
    facts = json.loads((bundle / "manifest.json").read_text())
    for field in ("format", "signing_key_id", "files"):
        facts.pop(field)
    write_manifest(bundle, forger, facts)


TAMPERING: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    "edited report": (_edit_report, "report.html: SHA-256 differs", True),
    "edited CSV row": (_edit_csv, "decisions.csv: SHA-256 differs", True),
    "removed file": (_remove_section, "sections/incidents.json: listed in the manifest but "
                                      "missing", True),
    "added file": (_add_file, "sections/note.txt: not listed in the manifest", True),
    "forged manifest": (_forge_manifest, "manifest.sig does not verify", True),
    "re-signed by another key": (_resign_with_another_key, "not signed by a key you trust", True),
    "re-signed, checked without a trusted key": (
        _resign_with_another_key, "does not link to the record before it", False),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_bundle_fails_verify_bundle(scenario: TriageScenario,
                                             bundle_key: tuple[Path, Path], bundle: Path,
                                             tmp_path: Path, case: str) -> None:
    tamper, message, with_keys = TAMPERING[case]
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    tamper(copy)
    keys = trusted(scenario, bundle_key) if with_keys else []
    result = cli("verify-bundle", str(copy), *keys)
    assert result.returncode == 1, result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert any(message in line for line in problems), result.stdout
    assert with_keys or problems[0].startswith("FAIL self_asserted_key: no --public-key given")
    assert "Traceback" not in result.stderr


def test_decision_log_cannot_be_changed_by_the_bundle_signer(
        scenario: TriageScenario, bundle_key: tuple[Path, Path], bundle: Path,
        tmp_path: Path) -> None:
    """Whoever holds the bundle's key can re-sign the manifest, but the decisions are records
    of the extracts, which only the trail's key vouches for."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    _edit_csv(copy)
    facts = json.loads((copy / "manifest.json").read_text())
    for field in ("format", "signing_key_id", "files"):
        facts.pop(field)
    write_manifest(copy, SigningKey.load(bundle_key[0]), facts)
    result = cli("verify-bundle", str(copy), *trusted(scenario, bundle_key))
    assert result.returncode == 1, result.stdout
    assert "FAIL decisions.csv row 1: differs from decision" in result.stdout


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input_exits_2_with_one_clear_line(scenario: TriageScenario,
                                               bundle_key: tuple[Path, Path], bundle: Path,
                                               tmp_path: Path) -> None:
    cases = {
        "no records": (evidence(scenario, bundle_key, tmp_path / "a", "2001-01-01T00:00:00Z",
                                "2001-01-03T00:00:00Z"), "no records of system"),
        "bad date": (evidence(scenario, bundle_key, tmp_path / "b", "yesterday", scenario.end),
                     "is not a time"),
        "window backwards": (evidence(scenario, bundle_key, tmp_path / "c", scenario.end,
                                      scenario.start), "ends"),
        "unknown system": (cli("evidence", str(scenario.store), "--system", "nope",
                               "--from", scenario.start, "--to", scenario.end, "--out",
                               str(tmp_path / "d"), "--signing-key", str(bundle_key[0])),
                           "no chain belongs to system"),
        "unknown decision": (evidence(scenario, bundle_key, tmp_path / "e", scenario.start,
                                      scenario.end, "--decision", "0" * 32), "no decision"),
        "public key as signing key": (cli(
            "evidence", str(scenario.store), "--system", SYSTEM, "--from",
            scenario.start, "--to", scenario.end, "--out", str(tmp_path / "f"),
            "--signing-key", str(bundle_key[1])), "not an unencrypted PKCS#8 PEM private key"),
        "out not empty": (evidence(scenario, bundle_key, bundle, scenario.start, scenario.end),
                          "not an empty folder"),
        "not a store": (cli("evidence", str(scenario.training_data), "--system",
                            SYSTEM, "--from", scenario.start, "--to", scenario.end, "--out",
                            str(tmp_path / "g"), "--signing-key", str(bundle_key[0])),
                        "not an otel-ai-audit store"),
        "no such bundle": (cli("verify-bundle", str(tmp_path / "missing")), "no such folder"),
        "bad trusted key": (cli("verify-bundle", str(bundle), "--public-key",
                                str(scenario.training_data)), "holds no PEM public key"),
    }
    for name, (result, message) in cases.items():
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, result.stderr)
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def test_wrong_trusted_key_fails(scenario: TriageScenario, bundle: Path) -> None:
    """Checked with only the trail's key, the manifest's signer is not trusted: exit 1."""
    result = cli("verify-bundle", str(bundle), "--public-key", str(scenario.public_key))
    assert result.returncode == 1
    assert "FAIL the manifest is not signed by a key you trust" in result.stdout


# --- the report in a real browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Path:
    try:
        return chromium_binary()
    except ServiceStartError as error:
        _service_unavailable(error)
        raise


def test_report_renders_in_headless_chromium(chromium: Path, scenario: TriageScenario,
                                             bundle: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageChops

    report = bundle / "report.html"
    screenshot = tmp_path / "report.png"
    shot = render(report, f"--screenshot={screenshot}", f"--window-size=1280,{PAGE_HEIGHT}",
                  "--enable-logging=stderr", "--v=0")
    assert shot.returncode == 0, shot.stderr[-2000:]
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line
               or "Uncaught" in line or "Failed to load resource" in line]
    assert console == []
    with Image.open(screenshot) as image:
        page = image.convert("RGB")
    # The whole page, trimmed of the window's blank end, and its first screen for the docs.
    content = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    assert content is not None and content[3] < PAGE_HEIGHT - 40  # the page fits the window
    full = page.crop((0, 0, page.width, content[3] + 24))
    assert len(full.getcolors(1 << 20) or []) > 50  # text and charts drawn
    for name, image in (("evidence-report-full.png", full),
                        ("evidence-report.png", page.crop((0, 0, page.width, 1800)))):
        # 256 colours hold text, lines and flat fills: a smaller file for the docs
        image.quantize(256).save(IMAGES / name, optimize=True)

    dom = render(report, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    overrides = json.loads((bundle / "sections/oversight.json").read_text())["actions"]
    for element, value in (("count-decisions", scenario.decisions),
                           ("count-overrides", overrides["overridden"]),
                           ("count-incidents", 1)):
        assert f'id="{element}">{value}<' in dom.stdout, element
    assert 'class="ok">verified<' in dom.stdout
    assert dom.stdout.count("<svg") >= 3
    html = report.read_text()
    assert "<script" not in html and "src=" not in html and "<link" not in html  # self-contained
    assert scenario.incident_id in dom.stdout


def test_pdf_carries_everything_the_html_shows(bundle: Path) -> None:
    """The PDF is what gets filed: every heading, paragraph, table cell and chart title of the
    page is in its text too."""
    try:
        text = pdf_text(bundle / "report.pdf")
    except ServiceStartError as error:
        _service_unavailable(error)
        raise
    shown = html_texts((bundle / "report.html").read_text(encoding="utf-8"))
    assert len(shown) > 200
    squashed = squash(text)
    missing = [item for item in shown if squash(latin(item)) not in squashed]
    assert missing == []
    for value in ("FPR", "Override rate", "Its p-value", "Target (SHA-256, shape)",
                  "Inclusion proof"):
        assert value in shown


def test_pdf_pages_as_images(bundle: Path) -> None:
    """Every page drawn (pdftoppm) into docs/images, for a person to look at."""
    from PIL import Image

    try:
        pages = pdf_pages(bundle / "report.pdf", IMAGES / "evidence-report-page")
    except ServiceStartError as error:
        _service_unavailable(error)
        raise
    assert len(pages) >= 3
    for page in pages:
        with Image.open(page) as image:
            assert len(image.convert("RGB").getcolors(1 << 20) or []) > 20, page


class _Texts(HTMLParser):
    """The text of each element a reader sees as one item: headings, paragraphs, cells,
    captions, the summary cards."""

    ITEMS = ("h1", "h2", "h3", "p", "th", "td", "figcaption", "b")

    def __init__(self) -> None:
        super().__init__()
        self.items: list[str] = []
        self._open: list[list[str]] = []
        self._svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._svg += tag == "svg"
        if tag in self.ITEMS and not self._svg:
            self._open.append([])

    def handle_endtag(self, tag: str) -> None:
        self._svg -= tag == "svg"
        if tag in self.ITEMS and not self._svg and self._open:
            text = " ".join("".join(self._open.pop()).split())
            if text:
                self.items.append(text)

    def handle_data(self, data: str) -> None:
        if self._open and not self._svg:
            self._open[-1].append(data)


def html_texts(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    return parser.items


def squash(text: str) -> str:
    return "".join(text.split())


def latin(text: str) -> str:
    """As the PDF's core fonts write it."""
    return text.encode("latin-1", "replace").decode("latin-1")


def test_bundle_of_a_running_system(tmp_path: Path, bundle_key: tuple[Path, Path]) -> None:
    """A live system's chain has no closing checkpoint yet: the bundle says so and holds,
    since its records are proven against the checkpoints signed so far."""
    key, trail_key = saved_key(tmp_path)
    writer = AuditWriter(str(tmp_path / "audit.db"), key, service_name="live-system",
                         checkpoint_every=10, checkpoint_interval=3600)
    try:
        first = new_event(EventType.INFERENCE, output={"policy": "full", "value": 1},
                          risk={"level": "high"})
        writer.submit(first)
        for _ in range(28):  # with the chain's opening record: 30, three checkpoints
            writer.submit(new_event(EventType.INFERENCE, output={"policy": "full", "value": 3},
                                    risk={"level": "low"}))
        assert writer.flush()
        end = rfc3339_from_ns(time.time_ns())
        out = tmp_path / "bundle"
        result = cli("evidence", str(tmp_path / "audit.db"), "--system",
                     "live-system", "--from", first["time"], "--to", end, "--out", str(out),
                     "--signing-key", str(bundle_key[0]), "--public-key",
                     str(trail_key), "--decision", first["id"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "has no closing checkpoint" in result.stdout
        checked = cli("verify-bundle", str(out), "--public-key", str(trail_key),
                      "--public-key", str(bundle_key[1]))
        assert checked.returncode == 0, checked.stdout
        assert "has no closing checkpoint" in checked.stdout
        assert len(read_csv(out / "decisions.csv")) == 29

        writer.submit(new_event(EventType.INFERENCE, output={"policy": "full", "value": 2}))
        assert writer.flush()
        unsigned = cli("evidence", str(tmp_path / "audit.db"), "--system",
                       "live-system", "--from", first["time"], "--to",
                       rfc3339_from_ns(time.time_ns()), "--out", str(tmp_path / "later"),
                       "--signing-key", str(bundle_key[0]))
        assert unsigned.returncode == 2
        assert "not signed yet" in unsigned.stderr and not (tmp_path / "later").exists()
    finally:
        writer.close()


def test_a_chain_that_cannot_be_attributed_fails_the_bundle(
        tmp_path: Path, bundle_key: tuple[Path, Path]) -> None:
    """Delete another chain's opening record (which names its system): that chain might be
    the system's, so the bundle cannot claim completeness."""
    key, trail_key = saved_key(tmp_path)
    store = tmp_path / "audit.db"
    for system in ("system-a", "system-b"):
        writer = AuditWriter(str(store), key, service_name=system)
        writer.submit(new_event(EventType.INFERENCE, output={"policy": "full", "value": 1}))
        writer.close()
    with AuditStore(store, create=False, readonly=True) as reader:
        [hidden] = [chain for chain in reader.chain_ids()
                    if b"system-b" in (reader.record_at(chain, 0) or b"")]
    tamper(store, "DELETE FROM records WHERE chain_id = ? AND seq = 0", (hidden,))
    out = tmp_path / "bundle"
    result = cli("evidence", str(store), "--system", "system-a", "--from",
                 "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z", "--out", str(out),
                 "--signing-key", str(bundle_key[0]), "--public-key",
                 str(trail_key))
    assert result.returncode == 1, result.stdout + result.stderr
    checked = cli("verify-bundle", str(out), "--public-key", str(trail_key),
                  "--public-key", str(bundle_key[1]))
    assert checked.returncode == 1
    assert "FAIL the trail did not verify when the bundle was built" in checked.stdout
    verification = json.loads((out / "integrity/verification.json").read_text())
    assert verification["unattributed_chains"] == [hidden]
