"""A `configure()` after the audit trail is set up: the same settings are a no-op, other ones
change nothing and say so in one line naming both sides and the variables to set instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_ai_audit import runtime as audit_runtime
from otel_ai_audit.config import ENV_PREFIX
from tests.audit_fixtures import key_beside


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime set up by a first `configure()` on tmp_path/audit.db; its store."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    audit_runtime.shutdown()
    store = tmp_path / "audit.db"
    audit_runtime.configure(store=str(store), signing_key=str(key_beside(store)),
                            hmac_key="first-secret-value", install_processor=False)
    yield store
    audit_runtime.shutdown()


def conflict_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "ignored" in record.getMessage()]


def test_the_same_settings_are_a_quiet_no_op(configured: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    runtime = audit_runtime.get_runtime()
    assert audit_runtime.configure() is runtime
    assert audit_runtime.configure(store=str(configured), checkpoint_every=1000) is runtime
    assert conflict_lines(caplog) == []


def test_other_settings_change_nothing_and_say_so_once(
        configured: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = audit_runtime.get_runtime()
    assert runtime is not None
    elsewhere = configured.parent / "other folder" / "audit.db"
    assert audit_runtime.configure(store=str(elsewhere), sampling_rate=0.5,
                                   redact_fields=["ssn", "name"]) is runtime
    (line,) = conflict_lines(caplog)
    assert "\n" not in line
    assert line.startswith(f"otel-ai-audit: configure(store='{elsewhere}', sampling_rate=0.5, "
                           "redact_fields=('ssn', 'name')) ignored: an earlier configure() call "
                           f"already set up the audit trail with store='{configured}', "
                           f"sampling_rate={runtime.settings.sampling_rate!r}, "
                           "redact_fields=()"), line
    assert (f"OTEL_AI_AUDIT_STORE='{elsewhere}' OTEL_AI_AUDIT_SAMPLING_RATE=0.5 "
            "OTEL_AI_AUDIT_REDACT_FIELDS=ssn,name") in line, "shell-ready, lists as the variables"
    assert "otel_ai_audit.shutdown()" in line
    assert runtime.settings.store == str(configured)


def test_a_secret_is_never_shown(configured: Path, caplog: pytest.LogCaptureFixture) -> None:
    audit_runtime.configure(hmac_key="second-secret-value")
    (line,) = conflict_lines(caplog)
    assert "secret-value" not in line
    assert "OTEL_AI_AUDIT_HMAC_KEY=..." in line and "hmac_key=<hidden" in line


def test_an_invalid_later_setting_is_refused_as_in_a_first_call(configured: Path) -> None:
    from otel_ai_audit.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="OTEL_AI_AUDIT_SAMPLING_RATE"):
        audit_runtime.configure(sampling_rate=2)
