"""The process-wide audit runtime: settings, keys, capture policy, writer and processor.

`configure()` is the Python API; the distro calls the same function for zero-code users.

Why one module: `configure()` and `shutdown()` build and tear down the one process-wide runtime
(`_runtime`), and the public recording functions (`register_*`, `record_*`) are thin calls on
it; split, that global would be reached into from several modules.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from otel_ai_audit.anchor.s3 import AnchorBucket
from otel_ai_audit.anchor.thread import AnchoringThread
from otel_ai_audit.capture import CapturePolicy, load_hmac_key
from otel_ai_audit.config import AuditSettings
from otel_ai_audit.decisions import RiskFunction
from otel_ai_audit.fingerprints import fingerprint_of
from otel_ai_audit.integrity.checkpoint import combined_policy_hash
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.monitoring.profile import (
    build_profile,
    profile_options,
    reference_event,
    references,
)
from otel_ai_audit.pipeline.metrics import pipeline_metrics
from otel_ai_audit.pipeline.sampling import SamplingPolicy
from otel_ai_audit.pipeline.writer import DURABILITY_LEVELS, AuditWriter, Durability
from otel_ai_audit.processor import AuditSpanProcessor
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.sinks import Shipper, configured_sinks

logger = logging.getLogger(__name__)

DURABLE_RISKS = frozenset({"high", "critical", "unacceptable"})
"""Risk levels whose decisions `durability=auto` commits before the call returns."""
OVERSIGHT_ACTIONS = ("accepted", "overridden", "reversed", "not_used", "stopped")


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model object beyond its fitted state (all optional).

    `name`/`version` come from the user (`register_model`); `registry_*` from the model
    registry it was loaded from (MLflow), which the environment's settings outrank.
    """

    name: str | None = None
    version: str | None = None
    risk: str | None = None
    risk_fn: RiskFunction | None = None
    registry_name: str | None = None
    registry_version: str | None = None
    source: dict[str, Any] | None = None
    durability: Durability | None = None

    def resolve(self, settings: AuditSettings) -> tuple[str | None, str | None]:
        """Name and version in order: explicit API, environment, model registry."""
        return (self.name or settings.model_name or self.registry_name,
                self.version or settings.model_version or self.registry_version)


_NO_INFO = ModelInfo()


@dataclass
class AuditRuntime:
    settings: AuditSettings
    capture: CapturePolicy
    writer: AuditWriter
    processor: AuditSpanProcessor
    models: weakref.WeakKeyDictionary[Any, ModelInfo] = field(
        default_factory=weakref.WeakKeyDictionary)
    shippers: list[Shipper] = field(default_factory=list)
    """One per configured sink, reading the store the writer persists to."""
    anchoring: AnchoringThread | None = None
    """Publishes external anchors of the store, when `anchor_s3` is set."""

    def model_info(self, model: Any) -> ModelInfo:
        if not self.models:
            return _NO_INFO
        try:
            return self.models.get(model) or _NO_INFO
        except TypeError:
            return _NO_INFO

    def durability(self, info: ModelInfo | None, risk: str) -> Durability:
        """When a decision of this model (None: one with no model object) and risk may return:
        the model's own setting, else the configured one; `auto` makes high-risk decisions
        (and above) `process` durable."""
        chosen = (info.durability if info is not None else None) or self.settings.durability
        if chosen == "auto":
            return "process" if risk in DURABLE_RISKS else "async"
        return chosen

    def note_registry(self, model: Any, *, name: str | None, version: str | None,
                      source: dict[str, Any]) -> None:
        """Record where a model object was loaded from (a registry), keeping what the user
        set."""
        try:
            self.models[model] = replace(self.model_info(model), registry_name=name,
                                         registry_version=version, source=source)
        except TypeError:
            pass

    def shutdown(self) -> None:
        self.writer.close()
        if self.anchoring is not None:  # after the writer: anchors its closing checkpoint
            self.anchoring.close(self.settings.ship_shutdown_timeout)
        for shipper in self.shippers:  # after the writer: they ship its last records too
            shipper.close(self.settings.ship_shutdown_timeout)


_runtime: AuditRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> AuditRuntime | None:
    return _runtime


EPHEMERAL_SIGNING_KEY = "ephemeral"
"""The `OTEL_AI_AUDIT_SIGNING_KEY` value that asks for a key made in memory for this process
only: its public half is in the store alone, so only `verify --allow-self-asserted` accepts it."""


