"""Settings, read from `OTEL_AI_AUDIT_*` environment variables and mirrored by `configure()`.

Defaults are the safe ones for a regulated user: inputs are recorded as keyed hashes, every
decision is kept (risk "high" unless configured otherwise), and checkpoints are signed.

Every value is checked where it is read: a value that is not one of the accepted ones raises
`ConfigurationError`, one line naming the variable (or the `configure()` keyword and its
variable), the value and what is accepted. Nothing falls back to a default in silence.

Why one module: each setting is three things read together, its field (with its `Literal`
type), its rule in `_RULES` (what it accepts, in the words of the error) and its variable;
`_RULES` is checked at import to cover every field, and splitting the rules from the fields
would put a setting's type and what it accepts in two files.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from otel_ai_audit.errors import ConfigurationError
from otel_ai_audit.store.sqlite import DEFAULT_STORE_PATH

ENV_PREFIX = "OTEL_AI_AUDIT_"
ELASTICSEARCH_INDEX_PREFIX = "otel-ai-audit"
ELASTICSEARCH_RETENTION = "190d"
"""Kept at least six months (EU AI Act Art. 19, 26(6)), with a margin for a late request."""

CaptureMode = Literal["hash", "full", "redact", "none"]
"""How a decision's inputs or outputs are recorded (`capture.MODES` is this list)."""
RiskLevel = Literal["minimal", "low", "limited", "medium", "high", "critical", "unacceptable"]
"""The scale used across the project (low, medium, high, critical) and the EU AI Act's
categories (minimal, limited, high, unacceptable)."""
QueueFullPolicy = Literal["block", "spill"]
"""As `pipeline.writer.QUEUE_FULL_POLICIES`: there is no `drop`."""
DecisionMode = Literal["per_row", "summary"]
NumericDriftMethod = Literal["auto", "psi", "ks"]
"""As `monitoring.drift.METHODS`."""
CategoricalDriftMethod = Literal["auto", "psi", "chi2", "jensenshannon"]
OtlpProtocol = Literal["grpc", "http/protobuf"]
DurabilitySetting = Literal["auto", "async", "process", "fsync"]

