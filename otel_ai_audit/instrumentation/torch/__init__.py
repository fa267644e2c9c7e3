"""Zero-code audit of PyTorch inference.

Wraps `torch.nn.Module.__call__`. A call is a decision when the module is in `eval()` mode or
gradients are off (`no_grad` / `inference_mode`), and only the outermost module is recorded,
not every submodule it calls. Training forward passes are not decisions and pass through.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_ai_audit import fingerprints
from otel_ai_audit.instrumentation.model_call import (
    RuntimeSource,
    audited_inference,
    runtime_source,
)
from otel_ai_audit.instrumentation.naming import qualified_name
from otel_ai_audit.version import __version__

_in_module_call: ContextVar[bool] = ContextVar("otel_ai_audit_torch_call", default=False)
_fingerprints: weakref.WeakKeyDictionary[Any, tuple[list[Any], int, str]] = (
    weakref.WeakKeyDictionary())


def fingerprint(module: Any) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes, bytes).

    Cached per module until a weight changes: in-place updates (optimizer steps,
    `load_state_dict`) bump the tensors' version counters, which are cheap to sum.
    """
    cached = _fingerprints.get(module)
    if cached is not None:
        tensors, version, value = cached
        if sum(tensor._version for tensor in tensors) == version:
            return value
    import torch

    state = module.state_dict(keep_vars=True)
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        host = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{host.dtype}:{tuple(host.shape)}".encode())
        digest.update(host.reshape(-1).view(torch.uint8).numpy().tobytes())
    tensors = list(state.values())
    value = digest.hexdigest()
    _fingerprints[module] = (tensors, sum(tensor._version for tensor in tensors), value)
    return value


fingerprints.register("torch", lambda model: hasattr(model, "state_dict"), fingerprint)


_identities: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary())


def identity(module: Any, name: str | None, version: str | None) -> dict[str, Any]:
    """Name and version as configured, else the qualified class and the fingerprint (cached per
    module while its weights and the configuration stay the same)."""
    digest = fingerprint(module)
    key = (name, version, digest)
    cached = _identities.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    value = {"name": name or qualified_name(type(module)), "version": version or digest[:12],
             "fingerprint": digest, "framework": "torch", "class": type(module).__qualname__}
    _identities[module] = (key, value)
    return value


SNAPSHOT_AS_LIST = 4096
"""Tensors up to this many elements are copied as Python lists (cheaper than a tensor copy)."""


def snapshot(value: Any) -> Any:
    """A copy of tensors as the model saw them (the caller may modify them in place later)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= SNAPSHOT_AS_LIST else value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [snapshot(item) for item in value]
    return value


class TorchInstrumentor(BaseInstrumentor):
    """`opentelemetry_instrumentor` entry point `torch`. `instrument()` takes
    `tracer_provider=` and `audit_runtime=` (see `otel_ai_audit.instrumentation.model_call`)."""

    _tracer: trace.Tracer | None = None
    _runtime: RuntimeSource | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("torch >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        import torch

        self._tracer = trace.get_tracer(__name__, __version__,
                                        tracer_provider=kwargs.get("tracer_provider"))
        self._runtime = runtime_source(kwargs)
        wrapt.wrap_function_wrapper(torch.nn.Module, "__call__", self._wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        import torch

        unwrap(torch.nn.Module, "__call__")

    def _wrapper(self, wrapped: Any, instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        if _in_module_call.get():  # a submodule of the audited call: the cheapest check first
            return wrapped(*args, **kwargs)
        runtime = None if self._runtime is None else self._runtime()
        if runtime is None or self._tracer is None:
            return wrapped(*args, **kwargs)
        import torch

        if instance.training and torch.is_grad_enabled():
            return wrapped(*args, **kwargs)
        token = _in_module_call.set(True)
        try:
            return audited_inference(
                self._tracer, runtime, framework="torch", operation="forward", model=instance,
                identify=identity, features=args[0] if args else next(iter(kwargs.values()), None),
                call=lambda: wrapped(*args, **kwargs), snapshot=snapshot)
        finally:
            _in_module_call.reset(token)
