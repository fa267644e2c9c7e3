"""Golden reports of the verifier: capture them while tests run, compare them after a change.

Capture (a pytest plugin): every `Verifier.verify` of an `AuditStore` that the tests make is
saved as one case: a copy of the store files, the verifier's settings (trusted keys as PEM,
the anchor history pickled) and the report, as JSON and as `otel-ai-audit verify` prints it::

    .venv/bin/python -m pytest -p tests.verify_golden --verify-golden DIR \\
        tests/unit/test_verify_attacks.py

Compare: verify every saved case again with the verifier as it is now and report each case
whose JSON or text report is not byte-for-byte the one saved (exit 1 if any)::

    .venv/bin/python -m tests.verify_golden DIR

The stores are saved, not rebuilt, because the tests write them with fresh random keys.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_ai_audit.cli.verify import print_report
from otel_ai_audit.integrity.keys import load_public_key_pem, public_pem
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier

_SUFFIXES = ("", "-wal", "-shm")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--verify-golden", metavar="DIR",
                     help="save every store the tests verify, with its report, into DIR")


def _rendered(report: Report) -> tuple[str, str]:
    """The report as `otel-ai-audit verify --json` and `otel-ai-audit verify` print it."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print_report(report)
    return json.dumps(report.to_json(), indent=2) + "\n", text.getvalue()


@pytest.fixture(autouse=True)
def _capture_verifications(request: pytest.FixtureRequest,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = request.config.getoption("--verify-golden")
    if not root:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
    original = Verifier.verify
    calls = [0]

    def verify(self: Verifier, source: Any) -> Report:
        if not isinstance(source, AuditStore):
            return original(self, source)
        case = Path(root) / f"{name}.{calls[0]}"
        calls[0] += 1
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir(parents=True)
        for suffix in _SUFFIXES:
            if Path(source.path + suffix).is_file():
                shutil.copyfile(source.path + suffix, case / f"audit.db{suffix}")
        settings = {"description": source.description,
                    "trusted_keys": {key: public_pem(value)
                                     for key, value in self.policy.trusted_keys.items()},
                    "allow_self_asserted": self.policy.allow_self_asserted,
                    "allowed_losses": self.allowed_losses}
        (case / "settings.json").write_text(json.dumps(settings))
        (case / "anchors.pickle").write_bytes(pickle.dumps(self.anchors))
        report = original(self, source)
        as_json, as_text = _rendered(report)
        (case / "report.json").write_text(as_json)
        (case / "report.txt").write_text(as_text)
        return report

    monkeypatch.setattr(Verifier, "verify", verify)


def compare(root: Path) -> list[str]:
    """The cases under `root` whose reports differ now, each with the first differing line."""
    differing = []
    for case in sorted(path for path in root.iterdir() if (path / "report.json").is_file()):
        settings = json.loads((case / "settings.json").read_text())
        verifier = Verifier(
            {key: load_public_key_pem(pem) for key, pem in settings["trusted_keys"].items()},
            allow_self_asserted=settings["allow_self_asserted"],
            anchors=pickle.loads((case / "anchors.pickle").read_bytes()),
            allowed_losses=settings["allowed_losses"])
        with AuditStore(case / "audit.db", create=False, readonly=True) as store:
            store.description = settings["description"]
            report = verifier.verify(store)
        for now, saved in zip(_rendered(report), ("report.json", "report.txt"), strict=True):
            before = (case / saved).read_text()
            if now != before:
                first = next((f"- {old}\n+ {new}" for old, new in zip(
                    before.splitlines(), now.splitlines(), strict=False) if old != new),
                    "(lengths differ)")
                differing.append(f"{case.name} {saved}:\n{first}")
    return differing


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m tests.verify_golden DIR (a directory of saved cases)")
        return 2
    cases = sum(1 for path in Path(argv[0]).iterdir() if (path / "report.json").is_file())
    differing = compare(Path(argv[0]))
    for line in differing:
        print(f"DIFFERS {line}")
    print(f"{cases} case(s), {len(differing)} differing")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