REQUIRED_AT_RISK: tuple[RiskLevel, ...] = ("high", "critical", "unacceptable")
"""Default risk levels at which the audit trail is required unless `OTEL_AI_AUDIT_REQUIRED`
says otherwise: a deployer of a high-risk system must not serve unaudited by accident."""
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def variable(name: str) -> str:
    """The environment variable of the setting `name`."""
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class AuditSettings:
    """Every knob, with its environment variable named after the field (upper case)."""

    enabled: bool = True
    required: bool | None = None
    """Refuse to run without the audit trail: a set-up that fails stops the process (exit 78
    under `opentelemetry-instrument`) instead of serving unaudited. None: true when auditing
    is enabled and `default_risk` is high, critical or unacceptable (`audit_required`)."""
    store: str = DEFAULT_STORE_PATH
    signing_key: str | None = None
    hmac_key: str | None = None
    hmac_key_file: str | None = None
    capture_inputs: CaptureMode = "hash"
    capture_outputs: CaptureMode = "full"
    capture_max_bytes: int = 16_384
    redact_fields: tuple[str, ...] = field(default_factory=tuple)
    default_risk: RiskLevel = "high"
    model_name: str | None = None
    model_version: str | None = None
    checkpoint_every: int = 1000
    checkpoint_interval: float = 5.0
    max_queue: int = 100_000
    queue_full_policy: QueueFullPolicy = "block"
    sampling_rate: float | None = None
    sampling_keep_risk: tuple[str, ...] | None = None
    sampling_policy: str | None = None
    sampling_hold_hours: float = 72.0
    decision_mode: DecisionMode = "per_row"
    monitor_features: tuple[str, ...] = ("all",)
    """Features of a profiled model kept (binned) in each decision: all, none, or names."""
    monitor_bins: int = 20
    monitor_top_categories: int = 20
    drift_numeric_method: NumericDriftMethod = "auto"
    """The drift_* settings: statistics and thresholds of `monitoring.drift.DriftPolicy`, with
    Evidently's conventions as defaults (auto = KS / chi-squared for a reference of at most
    drift_small_reference rows, else PSI / Jensen-Shannon)."""
    drift_categorical_method: CategoricalDriftMethod = "auto"
    drift_small_reference: int = 1000
    drift_p_value: float = 0.05
    drift_psi_threshold: float = 0.1
    drift_js_threshold: float = 0.1
    drift_share: float = 0.5
    fastapi_routes: tuple[str, ...] = field(default_factory=tuple)
    fastapi_identity_headers: tuple[str, ...] = ("authorization", "x-api-key")
    http_model_urls: tuple[str, ...] = field(default_factory=tuple)
    elasticsearch_url: str | None = None
    """Comma-separated node URLs; setting it turns shipping to Elasticsearch on."""
    elasticsearch_api_key: str | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: str | None = None
    elasticsearch_ca_certs: str | None = None
    elasticsearch_verify_certs: bool = True
    elasticsearch_index_prefix: str = ELASTICSEARCH_INDEX_PREFIX
    elasticsearch_retention: str = ELASTICSEARCH_RETENTION
    splunk_hec_url: str | None = None
    """Base URL of a Splunk HTTP Event Collector (https://splunk:8088); turns shipping to it on."""
    splunk_hec_token: str | None = None
    splunk_hec_index: str | None = None
    """Index for the events; none: the token's default index."""
    splunk_hec_source: str = "otel-ai-audit"
    splunk_hec_host: str | None = None
    """The events' host field; none: this machine's host name."""
    splunk_hec_ack: bool = False
    """Use indexer acknowledgement (the token must have it on): a batch counts as delivered
    only once Splunk says it is indexed, not when HEC accepted it."""
    splunk_hec_ca_certs: str | None = None
    splunk_hec_verify_certs: bool = True
    otlp_endpoint: str | None = None
    """OTLP endpoint of a Collector that takes the audit records as spans; turns shipping on.
    Its own setting, apart from OTEL_EXPORTER_OTLP_*, so audit spans reach the Collector's
    audit pipeline and never the sampled one of ordinary traces."""
    otlp_protocol: OtlpProtocol = "grpc"
    """grpc or http/protobuf, as OTEL_EXPORTER_OTLP_PROTOCOL."""
    otlp_headers: str | None = None
    """key=value pairs, comma-separated, as OTEL_EXPORTER_OTLP_HEADERS."""
    kafka_bootstrap_servers: str | None = None
    """host:port of Kafka brokers, comma-separated; turns shipping to Kafka on (the other
    `OTEL_AI_AUDIT_KAFKA_*` settings: `otel_ai_audit.backends.kafka.client.KafkaSettings`)."""
    ship_shutdown_timeout: float = 10.0
    """Seconds the shippers may take at exit to deliver what the writer persisted last."""
    anchor_s3: str | None = None
    """s3://BUCKET/PREFIX of a bucket with Object Lock; turns external anchoring on."""
    anchor_s3_endpoint: str | None = None
    """Endpoint of an S3-compatible service other than AWS (MinIO, versitygw, Ceph)."""
    anchor_s3_region: str | None = None
    anchor_interval: float = 60.0
    """Seconds between anchors (one is also made after the closing checkpoint)."""
    anchor_retention_days: int = 190
    """Compliance-mode retention of each anchor: six months (EU AI Act Art. 19, 26(6))."""
    tsa_url: str | None = None
    """RFC 3161 time-stamping authority that stamps each anchor (e.g. https://tsa/...)."""
    durability: DurabilitySetting = "auto"
    """When an audited call returns: `async` at once, `process` once its records are committed
    (survives SIGKILL), `fsync` once fsynced too (survives power loss); `auto`: `process` for
    decisions of risk high and above, `async` below (see `durability_for`)."""
    durable_timeout: float = 10.0
    """Seconds a durable call waits for its commit before returning unconfirmed (counted)."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            checked = _checked(item.name, value, _Source.FIELD)
            if checked is not value:
                object.__setattr__(self, item.name, checked)
        if self.required and not self.enabled:
            raise ConfigurationError(
                "OTEL_AI_AUDIT_REQUIRED=true contradicts OTEL_AI_AUDIT_ENABLED=false: unset one "
                "(the audit trail cannot be both required and off)",
                variable=variable("required"))
        if self.splunk_hec_url and not self.splunk_hec_token:
            raise ConfigurationError(
                "OTEL_AI_AUDIT_SPLUNK_HEC_URL is set without OTEL_AI_AUDIT_SPLUNK_HEC_TOKEN: "
                "Splunk HEC refuses events without a token", variable=variable("splunk_hec_token"))

    @property
    def audit_required(self) -> bool:
        """Whether a set-up that fails must stop the process: `required`, or by default true
        when auditing is enabled and `default_risk` is high, critical or unacceptable."""
        if self.required is not None:
            return self.required
        return self.enabled and self.default_risk in REQUIRED_AT_RISK

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> AuditSettings:
        """Settings from the environment, then `overrides` (the Python API wins).

        An empty variable or a None override counts as unset. A value that is not accepted
        raises `ConfigurationError`, naming the variable (or the keyword and its variable).
        """
        env = os.environ if environ is None else environ
        names = {item.name for item in fields(cls)}
        for name in overrides:
            if name not in names:
                raise ConfigurationError(
                    f"{name}=: not a setting; the keywords are the OTEL_AI_AUDIT_* variables in "
                    f"lower case (store=, signing_key=, sampling_rate=, ...)")
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = env.get(variable(item.name))
            if raw is None or raw == "":
                continue
            values[item.name] = _checked(item.name, raw, _Source.ENVIRONMENT)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _checked(name, value, _Source.KEYWORD)
        return cls(**values)


def audit_switches(environ: dict[str, str] | None = None) -> tuple[bool, bool]:
    """(enabled, required), read on their own so that they answer when another setting is
    invalid (the zero-code set-up decides from them whether to go on without the audit trail).

    They fail closed: an `OTEL_AI_AUDIT_ENABLED` that is not a boolean counts as enabled, an
    `OTEL_AI_AUDIT_REQUIRED` that is not a boolean as required, and an unknown
    `OTEL_AI_AUDIT_DEFAULT_RISK` as high; `AuditSettings` then refuses the value itself.
    """
    env = os.environ if environ is None else environ

    def read(name: str, fallback: Any) -> Any:
        raw = env.get(variable(name))
        if raw is None or raw == "":
            return None
        try:
            return _RULES[name].convert(raw)
        except (TypeError, ValueError):
            return fallback

    enabled = read("enabled", True)
    enabled = True if enabled is None else enabled
    required = read("required", True)
    if required is None:
        risk = read("default_risk", "high") or "high"
        required = enabled and risk in REQUIRED_AT_RISK
    return enabled, required


# --- what each setting accepts ----------------------------------------------------------------


class _Source:
    ENVIRONMENT = "environment"
    KEYWORD = "keyword"
    FIELD = "field"


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: `convert` takes the variable's text or a Python value (from
    `configure()`) and returns the setting's value, or raises ValueError / TypeError."""

    accepted: str
    """What is accepted, in the words of the one-line error."""
    convert: Callable[[Any], Any]
    optional: bool = False
    """None (unset) is a value."""
    secret: bool = False
    """Never shown in a message."""


