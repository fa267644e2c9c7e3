"""One error hierarchy (`otel_ai_audit/errors.py`) and one CLI handler for it.

Every public exception class the package defines derives from `AuditError` through one of
its areas; a command that meets one (or a file it cannot read) ends with one line on stderr
and exit 2, while anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import otel_ai_audit
from otel_ai_audit import errors
from otel_ai_audit.cli import main
from otel_ai_audit.errors import AuditError
from otel_ai_audit.store.sqlite import AuditStore

PACKAGE = Path(otel_ai_audit.__file__).parent
AREAS = (errors.ConfigurationError, errors.KeyFileError, errors.StoreError, errors.SourceError,
         errors.IntegrityError, errors.RequestError, errors.BackendError, errors.DemoError)


@functools.cache
def defined_exceptions() -> dict[str, tuple[str, ...]]:
    """{class name: its bases' names} of every public class of the package whose base names an
    error or exception, read from the source (importing them all would load every extra)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            bases = tuple(ast.unparse(base).rpartition(".")[2] for base in node.bases) \
                if isinstance(node, ast.ClassDef) else ()
            if (isinstance(node, ast.ClassDef) and not node.name.startswith("_")
                    and any(base.endswith(("Error", "Exception")) for base in bases)):
                assert node.name not in found, f"two classes named {node.name}"
                found[node.name] = bases
    return found


def ancestors(name: str, classes: dict[str, tuple[str, ...]]) -> set[str]:
    """The names of `name`'s bases, theirs, and so on (built-ins by name only)."""
    seen: set[str] = set()
    todo = list(classes.get(name, ()))
    while todo:
        base = todo.pop()
        if base not in seen:
            seen.add(base)
            todo += classes.get(base, ())
    return seen


def test_every_error_the_package_defines_is_an_audit_error_of_one_area() -> None:
    assert all(issubclass(area, AuditError) for area in AREAS)
    classes = defined_exceptions()
    assert len(classes) > 20
    areas = {area.__name__ for area in AREAS}
    assert {"AuditError", *areas} <= set(classes)
    outside = [name for name in classes
               if name != "AuditError" and "AuditError" not in ancestors(name, classes)]
    assert outside == []
    no_area = [name for name in classes if name not in {"AuditError", *areas}
               and not areas & ancestors(name, classes)]
    assert no_area == []


def test_errors_that_were_builtins_still_are() -> None:
    """Callers that caught the built-in before the hierarchy go on catching it."""
    from otel_ai_audit.integrity.keys import KeyFileError

    assert KeyFileError is errors.KeyFileError and issubclass(KeyFileError, ValueError)
    classes = defined_exceptions()
    was = {"CanonicalizationError": "ValueError", "ProofError": "ValueError",
           "ConsistencyError": "ValueError", "SamplingConfigError": "ValueError",
           "CaptureConfigError": "ValueError", "BundleError": "ValueError",
           "WindowError": "ValueError", "MonitoringError": "ValueError",
           "TrainingRecordNotFound": "LookupError", "DatasetError": "RuntimeError",
           "ScenarioError": "RuntimeError", "MissingExtraError": "ImportError"}
    builtins = {"ValueError": ValueError, "LookupError": LookupError,
                "RuntimeError": RuntimeError, "ImportError": ImportError}
    lost = [name for name, builtin in was.items()
            if not {builtin} & ancestors(name, classes)
            and not any(issubclass(getattr(errors, base), builtins[builtin])
                        for base in ancestors(name, classes) if hasattr(errors, base))]
    assert lost == []


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.output, result.exc_info)
    assert result.stdout == ""
    assert result.stderr.startswith("otel-ai-audit: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removeprefix("otel-ai-audit: error: ").rstrip("\n")


def test_an_audit_error_ends_a_command_with_its_line(tmp_path: Path) -> None:
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("not SQLite")
    said = one_error_line(run("prove", str(not_a_store), "some-record"))
    assert str(not_a_store) in said
    missing = tmp_path / "missing.db"
    assert one_error_line(run("prove", str(missing), "some-record")) == (
        f"{missing}: no such store file")


def test_a_proof_that_cannot_be_built_is_one_line(tmp_path: Path) -> None:
    store = tmp_path / "audit.db"
    AuditStore(str(store)).close()
    assert one_error_line(run("prove", str(store), "no-such-record")) == (
        "no record with id no-such-record")


def test_a_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "trusted.pub.pem"
    key.write_text("not a key")
    said = one_error_line(run("verify-proof", str(tmp_path / "proof.json"),
                              "--public-key", str(key)))
    assert str(key) in said  # the key is read first, and refused
    from otel_ai_audit.integrity.keys import SigningKey

    SigningKey.generate().save(tmp_path / "k.key.pem", key)
    said = one_error_line(run("verify-proof", str(tmp_path / "proof.json"),
                              "--public-key", str(key)))
    assert "No such file or directory" in said and "proof.json" in said
    (tmp_path / "proof.json").write_text("{")
    said = one_error_line(run("verify-proof", str(tmp_path / "proof.json"),
                              "--public-key", str(key)))
    assert said.startswith("Expecting property name")  # json's own words, in one line


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "audit.db"
    AuditStore(str(store)).close()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    # The module, not the command of the same name that `otel_ai_audit.cli` exports.
    monkeypatch.setattr(importlib.import_module("otel_ai_audit.cli.prove"), "build_proof", broken)
    result = run("prove", str(store), "some-record")
    assert isinstance(result.exception, RuntimeError)
    assert "otel-ai-audit: error" not in result.stderr
