"""Configuration is checked where it is read, and a setting that cannot be honoured is loud.

Every `AuditSettings` field refuses its bad values with one line naming the variable (or the
`configure()` keyword and its variable), the value and what is accepted. Under
`opentelemetry-instrument`, a set-up that fails never takes OpenTelemetry's own set-up down:
the application runs without the audit trail and says so in one line on stderr, or, when the
trail is required, the process exits with status 78 before the application starts.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from otel_ai_audit import runtime as audit_runtime
from otel_ai_audit.capture import MODES
from otel_ai_audit.config import (
    ENV_PREFIX,
    RULES,
    AuditSettings,
    CaptureMode,
    CategoricalDriftMethod,
    NumericDriftMethod,
    QueueFullPolicy,
    audit_switches,
)
from otel_ai_audit.errors import AuditError, ConfigurationError
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.monitoring.drift import METHODS
from otel_ai_audit.pipeline.writer import QUEUE_FULL_POLICIES
from tests.audit_fixtures import inference_event
from tests.integration.test_zero_code import BIN, run_environment

# --- every field, checked where it is read --------------------------------------------------


@dataclass(frozen=True)
class Case:
    good: str
    bad: tuple[str, ...]
    context: dict[str, str] = field(default_factory=dict)
    """Other variables the good value needs."""


CASES: dict[str, Case] = {
    "enabled": Case("off", ("ture", "enable", "y")),
    "required": Case("YES", ("ture", "always")),
    "capture_inputs": Case("full", ("hashed", "ful")),
    "capture_outputs": Case("redact", ("all",)),
    "capture_max_bytes": Case("1024", ("0", "-5", "16k", "1.5")),
    "redact_fields": Case("ssn,.*_name", ("(unclosed", "ok,[a-")),
    "default_risk": Case("limited", ("hgih", "severe")),
    "checkpoint_every": Case("10", ("abc", "0", "-1")),
    "checkpoint_interval": Case("0.5", ("0", "-1", "nan", "inf", "soon")),
    "max_queue": Case("4", ("0", "-1", "many")),
    "queue_full_policy": Case("spill", ("drop", "wait")),
    "sampling_rate": Case("0.25", ("2", "-0.1", "half", "nan")),
    "sampling_keep_risk": Case("high, critical,unacceptable", ("high;critical", "very high")),
    "sampling_hold_hours": Case("0", ("-1", "a day")),
    "decision_mode": Case("summary", ("per-row", "batch")),
    "monitor_features": Case("sex,race", ("all,age", "none,sex")),
    "monitor_bins": Case("10", ("15", "0", "5")),
    "monitor_top_categories": Case("5", ("0",)),
    "drift_numeric_method": Case("ks", ("chi2", "wasserstein")),
    "drift_categorical_method": Case("jensenshannon", ("ks",)),
    "drift_small_reference": Case("0", ("-1", "1k")),
    "drift_p_value": Case("0.01", ("0", "1", "5%")),
    "drift_psi_threshold": Case("0.25", ("0", "-0.1")),
    "drift_js_threshold": Case("0.2", ("0", "1.5")),
    "drift_share": Case("1", ("0", "1.5")),
    "fastapi_routes": Case("POST /predict,GET /models/*", ("POST", "P0ST /predict")),
    "fastapi_identity_headers": Case("x-api-key,authorization", ("x api key",)),
    "http_model_urls": Case("churn=https://models.internal/churn/*,https://api.example/v1/*",
                            ("models.internal/churn", "churn=")),
    "elasticsearch_url": Case("https://es-1:9200,https://es-2:9200",
                              ("es-1:9200", "ftp://es:21", "http://", "http://es:port")),
    "elasticsearch_verify_certs": Case("false", ("flase", "disabled")),
    "elasticsearch_index_prefix": Case("audit", ("Audit", "-audit", "my audit")),
    "elasticsearch_retention": Case("400d", ("6 months", "190", "0d")),
    "splunk_hec_url": Case("https://splunk:8088", ("splunk:8088",),
                           {"OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN": "token"}),
    "splunk_hec_index": Case("audit", ("_audit", "Audit")),
    "kafka_bootstrap_servers": Case("kafka-1:9092,kafka-2:9092",
                                    ("kafka-1", "http://kafka:9092", "kafka:port")),
    "splunk_hec_ack": Case("on", ("maybe",)),
    "splunk_hec_verify_certs": Case("1", ("ture",)),
    "otlp_endpoint": Case("http://otel-gateway:4319", ("otel-gateway:4319", "grpc://gw:4317")),
    "otlp_protocol": Case("http/protobuf", ("http", "http/json")),
    "otlp_headers": Case("authorization=Bearer abc,x-tenant=7", ("authorization Bearer abc",)),
    "ship_shutdown_timeout": Case("0", ("-1", "ten")),
    "anchor_s3": Case("s3://audit-anchors/prod", ("audit-anchors/prod", "s3:///prefix")),
    "anchor_s3_endpoint": Case("http://127.0.0.1:7070", ("127.0.0.1:7070",)),
    "anchor_interval": Case("0.5", ("0",)),
    "anchor_retention_days": Case("400", ("0", "six months")),
    "tsa_url": Case("https://tsa.example/tsr", ("tsa.example/tsr",)),
    "durability": Case("fsync", ("sync", "durable")),
    "durable_timeout": Case("2.5", ("0", "-1", "never")),
}
FREE_FORM = {
    "store", "signing_key", "hmac_key", "hmac_key_file", "model_name", "model_version",
    "sampling_policy", "elasticsearch_api_key", "elasticsearch_username",
    "elasticsearch_password", "elasticsearch_ca_certs", "splunk_hec_token", "splunk_hec_source",
    "splunk_hec_host", "splunk_hec_ca_certs", "anchor_s3_region",
}
"""Text fields that take any (non-blank) text here; the files among them are checked where
they are opened (see the subprocess tests below)."""


def check_message(error: ConfigurationError, name: str, value: Any, *, keyword: bool) -> str:
    message = str(error)
    variable = ENV_PREFIX + name.upper()
    assert "\n" not in message, message
    assert error.variable == variable
    if RULES[name].secret:
        assert not (isinstance(value, str) and value.strip() and value in message), message
        shown = f"<hidden, {len(value)} characters>" if isinstance(value, str) else "<hidden>"
    else:
        shown = repr(value)
    expected = f"{name}={shown} ({variable}): " if keyword else f"{variable}={shown}: "
    assert message.startswith(expected), message
    assert message[len(expected):] == RULES[name].accepted, message
    return message


@pytest.mark.parametrize("name", [item.name for item in fields(AuditSettings)])
def test_every_setting_refuses_its_bad_values_in_one_line(name: str) -> None:
    assert (name in CASES) != (name in FREE_FORM), (
        f"{name}: a new setting needs a Case here, with a rule in config.RULES")
    variable = ENV_PREFIX + name.upper()
    if name in FREE_FORM:
        text = "any text, with commas; and spaces"
        assert getattr(AuditSettings.from_env({variable: text}), name) == text
        assert getattr(AuditSettings.from_env({}, **{name: text}), name) == text
        bad: tuple[Any, ...] = ("   ",)
        keyword_bad: tuple[Any, ...] = ("   ", 42, ["a"])
    else:
        case = CASES[name]
        AuditSettings.from_env({variable: case.good, **case.context})
        AuditSettings.from_env(case.context, **{name: case.good})
        bad = keyword_bad = case.bad
    for value in bad:
        with pytest.raises(ConfigurationError) as raised:
            AuditSettings.from_env({variable: value})
        check_message(raised.value, name, value, keyword=False)
    for value in keyword_bad:
        with pytest.raises(ConfigurationError) as raised:
            AuditSettings.from_env({}, **{name: value})
        check_message(raised.value, name, value, keyword=True)


def test_typed_values_of_the_python_api_are_checked_like_the_variables() -> None:
    settings = AuditSettings.from_env(
        {"OTEL_AI_AUDIT_MAX_QUEUE": "7"}, max_queue=4, sampling_rate=0, enabled=False,
        required=False, redact_fields=["a{1,3}", "ssn"], monitor_features=("sex",),
        capture_inputs="FULL", elasticsearch_url="")
    assert (settings.max_queue, settings.sampling_rate, settings.enabled) == (4, 0.0, False)
    assert settings.redact_fields == ("a{1,3}", "ssn") and settings.capture_inputs == "full"
    assert settings.elasticsearch_url is None
    for name, value in (("max_queue", True), ("max_queue", 4.0), ("sampling_rate", "0.5x"),
                        ("enabled", 1), ("redact_fields", [1]), ("checkpoint_interval", -1)):
        with pytest.raises(ConfigurationError) as raised:
            AuditSettings.from_env({}, **{name: value})
        check_message(raised.value, name, value, keyword=True)
    with pytest.raises(ConfigurationError) as raised:
        AuditSettings(sampling_rate=2)  # direct construction is checked too
    assert str(raised.value).startswith("sampling_rate=2 (OTEL_AI_AUDIT_SAMPLING_RATE): ")
    with pytest.raises(ConfigurationError, match=r"^stor=: not a setting"):
        AuditSettings.from_env({}, stor="x.db")


def test_defaults_are_unchanged() -> None:
    defaults = AuditSettings()
    assert AuditSettings.from_env({}) == defaults
    before = {
        "enabled": True, "required": None, "store": "otel-ai-audit.db", "signing_key": None,
        "hmac_key": None, "hmac_key_file": None, "capture_inputs": "hash",
        "capture_outputs": "full", "capture_max_bytes": 16_384, "redact_fields": (),
        "default_risk": "high", "model_name": None, "model_version": None,
        "checkpoint_every": 1000, "checkpoint_interval": 5.0, "max_queue": 100_000,
        "queue_full_policy": "block", "sampling_rate": None, "sampling_keep_risk": None,
        "sampling_policy": None, "sampling_hold_hours": 72.0, "decision_mode": "per_row",
        "monitor_features": ("all",), "monitor_bins": 20, "monitor_top_categories": 20,
        "drift_numeric_method": "auto", "drift_categorical_method": "auto",
        "drift_small_reference": 1000, "drift_p_value": 0.05, "drift_psi_threshold": 0.1,
        "drift_js_threshold": 0.1, "drift_share": 0.5, "fastapi_routes": (),
        "fastapi_identity_headers": ("authorization", "x-api-key"), "http_model_urls": (),
        "elasticsearch_url": None, "elasticsearch_api_key": None,
        "elasticsearch_username": None, "elasticsearch_password": None,
        "elasticsearch_ca_certs": None, "elasticsearch_verify_certs": True,
        "elasticsearch_index_prefix": "otel-ai-audit", "elasticsearch_retention": "190d",
        "splunk_hec_url": None, "splunk_hec_token": None, "splunk_hec_index": None,
        "splunk_hec_source": "otel-ai-audit", "splunk_hec_host": None, "splunk_hec_ack": False,
        "splunk_hec_ca_certs": None, "splunk_hec_verify_certs": True, "otlp_endpoint": None,
        "otlp_protocol": "grpc", "otlp_headers": None, "ship_shutdown_timeout": 10.0,
        "anchor_s3": None, "anchor_s3_endpoint": None, "anchor_s3_region": None,
        "anchor_interval": 60.0, "anchor_retention_days": 190, "tsa_url": None}
    assert {name: getattr(defaults, name) for name in before} == before
    assert defaults.audit_required  # default risk high: the trail is required


def test_the_options_are_those_their_users_accept() -> None:
    assert get_args(QueueFullPolicy) == QUEUE_FULL_POLICIES
    assert get_args(CaptureMode) == MODES
    assert get_args(NumericDriftMethod) == METHODS["numeric"]
    assert get_args(CategoricalDriftMethod) == METHODS["categorical"]


def test_cross_field_refusals_and_secrets() -> None:
    with pytest.raises(ConfigurationError, match="REQUIRED=true contradicts .*ENABLED=false"):
        AuditSettings.from_env({"OTEL_AI_AUDIT_ENABLED": "false",
                                "OTEL_AI_AUDIT_REQUIRED": "true"})
    with pytest.raises(ConfigurationError, match="without OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN"):
        AuditSettings.from_env({"OTEL_AI_AUDIT_SPLUNK_HEC_URL": "https://splunk:8088"})
    with pytest.raises(ConfigurationError) as raised:
        AuditSettings.from_env({"OTEL_AI_AUDIT_ELASTICSEARCH_URL": "es://user:s3cret@es:9200"})
    assert "s3cret" not in str(raised.value) and "user:***@es" in str(raised.value)
    assert isinstance(raised.value, AuditError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("environ", "switches"), [
    ({}, (True, True)),
    ({"OTEL_AI_AUDIT_DEFAULT_RISK": "low"}, (True, False)),
    ({"OTEL_AI_AUDIT_DEFAULT_RISK": "Critical"}, (True, True)),
    ({"OTEL_AI_AUDIT_DEFAULT_RISK": "hgih"}, (True, True)),  # unknown: fails closed
    ({"OTEL_AI_AUDIT_REQUIRED": "false"}, (True, False)),
    ({"OTEL_AI_AUDIT_REQUIRED": "ture", "OTEL_AI_AUDIT_DEFAULT_RISK": "low"}, (True, True)),
    ({"OTEL_AI_AUDIT_ENABLED": "false"}, (False, False)),
    ({"OTEL_AI_AUDIT_ENABLED": "ture"}, (True, True)),
    ({"OTEL_AI_AUDIT_ENABLED": "false", "OTEL_AI_AUDIT_REQUIRED": "on"}, (False, True)),
])
def test_the_switches_are_read_on_their_own_and_fail_closed(
        environ: dict[str, str], switches: tuple[bool, bool]) -> None:
    assert audit_switches(environ) == switches


# --- configure(): the Python API --------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    audit_runtime.shutdown()
    yield
    audit_runtime.shutdown()


@pytest.mark.parametrize(("keyword", "value"), [
    ("queue_full_policy", "drop"), ("sampling_rate", 2), ("max_queue", 0),
    ("checkpoint_every", "abc"), ("enabled", "ture"), ("elasticsearch_verify_certs", "ture"),
    ("default_risk", "High risk"),
])
def test_configure_refuses_a_bad_keyword_naming_it(
        tmp_path: Path, clean_environment: None, keyword: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        audit_runtime.configure(store=str(tmp_path / "audit.db"), **{keyword: value})
    check_message(raised.value, keyword, value, keyword=True)
    assert audit_runtime.get_runtime() is None
    assert not list(tmp_path.iterdir()), "nothing was set up"


def test_configure_refuses_what_cannot_be_honoured(tmp_path: Path,
                                                   clean_environment: None) -> None:
    SigningKey.generate().save(tmp_path / "k.key.pem", tmp_path / "k.pub.pem")
    store = str(tmp_path / "audit.db")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"signing_key": str(tmp_path / "k.pub.pem")},
         f"OTEL_AI_AUDIT_SIGNING_KEY='{tmp_path}/k.pub.pem': {tmp_path}/k.pub.pem holds a "
         "public key"),
        ({"signing_key": str(tmp_path / "none.pem")}, "no such file"),
        ({"hmac_key_file": str(tmp_path / "none.key")},
         f"OTEL_AI_AUDIT_HMAC_KEY_FILE='{tmp_path}/none.key': no such file"),
        ({"hmac_key_file": str(tmp_path)}, "is a folder"),
        ({"store": str(tmp_path / "nowhere" / "audit.db")}, "does not exist"),
        ({"store": str(tmp_path)}, "is a folder; name the store file in it"),
        ({"sampling_policy": str(tmp_path / "none.json")},
         "OTEL_AI_AUDIT_SAMPLING_POLICY: sampling policy file"),
        ({"elasticsearch_url": "http://127.0.0.1:9", "elasticsearch_ca_certs":
          str(tmp_path / "ca.pem")}, "OTEL_AI_AUDIT_ELASTICSEARCH_CA_CERTS="),
    ]
    for overrides, expected in cases:
        with pytest.raises(ConfigurationError) as raised:
            audit_runtime.configure(**{"store": store, "signing_key": str(tmp_path / "k.key.pem"),
                                       **overrides})
        assert expected in str(raised.value) and "\n" not in str(raised.value), raised.value
        assert audit_runtime.get_runtime() is None
    (tmp_path / "empty.key").write_bytes(b"\n")
    with pytest.raises(ConfigurationError, match="the file is empty"):
        audit_runtime.configure(store=store, signing_key=str(tmp_path / "k.key.pem"),
                                hmac_key_file=str(tmp_path / "empty.key"))


def test_configure_without_a_signing_key_refuses_and_creates_none(
        tmp_path: Path, clean_environment: None) -> None:
    store = tmp_path / "audit.db"
    with pytest.raises(ConfigurationError) as raised:
        audit_runtime.configure(store=str(store), install_processor=False)
    message = str(raised.value)
    assert message.startswith("OTEL_AI_AUDIT_SIGNING_KEY is not set") and "\n" not in message
    assert "otel-ai-audit keygen --out" in message and "=ephemeral" in message
    assert raised.value.variable == "OTEL_AI_AUDIT_SIGNING_KEY"
    assert audit_runtime.get_runtime() is None
    assert not list(tmp_path.iterdir()), "a refused start writes nothing (no key, no store)"
    # A key an earlier version created beside the store is named, not used behind the back.
    SigningKey.generate().save(f"{store}.signing-key.pem", f"{store}.pub.pem")
    with pytest.raises(ConfigurationError, match=f"={store}.signing-key.pem$"):
        audit_runtime.configure(store=str(store), install_processor=False)
    assert not store.exists()


def test_an_ephemeral_key_is_asked_for_and_is_self_asserted_only(
        tmp_path: Path, clean_environment: None, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "audit.db"
    runtime = audit_runtime.configure(store=str(store), signing_key="ephemeral",
                                      install_processor=False)
    runtime.processor.submit_event(inference_event(1))
    audit_runtime.shutdown()
    (warning,) = [r.getMessage() for r in caplog.records if "ephemeral" in r.getMessage()]
    assert "allow-self-asserted" in warning
    assert not [path for path in tmp_path.iterdir() if path.suffix == ".pem"], "no key file"
    trusted = subprocess.run([str(BIN / "otel-ai-audit"), "verify", str(store)],
                             capture_output=True, text=True, timeout=120)
    assert trusted.returncode != 0 and "self_asserted_key" in trusted.stdout + trusted.stderr
    allowed = subprocess.run([str(BIN / "otel-ai-audit"), "verify", str(store),
                              "--allow-self-asserted"], capture_output=True, text=True,
                             timeout=120)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


# --- under opentelemetry-instrument -----------------------------------------------------------

APP = """\
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from otel_ai_audit.runtime import get_runtime