def _checked(name: str, value: Any, source: str) -> Any:
    rule = _RULES[name]
    if value is None and rule.optional:
        return None
    try:
        if value is None:
            raise TypeError("unset")
        return rule.convert(value)
    except (TypeError, ValueError) as error:
        shown = _shown(value, rule.secret)
        where = variable(name)
        if source == _Source.ENVIRONMENT:
            message = f"{where}={shown}: {rule.accepted}"
        else:
            message = f"{name}={shown} ({where}): {rule.accepted}"
        raise _error(name, message) from error


def shown_settings(settings: AuditSettings, names: list[str]) -> str:
    """`name=value, ...` for `names`, as messages show values (secrets hidden)."""
    return ", ".join(f"{name}={_shown(getattr(settings, name), _RULES[name].secret)}"
                     for name in names)


def as_variables(settings: AuditSettings, names: list[str]) -> str:
    """The shell assignments of the `OTEL_AI_AUDIT_*` variables that give `names` their value
    in `settings` (a secret's value left as `...`)."""
    def text(name: str) -> str:
        value = getattr(settings, name)
        if _RULES[name].secret:
            return "..."
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (tuple, list)):
            value = ",".join(str(item) for item in value)
        return shlex.quote("" if value is None else str(value))

    return " ".join(f"{variable(name)}={text(name)}" for name in names)


