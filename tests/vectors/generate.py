"""Write the test vectors that the Python package and the Go `auditprocessor` must agree on.

    .venv/bin/python -m tests.vectors.generate          # rewrite the files beside this one
    .venv/bin/python -m tests.vectors.generate --check  # exit 1 if they are out of date

* `canonical.json`: RFC 8785's own vectors (the reference repository's testdata, quoted below
  with their source), ES6 number forms, and the project's records: for each, a JSON input, its
  canonical bytes and their RFC 9162 leaf hash, all produced here by the Python side.
* `otlp_trail.jsonl` and `otlp_trail.pub.pem`: a small closed chain sealed by the real `Chain`
  and carried as spans by the real OTLP sink (`record_span`, `checkpoint_span`), as OTLP/JSON
  lines the Collector's file exporter writes; signed with a fixed test key, so the files are
  reproducible byte for byte.
* `sealing.json`: a chain sealed by the real `Chain` from events given as JSON text: each
  record's canonical bytes and leaf hash, and each checkpoint's signed payload and Ed25519
  signature (deterministic, with the fixed test key, whose seed the file holds). The Go
  processor's sealer, which chains telemetry at the gateway, must write the same bytes.
* `otlp_attacks.json`: tamperings of that trail (a record altered, re-serialised, dropped; a
  checkpoint's signature broken; history rewritten and re-linked) with the findings
  `otel-ai-audit verify` reports for each, which the Go processor must report in flight, line
  for line.

`tests/unit/test_vectors.py` checks the files against Python, `go test` in
collector/auditprocessor against Go.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from otel_ai_audit.backends.otlp import layout
from otel_ai_audit.backends.otlp.sink import checkpoint_span, record_span
from otel_ai_audit.backends.otlp.source import read_otlp_export
from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.record.canonical import canonical_json, es6_number
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.verify.verifier import Verifier

HERE = Path(__file__).parent
CANONICAL = HERE / "canonical.json"
TRAIL = HERE / "otlp_trail.jsonl"
TRAIL_KEY = HERE / "otlp_trail.pub.pem"
ATTACKS_FILE = HERE / "otlp_attacks.json"
SEALING = HERE / "sealing.json"

RFC8785_SOURCE = ("github.com/cyberphone/json-canonicalization testdata/input and "
                  "testdata/output at commit 19d51d7 (the RFC 8785 reference vectors)")
RFC8785 = {
    "arrays": ('[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]\n',
               '[56,{"1":[],"10":null,"d":true}]'),
    "french": ('{\n  "peach": "This sorting order",\n  "péché": "is wrong according to '
               'French",\n  "pêche": "but canonicalization MUST",\n  "sin":   "ignore '
               'locale"\n}\n',
               '{"peach":"This sorting order","péché":"is wrong according to French",'
               '"pêche":"but canonicalization MUST","sin":"ignore locale"}'),
    "structures": ('{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": '
                   '"empty",\n  "a": { },\n  "111": [ {"e": "yes","E": "no" } ],\n  "A": { }\n}',
                   '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{"E":"no",'
                   '"e":"yes"}],"A":{},"a":{}}'),
    "unicode": ('{\n  "Unnormalized Unicode":"A\\u030a"\n}\n',
                '{"Unnormalized Unicode":"A\u030a"}'),
    "values": ('{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, '
               '0.000000000000000000000000001],\n  "string": '
               '"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": '
               '[null, true, false]\n}',
               '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
               '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'),
    "weird": ('{\n  "\\u20ac": "Euro Sign",\n  "\\r": "Carriage Return",\n  "\\u000a": '
              '"Newline",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": '
              '"Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": '
              '"Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
              '{"\\n":"Newline","\\r":"Carriage Return","1":"One","</script>":"Browser '
              'Challenge","\u0080":"Control\u007f","ö":"Latin Small Letter O With Diaeresis",'
              '"€":"Euro Sign","😂":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'),
}
ES6_SOURCE = "github.com/cyberphone/json-canonicalization testdata/README.md sample lines"
ES6_NUMBERS = [("4340000000000001", "9007199254740994"), ("4340000000000002", "9007199254740996"),
               ("444b1ae4d6e2ef50", "1e+21"), ("3eb0c6f7a0b5ed8d", "0.000001"),
               ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("8000000000000000", "0"),
               ("0", "0")]
PROJECT_NUMBERS = [0.1, -0.5, 1.5e-7, 123456789012.25, 1e21, 1e-7, 2.0**53 - 1, 5e-324,
                   1.7976931348623157e308, 0.30000000000000004, 100.0, -0.0, 1e16, 123e-20]
PROJECT_VALUES = {
    "unicode": {"z": "zürich ☃ 😂 \u2028 \u0007 \"q\" \\", "é": 1, "\U0001f600": 2, "\ufb33": 3,
                "a\u0000b": [True, False, None]},
    "nested": {"b": [{"y": 1, "x": [0.5, {"k": "v"}]}], "a": {}, "c": []},
    "integers": [0, -1, 9007199254740991, -9007199254740991, 42],
}

SEED = hashlib.sha256(b"otel-ai-audit test vector key").digest()
CHAIN_ID = "0123456789abcdef0123456789abcdef"
BASE_NS = 1_765_000_000_000_000_000
TRAIL_RECORDS = 10
CHECKPOINT_EVERY = 4


def test_key() -> SigningKey:
    """The fixed key the trail is signed with (a test key: never use it for anything else)."""
    return SigningKey(Ed25519PrivateKey.from_private_bytes(SEED))


def trail_events() -> list[dict[str, Any]]:
    """The project's own kinds of event, with fixed ids and times."""
    events = []
    for i in range(TRAIL_RECORDS):
        time_ns = BASE_NS + i * 1_000_003
        kind = [EventType.INFERENCE, EventType.OVERSIGHT, EventType.DRIFT][i % 3]
        events.append(new_event(kind, event_id=f"{i:032x}", time_ns=time_ns,
                                model={"name": "adult-income", "version": "3"},
                                input={"age": 20 + i, "name": "Zoë ☃"},
                                output={"score": 0.001 * i + 0.25, "label": i % 2 == 0}))
    return events


