"""Model fingerprints by framework: how the runtime fingerprints a model without importing the
instrumentations.

Each framework instrumentation registers its fingerprint function when it is imported (as
`opentelemetry-instrument` and `XInstrumentor().instrument()` do), so `register_reference` ties a
reference profile to the same fingerprint that model's decisions carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fingerprint = Callable[[Any], str]
Applies = Callable[[Any], bool]

_registered: dict[str, tuple[Applies, Fingerprint]] = {}
"""Framework name -> (does a model belong to it, its fingerprint), in registration order."""


def register(framework: str, applies: Applies, fingerprint: Fingerprint) -> None:
    """Fingerprint the models for which `applies(model)` is true with `fingerprint`."""
    _registered[framework] = (applies, fingerprint)


def fingerprint_of(model: Any) -> str:
    """The fingerprint the instrumentation of `model`'s framework gives its decisions."""
    for applies, fingerprint in _registered.values():
        if applies(model):
            return fingerprint(model)
    frameworks = ", ".join(_registered) or "none"
    raise ValueError(f"cannot fingerprint a {type(model).__name__} (instrumented frameworks: "
                     f"{frameworks}): instrument its framework or pass fingerprint=")