def _shown(value: Any, secret: bool) -> str:
    """The value as a message shows it: quoted text, never a secret, never a URL password."""
    if secret:
        size = len(value) if isinstance(value, str) else None
        return "<hidden>" if size is None else f"<hidden, {size} characters>"
    if isinstance(value, str) and "@" in value:
        value = re.sub(r"(://[^:/@,\s]*:)[^@/,\s]*@", r"\1***@", value)
    return repr(value)


_COMPATIBLE_ERRORS = {
    "sampling_rate": ("otel_ai_audit.pipeline.sampling", "SamplingConfigError"),
    "sampling_hold_hours": ("otel_ai_audit.pipeline.sampling", "SamplingConfigError"),
    "capture_inputs": ("otel_ai_audit.capture", "CaptureConfigError"),
    "capture_outputs": ("otel_ai_audit.capture", "CaptureConfigError"),
    "redact_fields": ("otel_ai_audit.capture", "CaptureConfigError"),
}
"""Settings refused by their own modules before they were checked here: their error is that
module's `ConfigurationError` subclass, so code catching it goes on working. Imported when
needed, as those modules import this one."""


def _error(name: str, message: str) -> ConfigurationError:
    kind: type[ConfigurationError] = ConfigurationError
    legacy = _COMPATIBLE_ERRORS.get(name)
    if legacy is not None:
        kind = getattr(importlib.import_module(legacy[0]), legacy[1])
    return kind(message, variable=variable(name))


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("not a boolean")


def _integer(minimum: int, *, multiple_of: int = 1) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, str):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("not an integer")
        if value < minimum or value % multiple_of:
            raise ValueError("out of range")
        return value

    return convert


def _number(minimum: float, maximum: float = math.inf, *, above: bool = False,
            below: bool = False) -> Callable[[Any], float]:
    """A finite number in [minimum, maximum]; `above` / `below` exclude the bound."""

    def convert(value: Any) -> float:
        if isinstance(value, str):
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("not a number")
        number = float(value)
        if (not math.isfinite(number) or number < minimum or number > maximum
                or (above and number == minimum) or (below and number == maximum)):
            raise ValueError("out of range")
        return number

    return convert


def _choice(options: Any) -> Callable[[Any], str]:
    accepted = get_args(options)

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("not text")
        word = value.strip().lower()
        if word not in accepted:
            raise ValueError("not one of the options")
        return word

    return convert


def _text(check: Callable[[str], Any] | None = None, *, optional: bool = False
          ) -> Callable[[Any], str | None]:
    """Text, not blank, passing `check`; "" means unset where the setting is optional."""

    def convert(value: Any) -> str | None:
        if not isinstance(value, str):
            raise TypeError("not text")
        if value == "" and optional:
            return None
        if not value.strip():
            raise ValueError("blank")
        if check is not None and not check(value.strip()):
            raise ValueError("refused")
        return value.strip() if check is not None else value

    return convert


def _names(check: Callable[[str], Any] | None = None,
           whole: Callable[[tuple[str, ...]], bool] | None = None
           ) -> Callable[[Any], tuple[str, ...]]:
    """A comma-separated list (or a list or tuple of text from `configure()`), each entry
    passing `check` and the whole passing `whole`."""

    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            entries: Any = value.split(",")
        elif isinstance(value, (list, tuple)) and all(isinstance(e, str) for e in value):
            entries = value
        else:
            raise TypeError("not a list of text")
        names = tuple(entry.strip() for entry in entries if entry.strip())
        if check is not None and not all(check(name) for name in names):
            raise ValueError("an entry is refused")
        if whole is not None and not whole(names):
            raise ValueError("refused")
        return names

    return convert


def _url(*schemes: str) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            return False
        return parts.scheme.lower() in schemes and bool(parts.hostname)

    return check


