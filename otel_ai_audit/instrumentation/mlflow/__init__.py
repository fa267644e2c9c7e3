"""Model identity from the MLflow registry a model was loaded from.

Wraps `mlflow.pyfunc.load_model`, `mlflow.sklearn.load_model` and `mlflow.pytorch.load_model`.
The loaded object (and, for pyfunc, the raw model inside it, which the framework
instrumentations see) gets the registered name and version of a `models:/NAME/VERSION` or
`models:/NAME@ALIAS` URI, and the run and model ids as the decision records' `model.source`.
A name or version set with `register_model` or `OTEL_AI_AUDIT_MODEL_*` takes precedence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_ai_audit.instrumentation.model_call import RuntimeSource, runtime_source

if TYPE_CHECKING:
    from otel_ai_audit.runtime import AuditRuntime

logger = logging.getLogger(__name__)

LOADERS = (("mlflow.pyfunc", "load_model"), ("mlflow.sklearn", "load_model"),
           ("mlflow.pytorch", "load_model"))
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))"
                         r"(?:/.*)?$")


def registry_identity(model_uri: str) -> tuple[str | None, str | None]:
    """(name, version) a `models:/` URI names; an alias or `latest` is resolved by MLflow."""
    match = _REGISTERED.match(str(model_uri))
    if match is None or match["name"].startswith("m-"):
        return None, None
    name, version, alias = match["name"], match["version"], match["alias"]
    if version is not None and version.isdigit():
        return name, version
    try:
        from mlflow import MlflowClient

        client = MlflowClient()
        if alias is not None:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        versions = client.get_latest_versions(name)
        return name, (str(max(int(v.version) for v in versions)) if versions else None)
    except Exception:  # noqa: BLE001 - identity is best effort; the fingerprint remains
        logger.warning("otel-ai-audit: could not resolve the version of %s", model_uri)
        return name, None


def _source(model_uri: str, loaded: Any) -> dict[str, Any]:
    metadata = getattr(loaded, "metadata", None)
    if metadata is None:
        # A flavour loader returns the bare model; its MLmodel file has the same facts.
        from mlflow.models import get_model_info

        metadata = get_model_info(str(model_uri))
    source: dict[str, Any] = {"registry": "mlflow", "model_uri": str(model_uri)}
    for field in ("run_id", "model_uuid", "artifact_path"):
        value = getattr(metadata, field, None)
        if value:
            source[field] = str(value)
    return source


def _after_load(runtime: RuntimeSource) -> Any:
    """A wrapper of a loader noting the registry identity of what it loads in `runtime()`."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        loaded = wrapped(*args, **kwargs)
        current = runtime()
        if current is not None:
            _note_identity(current, args[0] if args else kwargs.get("model_uri"), loaded)
        return loaded

    return wrapper


def _note_identity(runtime: AuditRuntime, model_uri: Any, loaded: Any) -> None:
    try:
        name, version = registry_identity(model_uri)
        source = _source(model_uri, loaded)
        targets = [loaded]
        get_raw_model = getattr(loaded, "get_raw_model", None)
        if callable(get_raw_model):
            targets.append(get_raw_model())
        for target in targets:
            runtime.note_registry(target, name=name, version=version, source=source)
    except Exception:  # noqa: BLE001 - never break model loading
        logger.warning("otel-ai-audit: could not record the MLflow identity", exc_info=True)


class MLflowInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `mlflow`. `instrument()` takes `audit_runtime=`
    (see `otel_ai_audit.instrumentation.model_call`)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        # Installed as `mlflow` or `mlflow-skinny`: a distribution requirement would reject one.
        return ()

    _active = False

    def _instrument(self, **kwargs: Any) -> None:
        """Patch each loader when its module is imported: importing MLflow ourselves would
        slow down every instrumented program that never uses it."""
        MLflowInstrumentor._active = True
        runtime = runtime_source(kwargs)
        for module, function in LOADERS:
            wrapt.register_post_import_hook(_patcher(function, runtime), module)

    def _uninstrument(self, **kwargs: Any) -> None:
        MLflowInstrumentor._active = False
        for module, function in LOADERS:
            unwrap(module, function)


def _patcher(function: str, runtime: RuntimeSource) -> Any:
    def patch(module: Any) -> None:
        loader = getattr(module, function, None)
        if MLflowInstrumentor._active and loader is not None and not isinstance(
                loader, wrapt.FunctionWrapper):
            wrapt.wrap_function_wrapper(module, function, _after_load(runtime))

    return patch
