"""Evidence bundles that prove they hold the whole window, against a real S3 server with Object
Lock and a real RFC 3161 TSA (the anchors' own services, see tests/integration/test_anchors.py).

Each attack of issue "evidence bundles can leave things out" is played as the officer holding
the bundle key (or a forger holding their own store and keys) would play it, and must fail
`verify-bundle` with the problem that names it; the honest bundle passes with an OK line that
states the window, the system and the counts. Every expected number is counted from the store.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_ai_audit.evidence.bounds import record_id
from otel_ai_audit.evidence.manifest import write_manifest
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.proof import build_proof
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import rfc3339_from_ns
from otel_ai_audit.record.schema import parse_record
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import inference_event, saved_key, tamper
from tests.integration.test_anchors import (  # noqa: F401 - fixtures, found by pytest where imported
    Trail,
    _no_stray_env,
    cli,
    copy_store,
    key,
    rewrite_history,
    s3,
    trail,
)

SYSTEM = "triage-assist"
OTHER = "billing"


@dataclass
class Played:
    """A store of three chains of the system and one of another, anchored before, during and
    after the window `start`..`end` (`middle` splits it); chains by role:

    * `spanning`: records before, in and after the window; closed after it;
    * `inside`: opened and closed inside the window (its range meets both its ends);
    * `idle`: records before and after the window, none in it (an empty range);
    * `other`: another system's chain, active in the window.
    """

    trail: Trail
    start: int
    middle: int
    end: int
    chains: dict[str, str]
    officer: tuple[Path, Path]
    trail_key: Path


def _writer(anchored: Trail, system: str) -> AuditWriter:
    return AuditWriter(str(anchored.path), anchored.key, service_name=system, checkpoint_every=4,
                       checkpoint_interval=3600.0, flush_interval=3600.0)


def _burst(writer: AuditWriter, count: int) -> None:
    for i in range(count):
        writer.submit(inference_event(i))
    assert writer.flush()


def _now() -> int:
    """A moment between two bursts: every record before it was logged and timed before it."""
    time.sleep(0.002)
    moment = time.time_ns()
    time.sleep(0.002)
    return moment


def play(anchored: Trail) -> Played:
    spanning, idle, other = (_writer(anchored, s) for s in (SYSTEM, SYSTEM, OTHER))
    for writer, count in ((spanning, 4), (idle, 3), (other, 3)):
        _burst(writer, count)
    assert anchored.anchor() == 1  # the store's first anchor, daily: before the window
    start = _now()
    _burst(spanning, 5)
    inside = _writer(anchored, SYSTEM)
    _burst(inside, 4)
    assert inside.close()
    _burst(other, 2)
    assert anchored.anchor() == 2  # inside the window
    middle = _now()
    _burst(spanning, 3)
    end = _now()
    _burst(spanning, 3)
    _burst(idle, 2)
    for writer in (spanning, idle, other):
        assert writer.close()
    assert anchored.anchor() == 3  # after the window
    folder = anchored.path.parent
    anchored.key.save(folder / "trail.key.pem", folder / "trail.pub.pem")
    officer = SigningKey.generate()
    officer.save(folder / "officer.key.pem", folder / "officer.pub.pem")
    chains = {role: writer.chain.chain_id for role, writer in
              (("spanning", spanning), ("inside", inside), ("idle", idle), ("other", other))}
    return Played(anchored, start, middle, end, chains,
                  (folder / "officer.key.pem", folder / "officer.pub.pem"),
                  folder / "trail.pub.pem")


@pytest.fixture
def played(trail: Trail) -> Played:  # noqa: F811 - the fixture imported above
    return play(trail)


def build(played: Played, out: Path, end: int | None = None, *, store: Path | None = None,
          exit_code: int = 0) -> Path:
    anchored = played.trail
    result = cli("evidence", str(store or anchored.path), "--system", SYSTEM,
                 "--from", rfc3339_from_ns(played.start),
                 "--to", rfc3339_from_ns(end or played.end), "--out", str(out),
                 "--signing-key", str(played.officer[0]), "--public-key", str(played.trail_key),
                 "--anchors", anchored.location, "--s3-endpoint", anchored.endpoint,
                 "--tsa-cert", str(anchored.certchain))
    assert result.exit_code == exit_code, result.output
    return out


def check(played: Played, bundle: Path, *extra: str) -> Any:
    return cli("verify-bundle", str(bundle), "--public-key", str(played.trail_key),
               "--public-key", str(played.officer[1]), "--tsa-cert",
               str(played.trail.certchain), *extra)


def failures(result: Any) -> list[str]:
    assert result.exit_code == 1, result.output
    return [line[5:] for line in result.stdout.splitlines() if line.startswith("FAIL ")]


def window_events(played: Played, start: int, end: int) -> list[dict[str, Any]]:
    """The system's events with event time in [start, end), read from the store directly."""
    low, high = rfc3339_from_ns(start), rfc3339_from_ns(end)
    system = {played.chains[role] for role in ("spanning", "inside", "idle")}
    with AuditStore(played.trail.path, create=False, readonly=True) as store:
        events = [parse_record(data)["event"] for chain in system
                  for _, data in store.records(chain)]
    return [event for event in events if low <= event["time"] < high]