_http_url = _url("http", "https")


def _urls(text: str) -> bool:
    urls = [url.strip() for url in text.split(",") if url.strip()]
    return bool(urls) and all(_http_url(url) for url in urls)


def _host_ports(text: str) -> bool:
    servers = [server.strip() for server in text.split(",")]
    return all(re.fullmatch(r"[A-Za-z0-9._-]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}", server)
               for server in servers)


def _regex(text: str) -> bool:
    try:
        re.compile(text)
    except re.error:
        return False
    return True


def _features(names: tuple[str, ...]) -> bool:
    return len(names) <= 1 or not {"all", "none"} & set(names)


_HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAME = re.compile(r"[\w.\-]+")
"""A model name in `http_model_urls` (as `instrumentation.http._NAME`), or a risk level."""


def _route(entry: str) -> bool:
    method, _, glob = entry.rpartition(" ")
    return ((not method.strip() or method.strip().isalpha())
            and glob[:1] in ("/", "*", "?", "["))


def _model_url(entry: str) -> bool:
    name, separator, glob = entry.partition("=")
    if not (separator and _NAME.fullmatch(name.strip())):
        glob = entry
    glob = glob.strip()
    return "://" in glob or glob[:1] in ("*", "?", "[")


def _headers(text: str) -> bool:
    pairs = [pair for pair in text.split(",") if pair.strip()]
    for pair in pairs:
        key, separator, _ = pair.partition("=")
        if not separator or not _HTTP_TOKEN.fullmatch(key.strip()):
            return False
    return bool(pairs)