print("sdk tracer provider:", isinstance(trace.get_tracer_provider(), TracerProvider), flush=True)
print("audit trail active:", get_runtime() is not None, flush=True)
with trace.get_tracer("app").start_as_current_span("app-own-span"):
    print("served", flush=True)
"""
NOT_ACTIVE = "otel-ai-audit: audit trail NOT active: "
EX_CONFIG = 78


def _meet_file_permissions() -> None:
    """In the child of a root test run: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so the program meets file permissions as any user does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_app(workdir: Path, *, permissions: bool = False,
            **variables: str) -> subprocess.CompletedProcess[str]:
    """The app under `opentelemetry-instrument`, spans to the console. The model framework
    instrumentations are off: they take seconds to load and play no part here."""
    app = workdir / "app.py"
    app.write_text(APP)
    env = run_environment(workdir / "audit.db", OTEL_TRACES_EXPORTER="console",
                          OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="sklearn,torch,mlflow",
                          **variables)
    as_root = permissions and os.geteuid() == 0
    return subprocess.run([str(BIN / "opentelemetry-instrument"), "python", str(app)], env=env,
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=_meet_file_permissions if as_root else None)


def the_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the audit set-up said on stderr, after checking there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "Failed to auto initialize" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "otel-ai-audit" in line]
    assert len(lines) == 1 and lines[0].startswith(NOT_ACTIVE), result.stderr
    return lines[0]