def short(ns: int) -> str:
    return rfc3339_from_ns(ns)[:-1].rstrip("0").rstrip(".") + "Z"


def resign(bundle: Path, officer: Path, **changes: Any) -> None:
    """Re-sign the bundle's manifest with the officer's key, its facts changed."""
    facts = json.loads((bundle / "manifest.json").read_text())
    for name in ("format", "signing_key_id", "files"):
        facts.pop(name)
    facts.update(changes)
    write_manifest(bundle, SigningKey.load(officer), facts)


# --- the honest bundle -------------------------------------------------------------------------


def test_a_complete_bundle_proves_its_window_against_the_anchors(played: Played,
                                                                 tmp_path: Path) -> None:
    bundle = build(played, tmp_path / "bundle")
    result = check(played, bundle)
    assert result.exit_code == 0, result.output
    events = window_events(played, played.start, played.end)
    decisions = sum(event["type"] == "inference" for event in events)
    assert result.stdout.splitlines()[-1] == (
        f"OK: system {SYSTEM}, window {short(played.start)}..{short(played.end)}, 3 chain(s), "
        f"{len(events)} record(s) ({decisions} decisions), complete against 3 anchor(s)")
    manifest = json.loads((bundle / "manifest.json").read_text())
    ranges = {chain["chain_id"]: chain for chain in manifest["chains"]}
    bounds = {role: json.loads((bundle / ranges[played.chains[role]]["bounds"]).read_text())
              for role in ("spanning", "inside", "idle")}
    # The idle chain: no record in the window, proven by its two neighbours.
    assert ranges[played.chains["idle"]]["records"] == 0
    assert bounds["idle"]["before"] and bounds["idle"]["after"]
    # The chain opened and closed inside the window: its range meets both of its ends.
    inside = ranges[played.chains["inside"]]
    assert (inside["first_seq"], bounds["inside"]["before"], bounds["inside"]["after"]) == (
        0, None, None)
    assert bounds["spanning"]["before"] and bounds["spanning"]["after"]
    assert [c["chain_id"] for c in manifest["foreign_chains"]] == [played.chains["other"]]
    assert (manifest["anchors"]["first"], manifest["anchors"]["last"]) == (1, 3)
    published = {name: played.trail.bucket.get(name, versions[0].version_id)
                 for name, versions in played.trail.bucket.versions().items()}
    for seq in (1, 2, 3):  # the published objects, byte for byte
        assert (bundle / f"anchors/{seq:012d}.json").read_bytes() == published[
            played.trail.bucket.location.key(seq)]


# --- leaving things out ------------------------------------------------------------------------


def test_a_bundle_trimmed_to_half_the_window_and_re_signed_fails_on_its_boundary(
        played: Played, tmp_path: Path) -> None:
    """The officer builds for the first half, then claims the whole window: manifest and
    report edited, manifest re-signed with the officer's own key."""
    bundle = build(played, tmp_path / "half", played.middle)
    assert check(played, bundle).exit_code == 0
    report = bundle / "report.html"
    report.write_text(report.read_text().replace(rfc3339_from_ns(played.middle),
                                                 rfc3339_from_ns(played.end)))
    window = {"from": rfc3339_from_ns(played.start), "to": rfc3339_from_ns(played.end),
              "selects": "event.time"}
    resign(bundle, played.officer[0], window=window)
    problems = failures(check(played, bundle))
    spanning = played.chains["spanning"]
    assert any(p.startswith(f"chain {spanning}: boundary: the record after the range")
               and "before the window end" in p for p in problems), problems
    assert all("boundary" in p for p in problems), problems