def _s3_location(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme == "s3" and bool(parts.netloc)


_BOOLEAN = "true or false (also 1/0, yes/no, on/off, in any case)"
_FREE_TEXT = "any non-empty text"
_PATH = "a file path"
_LIST = "comma-separated "


def _one_of(options: Any, note: str = "") -> str:
    return "one of " + ", ".join(repr(o) for o in get_args(options)) + note


_RULES: dict[str, Rule] = {
    "enabled": Rule(_BOOLEAN, _boolean),
    "required": Rule(_BOOLEAN, _boolean, optional=True),
    "store": Rule(_PATH + " for the store, in a folder that exists and can be written",
                  _text()),
    "signing_key": Rule(_PATH + " of an Ed25519 private key (PKCS#8 PEM), or 'ephemeral'",
                        _text(optional=True), optional=True),
    "hmac_key": Rule(_FREE_TEXT, _text(optional=True), optional=True, secret=True),
    "hmac_key_file": Rule(_PATH, _text(optional=True), optional=True),
    "capture_inputs": Rule(_one_of(CaptureMode), _choice(CaptureMode)),
    "capture_outputs": Rule(_one_of(CaptureMode), _choice(CaptureMode)),
    "capture_max_bytes": Rule("a whole number of bytes, at least 1", _integer(1)),
    "redact_fields": Rule(_LIST + "regular expressions (Python re syntax)", _names(_regex)),
    "default_risk": Rule(_one_of(RiskLevel), _choice(RiskLevel)),
    "model_name": Rule(_FREE_TEXT, _text(optional=True), optional=True),
    "model_version": Rule(_FREE_TEXT, _text(optional=True), optional=True),
    "checkpoint_every": Rule("a whole number of records, at least 1", _integer(1)),
    "checkpoint_interval": Rule("a number of seconds greater than 0", _number(0, above=True)),
    "max_queue": Rule("a whole number of queue entries, at least 1", _integer(1)),
    "queue_full_policy": Rule(
        "the queue-full policy must be one of 'block' (the caller waits for the writer), "
        "'spill' (to a file beside the store); there is no 'drop': no decision is dropped",
        _choice(QueueFullPolicy)),
    "sampling_rate": Rule("a number from 0 to 1 (a share of low-risk decisions to keep)",
                          _number(0, 1), optional=True),
    "sampling_keep_risk": Rule(_LIST + "risk levels (letters, digits, _ . -)",
                               _names(_NAME.fullmatch), optional=True),
    "sampling_policy": Rule(_PATH + " of a JSON sampling policy", _text(optional=True),
                            optional=True),
    "sampling_hold_hours": Rule("a number of hours, 0 or more", _number(0)),
    "decision_mode": Rule(_one_of(DecisionMode), _choice(DecisionMode)),
    "monitor_features": Rule("'all', 'none', or " + _LIST + "feature names",
                             _names(whole=_features)),
    "monitor_bins": Rule("a whole multiple of 10, at least 10", _integer(10, multiple_of=10)),
    "monitor_top_categories": Rule("a whole number, at least 1", _integer(1)),
    "drift_numeric_method": Rule(_one_of(NumericDriftMethod), _choice(NumericDriftMethod)),
    "drift_categorical_method": Rule(_one_of(CategoricalDriftMethod),
                                     _choice(CategoricalDriftMethod)),
    "drift_small_reference": Rule("a whole number of reference rows, 0 or more", _integer(0)),
    "drift_p_value": Rule("a p-value between 0 and 1, both excluded",
                          _number(0, 1, above=True, below=True)),
    "drift_psi_threshold": Rule("a number greater than 0", _number(0, above=True)),
    "drift_js_threshold": Rule("a number greater than 0, at most 1", _number(0, 1, above=True)),
    "drift_share": Rule("a share greater than 0, at most 1", _number(0, 1, above=True)),
    "fastapi_routes": Rule(_LIST + "routes, each [METHOD ]GLOB with the glob starting with / "
                           "or a wildcard (POST /predict, POST /models/*)", _names(_route)),
    "fastapi_identity_headers": Rule(_LIST + "HTTP header names",
                                     _names(_HTTP_TOKEN.fullmatch)),
    "http_model_urls": Rule(_LIST + "model endpoints, each [NAME=]GLOB matched against "
                            "scheme://host[:port]/path (churn=https://models.internal/churn/*)",
                            _names(_model_url)),
    "elasticsearch_url": Rule(_LIST + "http:// or https:// node URLs", _text(_urls,
                              optional=True), optional=True),
    "elasticsearch_api_key": Rule(_FREE_TEXT, _text(optional=True), optional=True,
                                  secret=True),
    "elasticsearch_username": Rule(_FREE_TEXT, _text(optional=True), optional=True),
    "elasticsearch_password": Rule(_FREE_TEXT, _text(optional=True), optional=True,
                                   secret=True),
    "elasticsearch_ca_certs": Rule(_PATH + " of a CA bundle (PEM)", _text(optional=True),
                                   optional=True),
    "elasticsearch_verify_certs": Rule(_BOOLEAN, _boolean),
    "elasticsearch_index_prefix": Rule(
        "an index name prefix: lower-case letters, digits, . _ + -, starting with a letter or "
        "digit", _text(re.compile(r"[a-z0-9][a-z0-9._+-]{0,199}").fullmatch)),
    "elasticsearch_retention": Rule(
        "an Elasticsearch time value, a whole number and a unit (190d, 4320h)",
        _text(re.compile(r"0*[1-9][0-9]*(d|h|m|s|ms|micros|nanos)").fullmatch)),
    "splunk_hec_url": Rule("an http:// or https:// URL", _text(_http_url, optional=True),
                           optional=True),
    "splunk_hec_token": Rule(_FREE_TEXT, _text(optional=True), optional=True, secret=True),
    "splunk_hec_index": Rule(
        "a Splunk index name: lower-case letters, digits, _ and -, not starting with _ or -",
        _text(re.compile(r"[a-z0-9][a-z0-9_-]*").fullmatch, optional=True), optional=True),
    "splunk_hec_source": Rule(_FREE_TEXT, _text()),
    "splunk_hec_host": Rule(_FREE_TEXT, _text(optional=True), optional=True),
    "splunk_hec_ack": Rule(_BOOLEAN, _boolean),
    "splunk_hec_ca_certs": Rule(_PATH + " of a CA bundle (PEM)", _text(optional=True),
                                optional=True),
    "splunk_hec_verify_certs": Rule(_BOOLEAN, _boolean),
    "otlp_endpoint": Rule("an http:// or https:// URL (http:// is plaintext)",
                          _text(_http_url, optional=True), optional=True),
    "otlp_protocol": Rule(_one_of(OtlpProtocol), _choice(OtlpProtocol)),
    "otlp_headers": Rule(_LIST + "key=value pairs, as OTEL_EXPORTER_OTLP_HEADERS (not shown: "
                         "they may hold credentials)", _text(_headers, optional=True),
                         optional=True, secret=True),
    "kafka_bootstrap_servers": Rule(_LIST + "host:port of Kafka brokers",
                                    _text(_host_ports, optional=True), optional=True),
    "ship_shutdown_timeout": Rule("a number of seconds, 0 or more", _number(0)),
    "anchor_s3": Rule("an s3://BUCKET or s3://BUCKET/PREFIX location",
                      _text(_s3_location, optional=True), optional=True),
    "anchor_s3_endpoint": Rule("an http:// or https:// URL", _text(_http_url, optional=True),
                               optional=True),
    "anchor_s3_region": Rule(_FREE_TEXT, _text(optional=True), optional=True),
    "anchor_interval": Rule("a number of seconds greater than 0", _number(0, above=True)),
    "anchor_retention_days": Rule("a whole number of days, at least 1", _integer(1)),
    "tsa_url": Rule("an http:// or https:// URL", _text(_http_url, optional=True),
                    optional=True),
    "durability": Rule(_one_of(DurabilitySetting), _choice(DurabilitySetting)),
    "durable_timeout": Rule("a number of seconds greater than 0", _number(0, above=True)),
}
"""One rule per field of `AuditSettings` (checked below: a field without one is an error)."""

RULES = _RULES

if set(_RULES) != {item.name for item in fields(AuditSettings)}:
    raise RuntimeError("every AuditSettings field needs a rule in config._RULES: "
                       f"{sorted(set(_RULES) ^ {item.name for item in fields(AuditSettings)})}")


# --- settings that parse but cannot be honoured ------------------------------------------------


def read_setting_file(name: str, path: str, what: str, *, value: str | None = None) -> bytes:
    """The bytes of the file at `path`, which the setting `name` (of `value`, by default the
    path) leads to, or a `ConfigurationError` saying why not: missing, a folder, unreadable
    or empty."""
    shown = f"{variable(name)}={path if value is None else value!r}"
    target = Path(path)
    if target.is_dir():
        raise ConfigurationError(f"{shown}: is a folder, not {what}", variable=variable(name))
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{shown}: no such file ({what})",
                                 variable=variable(name)) from None
    except OSError as error:
        raise ConfigurationError(f"{shown}: cannot read {what} ({error.strerror})",
                                 variable=variable(name)) from None
    if not data.strip():
        raise ConfigurationError(f"{shown}: the file is empty; it should hold {what}",
                                 variable=variable(name))
    return data