def load_signing_key(settings: AuditSettings) -> SigningKey:
    """The configured key; `ephemeral` makes a throwaway one in memory (a warning says so).

    No key configured is a `ConfigurationError` showing how to make one: a key created in
    silence signs a trail that nobody holds the public key of, and `verify` with the user's own
    key then fails. A key that cannot be used is one too, naming the variable and the file:
    missing, a folder, unreadable, empty, a public key or a certificate, encrypted, or not an
    Ed25519 private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from otel_ai_audit.config import read_setting_file, variable
    from otel_ai_audit.errors import ConfigurationError

    name = variable("signing_key")
    value = settings.signing_key
    if not value:
        left = Path(f"{settings.store}.signing-key.pem")
        earlier = (f"; to keep signing with the key an earlier version created, set {name}={left}"
                   if left.is_file() else "")
        raise ConfigurationError(
            f"{name} is not set: create a key with 'otel-ai-audit keygen --out audit-signing' "
            f"and set {name}=audit-signing.key.pem (or {name}={EPHEMERAL_SIGNING_KEY} for a "
            f"throwaway key){earlier}", variable=name)
    if value == EPHEMERAL_SIGNING_KEY:
        key = SigningKey.generate()
        logger.warning("otel-ai-audit: %s=%s: checkpoints are signed with a key that exists only "
                       "in this process (key id %s); only 'verify --allow-self-asserted' accepts "
                       "them", name, EPHEMERAL_SIGNING_KEY, key.key_id[:16])
        return key
    data = read_setting_file("signing_key", value, "the signing key")
    text = data.decode("ascii", "replace")
    if "PRIVATE KEY-----" not in text:
        found = ("a public key (the .pub.pem file is for verifiers)"
                 if "PUBLIC KEY-----" in text else "a certificate"
                 if "CERTIFICATE-----" in text else "no PEM private key")
        problem = f"{value} holds {found}, not the private signing key"
    else:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            problem = f"{value} holds an encrypted private key; give it unencrypted"
        except ValueError:
            problem = f"{value} holds a private key that cannot be read"
        else:
            if isinstance(key, Ed25519PrivateKey):
                return SigningKey(key)
            kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey")
            problem = f"{value} holds a private key of another type ({kind}), not Ed25519"
    raise ConfigurationError(
        f"{name}={value!r}: {problem} (an Ed25519 private key in PKCS#8 PEM, as "
        f"'otel-ai-audit keygen' writes)", variable=name)


def configure(tracer_provider: TracerProvider | None = None, *,
              install_processor: bool = True, meter_provider: MeterProvider | None = None,
              instrument: bool | None = None, origin: str = "an earlier configure() call",
              **overrides: Any) -> AuditRuntime:
    """Set up the audit trail for this process (idempotent; the first call wins).

    Keyword arguments mirror the `OTEL_AI_AUDIT_*` variables (`store=`, `signing_key=`, ...)
    and take precedence over them. With `install_processor`, the audit processor is added to
    `tracer_provider`, or to the global SDK provider (created if the app has none). The
    pipeline's metrics go to `meter_provider`, or to the global one.

    `instrument` turns on this package's instrumentations of the installed libraries
    (scikit-learn, PyTorch, FastAPI, requests/httpx, MLflow), each when its library is
    imported, as `opentelemetry-instrument` would, minus those in
    `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`. By default it does so when
    the processor goes on the global provider: a caller that passes its own `tracer_provider`
    instruments with it itself (`SklearnInstrumentor().instrument(tracer_provider=...)`).

    A later call whose settings differ from those in force changes nothing and says so in one
    line on stderr, naming the settings and the `OTEL_AI_AUDIT_*` variables that set them
    before the first call (`origin` names who made that first call).

    A setting that is invalid (a variable or a keyword), or that cannot be honoured (a key
    file that is missing or not a private key, a store whose folder cannot be written),
    raises `otel_ai_audit.errors.ConfigurationError`, one line naming it; nothing is set up
    then. The caller decides whether to go on without the audit trail.
    """
    from otel_ai_audit.config import check_paths, variable
    from otel_ai_audit.errors import ConfigurationError
    from otel_ai_audit.pipeline.sampling import SamplingConfigError

    global _runtime, _origin
    with _lock:
        if _runtime is not None:
            _report_conflict(_runtime.settings, overrides)
            return _runtime
        settings = AuditSettings.from_env(**overrides)
        check_paths(settings)
        signing_key = load_signing_key(settings)  # first: a refused start leaves no file behind
        capture = CapturePolicy(
            inputs=settings.capture_inputs, outputs=settings.capture_outputs,
            max_bytes=settings.capture_max_bytes, redact_fields=settings.redact_fields,
            hmac_key=load_hmac_key(settings.hmac_key, settings.hmac_key_file, settings.store))
        try:
            sampling = SamplingPolicy.from_settings(settings)
        except SamplingConfigError as error:
            raise ConfigurationError(f"{variable('sampling_policy')}: {error}",
                                     variable=variable("sampling_policy")) from error
        try:
            sinks = configured_sinks(settings)
        except (ImportError, OSError, ValueError) as error:
            raise ConfigurationError(f"cannot ship the audit trail as configured: {error}"
                                     ) from error
        references.select(settings.monitor_features)
        service = os.environ.get("OTEL_SERVICE_NAME", "unknown_service")
        writer = AuditWriter(
            settings.store, signing_key, service_name=service,
            checkpoint_every=settings.checkpoint_every,
            checkpoint_interval=settings.checkpoint_interval, max_queue=settings.max_queue,
            queue_full=settings.queue_full_policy, sampling=sampling,
            policy_hash=combined_policy_hash({"capture": capture.policy_hash,
                                              "sampling": sampling.policy_hash}))
        metrics = pipeline_metrics(meter_provider)
        metrics.observe(writer)
        runtime = AuditRuntime(settings, capture, writer, AuditSpanProcessor(writer), shippers=[
            Shipper(settings.store, sink, metrics=metrics) for sink in sinks])
        for shipper in runtime.shippers:
            shipper.start()
        runtime.anchoring = _anchoring(settings, lambda: writer.key)
        if runtime.anchoring is not None:
            metrics.observe_anchoring(runtime.anchoring)
        if install_processor:
            _provider(tracer_provider).add_span_processor(runtime.processor)
        atexit.register(runtime.shutdown)
        _close_on_sigterm()
        _runtime = runtime
        _origin = origin
    if instrument or (instrument is None and install_processor and tracer_provider is None):
        _instrument_libraries(tracer_provider)
    return runtime


_origin = "an earlier configure() call"
"""Who set up the runtime in force, as a conflicting `configure()` names it."""


def _report_conflict(settings: AuditSettings, overrides: dict[str, Any]) -> None:
    """One line on stderr when `overrides` ask for other settings than those in force."""
    from otel_ai_audit.config import as_variables, shown_settings

    wanted = AuditSettings.from_env(**overrides)
    differ = [name for name, value in overrides.items()
              if value is not None and getattr(wanted, name) != getattr(settings, name)]
    if not differ:
        return
    advice = (f"set them in its environment instead: {as_variables(wanted, differ)} "
              f"opentelemetry-instrument ..." if _origin == "opentelemetry-instrument"
              else "call otel_ai_audit.shutdown() first to set the audit trail up afresh, or set "
              f"{as_variables(wanted, differ)} before the first call")
    logger.warning("otel-ai-audit: configure(%s) ignored: %s already set up the audit trail "
                   "with %s; %s", shown_settings(wanted, differ), _origin,
                   shown_settings(settings, differ), advice)


def _instrument_libraries(tracer_provider: TracerProvider | None) -> None:
    """This package's instrumentors of the installed libraries, as `opentelemetry-instrument`
    loads them (its entry points, minus `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`), each when its
    library is imported: `configure()` does not import PyTorch into a program that never uses
    it. A library that is missing is skipped; an instrumentor that fails is logged, never
    raised."""
    from importlib.metadata import packages_distributions

    import wrapt
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    from opentelemetry.instrumentation.environment_variables import (
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
    )
    from opentelemetry.util._importlib_metadata import entry_points
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    disabled = {name.strip() for name in
                os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")}
    if "*" in disabled:
        return
    modules: dict[str, list[str]] = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            modules.setdefault(canonicalize_name(distribution), []).append(module)

    def turn_on(name: str, instrumentor: Any) -> None:
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        try:
            instrumentor.instrument(tracer_provider=tracer_provider, skip_dep_check=True)
        except Exception as error:  # noqa: BLE001 - instrumentation never raises into user code
            logger.debug("otel-ai-audit: instrumenting %s failed", name, exc_info=True)
            logger.warning("otel-ai-audit: cannot instrument %s: %s: %s", name,
                           type(error).__name__, " ".join(str(error).split()))

    for entry_point in entry_points(group="opentelemetry_instrumentor"):
        if entry_point.name in disabled or not entry_point.value.startswith(f"{__package__}."):
            continue
        try:
            instrumentor = entry_point.load()()
        except ModuleNotFoundError:  # a module it needs is not installed
            continue
        requirements = list(instrumentor.instrumentation_dependencies())
        if get_dependency_conflicts(requirements):  # its library is missing, or too old
            continue
        targets = {module for requirement in requirements for module in
                   modules.get(canonicalize_name(Requirement(requirement).name), [])}
        if not targets:
            turn_on(entry_point.name, instrumentor)
        for module in targets:  # now if imported already, else as soon as it is
            wrapt.register_post_import_hook(
                lambda _module, name=entry_point.name, chosen=instrumentor: turn_on(name, chosen),
                module)


def _anchoring(settings: AuditSettings,
               key: Callable[[], SigningKey]) -> AnchoringThread | None:
    if not settings.anchor_s3:
        return None
    location = settings.anchor_s3

    def bucket() -> AnchorBucket:
        target = AnchorBucket(location, endpoint_url=settings.anchor_s3_endpoint,
                              region=settings.anchor_s3_region)
        target.check_object_lock()
        return target

    thread = AnchoringThread(settings.store, key, bucket, tsa_url=settings.tsa_url,
                             retention_days=settings.anchor_retention_days,
                             interval=settings.anchor_interval)
    thread.start()
    return thread


def _provider(tracer_provider: TracerProvider | None) -> TracerProvider:
    if tracer_provider is not None:
        return tracer_provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    return provider


def _close_on_sigterm() -> None:
    """Make SIGTERM run atexit handlers (so chains close) when nobody else handles it."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def register_model(model: Any, *, name: str | None = None, version: str | None = None,
                   risk: str | None = None, risk_fn: RiskFunction | None = None,
                   durability: Durability | None = None) -> None:
    """Name a model object and set its risk (a level, or a function of one decision's output)
    and, if it should differ from the configured one, its decisions' durability."""
    if durability is not None and durability not in DURABILITY_LEVELS:
        raise ValueError(f"durability must be one of {DURABILITY_LEVELS}, not {durability!r}")
    runtime = configure()
    known = runtime.model_info(model)
    runtime.models[model] = replace(known, name=name, version=version, risk=risk,
                                    risk_fn=risk_fn, durability=durability)