def _drop_chain(bundle: Path, chain_id: str, officer: Path) -> None:
    """Remove a chain from the bundle as its signer can: its files, its decisions, its entry."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(c for c in manifest["chains"] if c["chain_id"] == chain_id)
    for name in ("extract", "checkpoints", "tail_proof", "bounds", "consistency"):
        (bundle / entry[name]).unlink()
    kept = [(line, row) for line, row in zip(
        (bundle / "decisions.jsonl").read_text().splitlines(),
        (bundle / "decisions.csv").read_text().splitlines()[1:], strict=True)
        if json.loads(line)["chain_id"] != chain_id]
    (bundle / "decisions.jsonl").write_text("".join(f"{line}\n" for line, _ in kept))
    header = (bundle / "decisions.csv").read_text().splitlines()[0]
    (bundle / "decisions.csv").write_text("\r\n".join([header, *(r for _, r in kept)]) + "\r\n")
    resign(bundle, officer, chains=[c for c in manifest["chains"] if c["chain_id"] != chain_id])


def test_a_chain_active_in_the_window_dropped_from_the_bundle_is_named(
        played: Played, tmp_path: Path) -> None:
    bundle = build(played, tmp_path / "bundle")
    spanning = played.chains["spanning"]
    _drop_chain(bundle, spanning, played.officer[0])
    problems = failures(check(played, bundle))
    assert problems == [f"chain {spanning} is active in the window per anchor 1, but the bundle "
                        "neither holds its range nor proves it another system's: the chain is "
                        "left out"]


def test_an_anchor_left_out_of_the_bundle_breaks_the_run(played: Played,
                                                         tmp_path: Path) -> None:
    bundle = build(played, tmp_path / "bundle")
    (bundle / "anchors/000000000002.json").unlink()
    resign(bundle, played.officer[0])
    problems = failures(check(played, bundle))
    assert "anchors/000000000002.json: missing: the run of anchors is broken" in problems
    assert "anchors/000000000003.json: anchor 3 does not link to anchor 2: the run of anchors " \
           "is broken" not in problems  # said once, at the gap


def test_a_chain_cut_where_a_checkpoint_ends_is_caught_by_the_anchors(
        played: Played, tmp_path: Path) -> None:
    """The smarter trim: the bundle built from a copy of the store whose chain was cut, with
    its checkpoints, inside the window; the failed verification it records is replaced and the
    manifest re-signed. The chain then looks like a running system that stopped there, but the
    anchors saw it go on."""
    spanning = played.chains["spanning"]
    copy = tmp_path / "copy.db"
    copy_store(played.trail.path, copy)
    tamper(copy, "DELETE FROM records WHERE chain_id = ? AND seq >= 8", (spanning,))
    tamper(copy, "DELETE FROM checkpoints WHERE chain_id = ? AND size > 8", (spanning,))
    bundle = build(played, tmp_path / "bundle", store=copy, exit_code=1)
    verification = json.loads((bundle / "integrity/verification.json").read_text())
    assert "rolled_back" in {f["kind"] for f in verification["findings"]}  # as anchor 2 saw it
    (bundle / "integrity/verification.json").write_text(json.dumps(
        {**verification, "ok": True, "findings": []}))
    resign(bundle, played.officer[0])
    result = check(played, bundle)
    problems = failures(result)
    assert f"chain {spanning}: anchor 3 witnessed 16 signed record(s), but the bundle ends the " \
           "chain at seq 7: records after the window are withheld" in problems, problems
    assert f"note: chain {spanning} is open (a running system)" in result.stdout


def test_a_history_rewritten_and_re_signed_with_the_real_key_is_caught_by_the_anchors(
        played: Played, tmp_path: Path) -> None:
    """The key holder changes a decision of the window in a copy of the store and re-signs the
    chain with the real key; the bundle built from it, its failed verification replaced, is
    perfect but for the anchors: the record an anchor saw as a checkpoint's head differs."""
    spanning = played.chains["spanning"]
    copy = tmp_path / "copy.db"
    copy_store(played.trail.path, copy)
    rewrite_history(copy, spanning, played.trail.key, 6)
    bundle = build(played, tmp_path / "bundle", store=copy, exit_code=1)
    verification = json.loads((bundle / "integrity/verification.json").read_text())
    assert "history_rewritten" in {f["kind"] for f in verification["findings"]}
    (bundle / "integrity/verification.json").write_text(json.dumps(
        {**verification, "ok": True, "findings": []}))
    resign(bundle, played.officer[0])
    problems = failures(check(played, bundle))
    assert any(p.startswith(f"chain {spanning}: record seq 7 is not the one anchor 2 witnessed")
               for p in problems), problems
    assert any(p.startswith(f"chain {spanning}: no consistency proof between checkpoint")
               and "witnessed by anchor 3" in p for p in problems), problems


# --- the ends of a chain, and keys ---------------------------------------------------------------