def check_paths(settings: AuditSettings) -> None:
    """Refuse paths that parse but cannot be used here: the store's folder must exist and be
    writable (the store, its journal and the keys created beside it go there), the store must
    be a file that can be written, and the CA bundles must be readable files."""
    shown = f"{variable('store')}={settings.store!r}"
    store = Path(settings.store)
    folder = store.parent
    if store.is_dir():
        raise ConfigurationError(f"{shown}: is a folder; name the store file in it "
                                 f"(e.g. {store / 'audit.db'})", variable=variable("store"))
    if not folder.is_dir():
        problem = "does not exist" if not folder.exists() else "is not a folder"
        raise ConfigurationError(f"{shown}: the store's folder {folder} {problem}",
                                 variable=variable("store"))
    try:
        handle, probe = tempfile.mkstemp(prefix=".otel-ai-audit-write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigurationError(
            f"{shown}: cannot write in the store's folder {folder} ({error.strerror})",
            variable=variable("store")) from None
    if store.exists():
        try:
            with open(store, "r+b"):
                pass
        except OSError as error:
            raise ConfigurationError(f"{shown}: cannot write the store ({error.strerror})",
                                     variable=variable("store")) from None
    for name in ("elasticsearch_ca_certs", "splunk_hec_ca_certs"):
        path = getattr(settings, name)
        if path:
            read_setting_file(name, path, "a CA bundle (PEM)")