def sealed_trail() -> tuple[list[ReadableSpan], SigningKey]:
    """Spans of a closed chain of `TRAIL_RECORDS` records, checkpointed every
    `CHECKPOINT_EVERY`, in the order the shipper sends them."""
    key = test_key()
    chain = Chain(CHAIN_ID)
    spans: list[ReadableSpan] = []
    for i, event in enumerate(trail_events()):
        spans.append(record_span(chain.seal(event, BASE_NS + i * 1_000_000)))
        if (i + 1) % CHECKPOINT_EVERY == 0:
            spans.append(checkpoint_span(chain.checkpoint(key, BASE_NS + i * 1_000_000 + 1)))
    spans.append(checkpoint_span(chain.checkpoint(key, BASE_NS + TRAIL_RECORDS * 1_000_000,
                                                  closed=True)))
    return spans, key


def otlp_json(spans: list[ReadableSpan]) -> str:
    """One line of OTLP/JSON (hex ids, enums as integers), as the file exporter writes it."""
    document = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for name in ("traceId", "spanId"):
                    span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def key_span_attributes(key: SigningKey) -> list[dict[str, Any]]:
    return [{"key": layout.KIND, "value": {"stringValue": "key"}},
            {"key": layout.KEY_ID, "value": {"stringValue": key.key_id}},
            {"key": layout.KEY_PEM, "value": {"stringValue": key.public_pem}},
            {"key": layout.DOCUMENT_ID, "value": {"stringValue": layout.key_id(key.key_id)}}]


def trail_files() -> dict[Path, str]:
    spans, key = sealed_trail()
    line = json.loads(otlp_json(spans))
    key_span = {"traceId": hashlib.sha256(b"key").hexdigest()[:32],
                "spanId": hashlib.sha256(key.key_id.encode()).hexdigest()[:16],
                "name": layout.span_name("key"), "kind": 1,
                "startTimeUnixNano": str(BASE_NS), "endTimeUnixNano": str(BASE_NS),
                "attributes": key_span_attributes(key), "status": {}}
    scope = line["resourceSpans"][0]["scopeSpans"][0]
    scope["scope"]["version"] = "vectors"  # not the package's version: the file stays put
    scope["spans"].insert(0, key_span)
    text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
    return {TRAIL: text, TRAIL_KEY: key.public_pem}


def vector(name: str, source: str, text: str, expected: str | None = None) -> dict[str, Any]:
    """One case: `text` parsed and canonicalised by Python (and checked against `expected`,
    the reference's output, when there is one)."""
    canonical = canonical_json(json.loads(text))
    if expected is not None and canonical != expected.encode("utf-8"):
        raise AssertionError(f"{name}: Python disagrees with {source}")
    return {"name": name, "source": source, "input": text,
            "canonical": canonical.decode("utf-8"), "leaf_hash": leaf_hash(canonical).hex()}