def test_windows_touching_a_chains_start_and_its_closed_end(tmp_path: Path) -> None:
    """No anchors: a window from before a chain to its middle, one from its middle to after its
    close. Cutting the last record off the second and claiming the closed end there fails."""
    signing, public = saved_key(tmp_path)
    store = tmp_path / "audit.db"
    writer = AuditWriter(str(store), signing, service_name=SYSTEM, checkpoint_every=4,
                         checkpoint_interval=3600.0, flush_interval=3600.0)
    before = _now()
    _burst(writer, 6)
    middle = _now()
    _burst(writer, 5)
    assert writer.close()
    after = _now()
    for name, (start, end) in {"start": (before, middle), "end": (middle, after)}.items():
        result = cli("evidence", str(store), "--system", SYSTEM, "--from",
                     rfc3339_from_ns(start), "--to", rfc3339_from_ns(end), "--out",
                     str(tmp_path / name), "--signing-key", str(tmp_path / "audit.key.pem"),
                     "--public-key", str(public))
        assert result.exit_code == 0, result.output
        checked = cli("verify-bundle", str(tmp_path / name), "--public-key", str(public))
        assert checked.exit_code == 0, checked.output
        assert checked.stdout.startswith(f"OK: system {SYSTEM}, window {short(start)}..")
    bounds = {name: json.loads(next((tmp_path / name).glob("integrity/bounds-*.json"))
                               .read_text()) for name in ("start", "end")}
    assert bounds["start"]["before"] is None and bounds["start"]["after"]
    assert bounds["end"]["before"] and bounds["end"]["after"] is None

    bundle = tmp_path / "end"
    manifest = json.loads((bundle / "manifest.json").read_text())
    [entry] = manifest["chains"]
    last = entry["last_seq"]
    extract = bundle / entry["extract"]
    extract.write_bytes(b"".join(extract.read_bytes().splitlines(keepends=True)[:-1]))
    with AuditStore(store, create=False, readonly=True) as opened:
        (bundle / entry["tail_proof"]).write_text(json.dumps(
            build_proof(opened, record_id(opened, entry["chain_id"], last - 1))))
    for log in ("decisions.jsonl", "decisions.csv"):
        lines = (bundle / log).read_bytes().splitlines(keepends=True)
        (bundle / log).write_bytes(b"".join(lines[:-1]))
    resign(bundle, tmp_path / "audit.key.pem",
           chains=[{**entry, "last_seq": last - 1, "records": entry["records"] - 1}])
    problems = failures(cli("verify-bundle", str(bundle), "--public-key", str(public)))
    assert problems == [f"chain {entry['chain_id']}: boundary: the range ends at seq {last - 1}, "
                        f"but checkpoint {_last_checkpoint(store, entry['chain_id'])} covers "
                        f"{last + 1} record(s) and the bundle proves no record after the range: "
                        "records of the window may follow it"]


def _last_checkpoint(store: Path, chain_id: str) -> int:
    with AuditStore(store, create=False, readonly=True) as opened:
        return opened.checkpoints(chain_id)[-1].index


def test_a_forged_bundle_fails_without_a_trusted_key(tmp_path: Path) -> None:
    """A bundle built from the forger's own store, signed with the forger's own keys: it is
    intact, so only trust can fail it. Without --public-key it fails, as `verify` does; with
    --allow-self-asserted it passes with the notice."""
    signing, public = saved_key(tmp_path)
    store = tmp_path / "forged.db"
    writer = AuditWriter(str(store), signing, service_name=SYSTEM)
    start = _now()
    _burst(writer, 5)
    assert writer.close()
    result = cli("evidence", str(store), "--system", SYSTEM, "--from",
                 rfc3339_from_ns(start), "--to", rfc3339_from_ns(_now()), "--out",
                 str(tmp_path / "bundle"), "--signing-key", str(tmp_path / "audit.key.pem"),
                 "--public-key", str(public))
    assert result.exit_code == 0, result.output
    problems = failures(cli("verify-bundle", str(tmp_path / "bundle")))
    assert problems == [
        "self_asserted_key: no --public-key given: the manifest and the checkpoints were checked "
        "with the keys the bundle itself carries, which proves integrity but not who signed; "
        "pass --public-key FILE (the bundle signer's and the trail's keys), or "
        "--allow-self-asserted to accept the bundle's own keys"]
    allowed = cli("verify-bundle", str(tmp_path / "bundle"), "--allow-self-asserted")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("note: no --public-key given: the manifest and the "
                                     "checkpoints were checked with the keys the bundle itself "
                                     "carries")
    assert allowed.stdout.splitlines()[-1].startswith(f"OK: system {SYSTEM}, window ")