def register_reference(model: Any, data: Any, predictions: Any = None, *,
                       categorical: tuple[str, ...] = (), classes: tuple[Any, ...] = (),
                       fingerprint: str | None = None) -> str:
    """Record the reference profile of a model trained elsewhere (scikit-learn models get one
    at `fit`): `data` is its training data (a DataFrame, or a 2-D array or tensor whose columns
    are then named x0, x1, ...), `predictions` the model's outputs on it (class scores are
    read as the best class, named by `classes`). From then on, this process's decisions of
    the model carry their monitoring view. Returns the profile id.

    The profile is tied to the model's fingerprint (or `fingerprint`, for a model this process
    only calls over HTTP) and written to the trail as a `reference` record. The fingerprint is
    the one the model's framework instrumentation registered (`otel_ai_audit.fingerprints`).
    """
    runtime = configure()
    digest = fingerprint or fingerprint_of(model)
    profile = build_profile(digest, data, predictions, categorical=categorical, classes=classes,
                            **profile_options(runtime.settings))
    references.register(profile)
    name, version = runtime.model_info(model).resolve(runtime.settings)
    identity = {"fingerprint": digest, "name": name, "version": version}
    runtime.processor.submit_event(reference_event(
        profile, {key: value for key, value in identity.items() if value is not None}))
    return profile.id