def served_without_the_audit_trail(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "sdk tracer provider: True" in result.stdout
    assert "audit trail active: False" in result.stdout
    assert "served" in result.stdout
    assert '"name": "app-own-span"' in result.stdout, "the SDK exports the app's own span"


def _missing_key(workdir: Path) -> tuple[dict[str, str], list[str]]:
    return ({"OTEL_AI_AUDIT_SIGNING_KEY": str(workdir / "missing.key.pem")},
            [f"OTEL_AI_AUDIT_SIGNING_KEY='{workdir}/missing.key.pem'", "no such file"])


def _unreadable_key(workdir: Path) -> tuple[dict[str, str], list[str]]:
    SigningKey.generate().save(workdir / "k.key.pem", workdir / "k.pub.pem")
    (workdir / "k.key.pem").chmod(0)
    return ({"OTEL_AI_AUDIT_SIGNING_KEY": str(workdir / "k.key.pem")},
            [f"OTEL_AI_AUDIT_SIGNING_KEY='{workdir}/k.key.pem'", "cannot read the signing key",
             "Permission denied"])


def _key_is_a_folder(workdir: Path) -> tuple[dict[str, str], list[str]]:
    (workdir / "keys").mkdir()
    return ({"OTEL_AI_AUDIT_SIGNING_KEY": str(workdir / "keys")},
            [f"OTEL_AI_AUDIT_SIGNING_KEY='{workdir}/keys'", "is a folder"])


def _public_key(workdir: Path) -> tuple[dict[str, str], list[str]]:
    SigningKey.generate().save(workdir / "k.key.pem", workdir / "k.pub.pem")
    return ({"OTEL_AI_AUDIT_SIGNING_KEY": str(workdir / "k.pub.pem")},
            [f"OTEL_AI_AUDIT_SIGNING_KEY='{workdir}/k.pub.pem'", "holds a public key"])


def _rsa_key(workdir: Path) -> tuple[dict[str, str], list[str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (workdir / "rsa.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return ({"OTEL_AI_AUDIT_SIGNING_KEY": str(workdir / "rsa.pem")},
            [f"OTEL_AI_AUDIT_SIGNING_KEY='{workdir}/rsa.pem'", "(RSA), not Ed25519"])


def _read_only_folder(workdir: Path) -> tuple[dict[str, str], list[str]]:
    (workdir / "ro").mkdir()
    (workdir / "ro").chmod(0o555)
    return ({"OTEL_AI_AUDIT_STORE": str(workdir / "ro" / "audit.db")},
            [f"OTEL_AI_AUDIT_STORE='{workdir}/ro/audit.db'",
             f"cannot write in the store's folder {workdir}/ro (Permission denied)"])


def _missing_folder(workdir: Path) -> tuple[dict[str, str], list[str]]:
    return ({"OTEL_AI_AUDIT_STORE": str(workdir / "nowhere" / "audit.db")},
            [f"the store's folder {workdir}/nowhere does not exist"])


def _variable(name: str, value: str, accepted: str) -> Callable[[Path], Any]:
    return lambda workdir: ({name: value}, [f"{name}='{value}': ", accepted])


SETUP_ERRORS: dict[str, tuple[Callable[[Path], Any], bool]] = {
    "no signing key": (lambda workdir: ({"OTEL_AI_AUDIT_SIGNING_KEY": ""}, [
        "OTEL_AI_AUDIT_SIGNING_KEY is not set: create a key with 'otel-ai-audit keygen"]), False),
    "missing key file": (_missing_key, False),
    "unreadable key file": (_unreadable_key, True),
    "key path is a folder": (_key_is_a_folder, False),
    "public key as signing key": (_public_key, False),
    "RSA key as signing key": (_rsa_key, False),
    "store in a read-only folder": (_read_only_folder, True),
    "store folder does not exist": (_missing_folder, False),
    "MAX_QUEUE=0": (_variable("OTEL_AI_AUDIT_MAX_QUEUE", "0", "at least 1"), False),
    "QUEUE_FULL_POLICY=drop": (_variable("OTEL_AI_AUDIT_QUEUE_FULL_POLICY", "drop",
                                         "must be one of 'block' "), False),
    "SAMPLING_RATE=2": (_variable("OTEL_AI_AUDIT_SAMPLING_RATE", "2", "from 0 to 1"), False),
    "CHECKPOINT_EVERY=abc": (_variable("OTEL_AI_AUDIT_CHECKPOINT_EVERY", "abc",
                                       "a whole number"), False),
    "ENABLED=ture": (_variable("OTEL_AI_AUDIT_ENABLED", "ture", "true or false"), False),
    "VERIFY_CERTS=ture": (_variable("OTEL_AI_AUDIT_ELASTICSEARCH_VERIFY_CERTS", "ture",
                                    "true or false"), False),
}


@pytest.mark.parametrize("required", [False, True], ids=["not-required", "required"])
@pytest.mark.parametrize("error", list(SETUP_ERRORS))
def test_a_setup_error_is_one_line_and_never_stops_opentelemetry(
        tmp_path: Path, error: str, required: bool) -> None:
    setup, permissions = SETUP_ERRORS[error]
    variables, expected = setup(tmp_path)
    result = run_app(tmp_path, permissions=permissions,
                     OTEL_AI_AUDIT_REQUIRED=str(required).lower(), **variables)
    line = the_line(result)
    for part in expected:
        assert part in line, line
    if required:
        assert result.returncode == EX_CONFIG, result.stderr
        assert "exiting with status 78 before the application starts" in line
        assert result.stdout == "", "the application never started"
    else:
        served_without_the_audit_trail(result)
    assert not (tmp_path / "audit.db").exists()


def test_a_good_setup_is_active_and_silent(tmp_path: Path) -> None:
    result = run_app(tmp_path, OTEL_AI_AUDIT_REQUIRED="true")
    assert result.returncode == 0, result.stderr
    assert "audit trail active: True" in result.stdout and "served" in result.stdout
    assert "NOT active" not in result.stderr and "Traceback" not in result.stderr


def test_the_trail_is_required_by_default_at_high_risk_only(tmp_path: Path) -> None:
    result = run_app(tmp_path, OTEL_AI_AUDIT_SAMPLING_RATE="2")
    assert result.returncode == EX_CONFIG and result.stdout == ""
    assert "(OTEL_AI_AUDIT_REQUIRED, on by default at risk high and above)" in the_line(result)
    result = run_app(tmp_path, OTEL_AI_AUDIT_SAMPLING_RATE="2", OTEL_AI_AUDIT_DEFAULT_RISK="low")
    assert "OTEL_AI_AUDIT_SAMPLING_RATE='2'" in the_line(result)
    served_without_the_audit_trail(result)


def test_turned_off_is_quiet_unless_also_required(tmp_path: Path) -> None:
    result = run_app(tmp_path, OTEL_AI_AUDIT_ENABLED="false", OTEL_AI_AUDIT_SAMPLING_RATE="2")
    assert "otel-ai-audit" not in result.stderr, "auditing was turned off on purpose"
    served_without_the_audit_trail(result)
    result = run_app(tmp_path, OTEL_AI_AUDIT_ENABLED="false", OTEL_AI_AUDIT_REQUIRED="true")
    assert result.returncode == EX_CONFIG and result.stdout == ""
    assert "REQUIRED=true contradicts OTEL_AI_AUDIT_ENABLED=false" in the_line(result)