def canonical_vectors() -> dict[str, Any]:
    cases = [vector(f"rfc8785/{name}", RFC8785_SOURCE, text, expected)
             for name, (text, expected) in RFC8785.items()]
    numbers = []
    for bits, expected in ES6_NUMBERS:
        value = struct.unpack(">d", bytes.fromhex(bits.rjust(16, "0")))[0]
        if es6_number(value) != expected:
            raise AssertionError(f"es6 {bits}: Python gives {es6_number(value)}, not {expected}")
        numbers.append({"ieee_hex": bits.rjust(16, "0"), "canonical": expected,
                        "source": ES6_SOURCE})
    for value in PROJECT_NUMBERS:
        numbers.append({"ieee_hex": struct.pack(">d", value).hex(),
                        "canonical": es6_number(value), "source": "project"})
    for name, value in PROJECT_VALUES.items():
        # Pretty-printed with unsorted keys, escaped non-ASCII: the canonical form undoes all.
        cases.append(vector(f"project/{name}", "project",
                            json.dumps(value, indent=2, ensure_ascii=True)))
    spans, _ = sealed_trail()
    for span in spans[:5]:
        attributes = span.attributes or {}
        if attributes.get(layout.KIND) == "record":
            record = json.loads(str(attributes[layout.RECORD]))
            cases.append(vector(f"project/record-{attributes[layout.CHAIN_SEQ]!s}", "project",
                                json.dumps(record, indent=1, ensure_ascii=True, sort_keys=False),
                                str(attributes[layout.RECORD])))
    return {"about": "RFC 8785 canonical forms and RFC 9162 leaf hashes (SHA-256 of 0x00 || "
                     "canonical bytes) that Python (otel_ai_audit) and Go (collector/"
                     "auditprocessor) must both produce; written by tests/vectors/generate.py",
            "cases": cases, "numbers": numbers}


ATTACKS: list[dict[str, Any]] = [
    {"name": "record 5 altered", "edits": [
        {"op": "replace", "kind": "record", "n": 5, "old": '"score":0.255',
         "new": '"score":0.99'}]},
    {"name": "last record altered", "edits": [
        {"op": "replace", "kind": "record", "n": 9, "old": '"age":29', "new": '"age":30'}]},
    {"name": "record 2 re-serialised", "edits": [
        {"op": "replace", "kind": "record", "n": 2, "old": '"event":{', "new": '"event": {'}]},
    {"name": "record 6 dropped", "edits": [{"op": "drop", "kind": "record", "n": 6}]},
    {"name": "records 3 and 4 dropped", "edits": [{"op": "drop", "kind": "record", "n": 3},
                                                  {"op": "drop", "kind": "record", "n": 4}]},
    {"name": "checkpoint 1 signature flipped", "edits": [
        {"op": "flip_signature", "kind": "checkpoint", "n": 1}]},
    {"name": "history rewritten from record 5 and relinked", "edits": "relinked from 5"},
]
"""Tamperings of the trail that `otel-ai-audit verify --otlp-export` and the Go processor must
report alike (`otlp_attacks.json` holds Python's findings for each)."""


def relinked_edits(start: int) -> list[dict[str, Any]]:
    """Edits that rewrite record `start` and re-link every record after it to the rewritten
    one, as an attacker who can write records but not sign checkpoints would: the links hold,
    only the signed head and Merkle root can tell."""
    records = [json.loads(str((span.attributes or {})[layout.RECORD]))
               for span in sealed_trail()[0]
               if (span.attributes or {}).get(layout.KIND) == "record"]
    edits = []
    prev = leaf_hash(canonical_json(records[start - 1])).hex()
    for seq in range(start, len(records)):
        original = canonical_json(records[seq]).decode("utf-8")
        record = records[seq]
        record["chain"]["prev"] = prev
        if seq == start:
            record["event"]["output"]["score"] = 0.99
        rewritten = canonical_json(record)
        edits.append({"op": "replace", "kind": "record", "n": seq, "old": original,
                      "new": rewritten.decode("utf-8")})
        prev = leaf_hash(rewritten).hex()
    return edits


