"""The process-wide audit runtime: settings, keys, capture policy, writer and processor.

`configure()` is the Python API; the distro calls the same function for zero-code users.
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

    def durability(self, info: ModelInfo, risk: str) -> Durability:
        """When a decision of this model and risk may return: the model's own setting, else
        the configured one; `auto` makes high-risk decisions (and above) `process` durable."""
        chosen = info.durability or self.settings.durability
        if chosen == "auto":
            return "process" if risk in DURABLE_RISKS else "async"
        return chosen

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


def load_signing_key(settings: AuditSettings) -> SigningKey:
    """The configured key, or one created once beside the store (a warning says so).

    A key that cannot be used is a `ConfigurationError` naming the variable and the file:
    missing, a folder, unreadable, empty, a public key or a certificate, encrypted, or not an
    Ed25519 private key.
    """
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from otel_ai_audit.config import read_setting_file, variable
    from otel_ai_audit.errors import ConfigurationError

    def load(name: str, path: Path, what: str, value: str) -> SigningKey:
        data = read_setting_file(name, str(path), what, value=value)
        text = data.decode("ascii", "replace")
        if "PRIVATE KEY-----" not in text:
            found = ("a public key (the .pub.pem file is for verifiers)"
                     if "PUBLIC KEY-----" in text else "a certificate"
                     if "CERTIFICATE-----" in text else "no PEM private key")
            problem = f"{path} holds {found}, not the private signing key"
        else:
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except TypeError:
                problem = f"{path} holds an encrypted private key; give it unencrypted"
            except ValueError:
                problem = f"{path} holds a private key that cannot be read"
            else:
                if isinstance(key, Ed25519PrivateKey):
                    return SigningKey(key)
                kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey")
                problem = f"{path} holds a private key of another type ({kind}), not Ed25519"
        raise ConfigurationError(
            f"{variable(name)}={value!r}: {problem} (an Ed25519 private key in PKCS#8 PEM, as "
            f"'otel-ai-audit keygen' writes)", variable=variable(name))

    if settings.signing_key:
        return load("signing_key", Path(settings.signing_key), "the signing key",
                    settings.signing_key)
    private = Path(f"{settings.store}.signing-key.pem")
    public = Path(f"{settings.store}.pub.pem")
    beside = f"the signing key beside the store, {private}"
    if private.exists():
        return load("store", private, beside, settings.store)
    key = SigningKey.generate()
    try:
        key.save(private, public)
    except FileExistsError:  # another process is creating it: give it time to write the key
        deadline = time.monotonic() + 2.0
        while private.is_file() and not private.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.01)
        return load("store", private, beside, settings.store)
    except OSError as error:
        raise ConfigurationError(
            f"{variable('store')}={settings.store!r}: cannot create {beside} "
            f"({error.strerror}); set OTEL_AI_AUDIT_SIGNING_KEY",
            variable=variable("store")) from None
    logger.warning("otel-ai-audit: no OTEL_AI_AUDIT_SIGNING_KEY configured; created %s beside "
                   "the store. Keep production keys apart from the store (a secret manager) and "
                   "give verifiers %s", private, public)
    return key


def configure(tracer_provider: TracerProvider | None = None, *,
              install_processor: bool = True, meter_provider: MeterProvider | None = None,
              **overrides: Any) -> AuditRuntime:
    """Set up the audit trail for this process (idempotent; the first call wins).

    Keyword arguments mirror the `OTEL_AI_AUDIT_*` variables (`store=`, `signing_key=`, ...)
    and take precedence over them. With `install_processor`, the audit processor is added to
    `tracer_provider`, or to the global SDK provider (created if the app has none). The
    pipeline's metrics go to `meter_provider`, or to the global one.

    A setting that is invalid (a variable or a keyword), or that cannot be honoured (a key
    file that is missing or not a private key, a store whose folder cannot be written),
    raises `otel_ai_audit.errors.ConfigurationError`, one line naming it; nothing is set up
    then. The caller decides whether to go on without the audit trail.
    """
    from otel_ai_audit.config import check_paths, variable
    from otel_ai_audit.errors import ConfigurationError
    from otel_ai_audit.pipeline.sampling import SamplingConfigError

    global _runtime
    with _lock:
        if _runtime is not None:
            return _runtime
        settings = AuditSettings.from_env(**overrides)
        check_paths(settings)
        capture = CapturePolicy(
            inputs=settings.capture_inputs, outputs=settings.capture_outputs,
            max_bytes=settings.capture_max_bytes, redact_fields=settings.redact_fields,
            hmac_key=load_hmac_key(settings.hmac_key, settings.hmac_key_file, settings.store))
        try:
            sampling = SamplingPolicy.from_settings(settings)
        except SamplingConfigError as error:
            raise ConfigurationError(f"{variable('sampling_policy')}: {error}",
                                     variable=variable("sampling_policy")) from error
        signing_key = load_signing_key(settings)
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
        return runtime


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


def note_registry_identity(model: Any, *, name: str | None, version: str | None,
                           source: dict[str, Any]) -> None:
    """Record where a model object was loaded from (a registry), keeping what the user set."""
    runtime = get_runtime()
    if runtime is None:
        return
    known = runtime.model_info(model)
    try:
        runtime.models[model] = replace(known, registry_name=name, registry_version=version,
                                        source=source)
    except TypeError:
        pass


def register_reference(model: Any, data: Any, predictions: Any = None, *,
                       categorical: tuple[str, ...] = (), classes: tuple[Any, ...] = (),
                       fingerprint: str | None = None) -> str:
    """Record the reference profile of a model trained elsewhere (scikit-learn models get one
    at `fit`): `data` is its training data (a DataFrame, or a 2-D array or tensor whose columns
    are then named x0, x1, ...), `predictions` the model's outputs on it (class scores are
    read as the best class, named by `classes`). From then on, this process's decisions of
    the model carry their monitoring view. Returns the profile id.

    The profile is tied to the model's fingerprint (or `fingerprint`, for a model this process
    only calls over HTTP) and written to the trail as a `reference` record.
    """
    runtime = configure()
    digest = fingerprint or _fingerprint(model)
    profile = build_profile(digest, data, predictions, categorical=categorical, classes=classes,
                            **profile_options(runtime.settings))
    references.register(profile)
    name, version = runtime.model_info(model).resolve(runtime.settings)
    identity = {"fingerprint": digest, "name": name, "version": version}
    runtime.processor.submit_event(reference_event(
        profile, {key: value for key, value in identity.items() if value is not None}))
    return profile.id


def _fingerprint(model: Any) -> str:
    """The fingerprint the instrumentation gives `model`'s decisions."""
    if hasattr(model, "get_params"):
        from otel_ai_audit.instrumentation.sklearn.identity import fingerprint

        return fingerprint(model)
    if hasattr(model, "state_dict"):
        from otel_ai_audit.instrumentation.torch import fingerprint as torch_fingerprint

        return torch_fingerprint(model)
    raise ValueError(f"cannot fingerprint a {type(model).__name__}: pass fingerprint=")


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
    """Close this process's chain (signing the closing checkpoint) and forget the runtime, so a
    later `configure()` starts afresh. Runs by itself at exit."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.shutdown()
        _runtime = None