def _submit(event_type: EventType, **fields: Any) -> str:
    runtime = configure()
    event = new_event(event_type, **to_json_data(fields))
    runtime.processor.submit_event(event)
    return str(event["id"])


def record_oversight(decision_id: str, *, reviewer: str, action: str, role: str | None = None,
                     reason: str | None = None) -> str:
    """A human-oversight action on a decision (EU AI Act Art. 14): returns the record id."""
    if action not in OVERSIGHT_ACTIONS:
        raise ValueError(f"action must be one of {OVERSIGHT_ACTIONS}, not {action!r}")
    return _submit(EventType.OVERSIGHT, decision_id=decision_id,
                   reviewer={"id": reviewer, "role": role}, action=action, reason=reason)


def record_dispute(decision_id: str, *, reason: str, raised_by: str | None = None) -> str:
    """A decision contested by the person concerned or a reviewer.

    If sampling left the decision out of the chain and it is still held, it is promoted into
    the chain first, so the dispute always has its decision on the record; the dispute record
    says whether it does (`decision_on_record`: false when the decision is neither chained nor
    held). Both happen on the writer thread, in queue order, after the decision itself.
    """
    return _submit(EventType.DISPUTE, decision_id=decision_id, reason=reason,
                   raised_by=raised_by)


def record_outcome(decision_id: str, *, label: Any) -> str:
    """The true outcome of a decision, once known (for performance and fairness monitoring)."""
    return _submit(EventType.OUTCOME, decision_id=decision_id, label=label)


def shutdown() -> None:
    """Close this process's chain (signing the closing checkpoint) and forget the runtime and
    the reference profiles, so a later `configure()` starts afresh. Runs by itself at exit."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.shutdown()
        _runtime = None
        references.clear()