def tampered(text: str, edits: list[dict[str, Any]]) -> str:
    """The OTLP/JSON line `text` with `edits` applied to the spans they name."""
    document = json.loads(text)
    scope = document["resourceSpans"][0]["scopeSpans"][0]
    kept = []
    for span in scope["spans"]:
        values = {a["key"]: a["value"] for a in span["attributes"]}
        kind = values[layout.KIND]["stringValue"]
        place = values.get(layout.CHAIN_SEQ if kind == "record" else layout.CHECKPOINT_INDEX)
        edit = next((e for e in edits if e["kind"] == kind and place is not None
                     and int(next(iter(place.values()))) == e["n"]), None)
        if edit is not None and edit["op"] == "drop":
            continue
        if edit is not None and edit["op"] == "replace":
            value = values[layout.RECORD]
            altered = value["stringValue"].replace(edit["old"], edit["new"], 1)
            if altered == value["stringValue"]:
                raise AssertionError(f"edit {edit} changes nothing")
            value["stringValue"] = altered
        if edit is not None and edit["op"] == "flip_signature":
            value = values[layout.CHECKPOINT_SIGNATURE]
            signature = bytearray(base64.b64decode(value["stringValue"]))
            signature[0] ^= 1
            value["stringValue"] = base64.b64encode(bytes(signature)).decode("ascii")
        kept.append(span)
    scope["spans"] = kept
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def attack_findings() -> dict[str, Any]:
    """Each attack with the findings `otel-ai-audit verify` reports on the tampered export."""
    trail = trail_files()
    keys = {test_key().key_id: test_key().public_key}
    attacks = []
    with TemporaryDirectory() as directory:
        for attack in ATTACKS:
            if attack["edits"] == "relinked from 5":
                attack = {**attack, "edits": relinked_edits(5)}
            export = Path(directory) / "export.jsonl"
            export.write_text(tampered(trail[TRAIL], attack["edits"]), encoding="utf-8")
            report = Verifier(keys).verify(read_otlp_export(export))
            attacks.append({**attack, "findings": [str(f) for f in report.findings]})
    return {"about": "tamperings of otlp_trail.jsonl and the findings `otel-ai-audit verify` "
                     "reports for each; written by tests/vectors/generate.py",
            "attacks": attacks}


SEALING_POLICY_HASH = hashlib.sha256(b"sealing vector policy").hexdigest()


def sealing_vectors() -> dict[str, Any]:
    """A chain sealed step by step: events in (as non-canonical JSON text, so the sealer must
    canonicalise them), record bytes and checkpoints out."""
    key = test_key()
    chain = Chain(CHAIN_ID)
    steps: list[dict[str, Any]] = []
    events = trail_events()
    events[3]["attributes"] = {"gen_ai.usage.input_tokens": 12, "temperature": 0.7,
                               "unicode": "prompt ☃ \u2028 😂", "nested": {"b": [1.5e-7, None]}}
    for i, event in enumerate(events):
        logged_ns = BASE_NS + i * 1_000_000
        record = chain.seal(event, logged_ns)
        steps.append({"event": json.dumps(event, ensure_ascii=True, indent=1),
                      "event_type": record.type, "logged_ns": logged_ns,
                      "record": record.data.decode("utf-8"),
                      "leaf_hash": leaf_hash(record.data).hex()})
        if (i + 1) % CHECKPOINT_EVERY == 0 or i + 1 == len(events):
            closed = i + 1 == len(events)
            counters = {"sampled_out": i} if i % 2 else {}
            issued = logged_ns + 1
            signed = chain.checkpoint(key, issued, closed=closed, counters=counters,
                                      policy_hash=SEALING_POLICY_HASH)
            steps.append({"checkpoint": {
                "issued_at_ns": issued, "closed": closed, "counters": counters,
                "policy_hash": SEALING_POLICY_HASH, "index": signed.index, "size": signed.size,
                "payload": signed.payload.decode("utf-8"),
                "signature": base64.b64encode(signed.signature).decode("ascii")}})
    return {"about": "tests/vectors/generate.py sealing_vectors: the Go sealer must write "
                     "these bytes (a test key: never use it for anything else)",
            "key_seed": SEED.hex(), "key_id": key.key_id, "chain_id": CHAIN_ID, "steps": steps}


def all_files() -> dict[Path, str]:
    files = {CANONICAL: json.dumps(canonical_vectors(), ensure_ascii=False, indent=1) + "\n",
             ATTACKS_FILE: json.dumps(attack_findings(), ensure_ascii=False, indent=1) + "\n"}
    files[SEALING] = json.dumps(sealing_vectors(), ensure_ascii=False, indent=1) + "\n"
    files.update(trail_files())
    return files


def main(argv: list[str]) -> int:
    stale = [path for path, text in all_files().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is out of date: run python -m tests.vectors.generate")
        return 1 if stale else 0
    for path, text in all_files().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
