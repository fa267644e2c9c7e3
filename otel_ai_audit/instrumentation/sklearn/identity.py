"""Model identity for scikit-learn estimators: name, version and fitted-state fingerprint."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

from otel_ai_audit.instrumentation.naming import qualified_name
from otel_ai_audit.record.canonical import canonical_json, to_json_data

_fingerprints: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def estimator_name(estimator: Any, *, qualified: bool = False) -> str:
    """`Pipeline(ColumnTransformer,LogisticRegression)`-style name from the structure; with
    `qualified`, the class with its module (`sklearn.pipeline.Pipeline(...)`): the default
    model name, which says what the model is even to someone who never saw the code."""
    head = qualified_name(type(estimator)) if qualified else type(estimator).__name__
    steps = getattr(estimator, "steps", None)
    if steps:
        return f"{head}({','.join(type(s).__name__ for _, s in steps)})"
    return head


def fingerprint(estimator: Any) -> str:
    """SHA-256 of the estimator's fitted state, computed once per fit and cached."""
    try:
        cached = _fingerprints.get(estimator)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    _feed(digest, estimator, depth=0)
    value = digest.hexdigest()
    try:
        _fingerprints[estimator] = value
    except TypeError:
        pass
    return value


def forget_fingerprint(estimator: Any) -> None:
    """Called when an estimator is (re)fitted."""
    try:
        _fingerprints.pop(estimator, None)
        _identities.pop(estimator, None)
    except TypeError:
        pass


def _feed(digest: Any, value: Any, depth: int) -> None:
    if depth > 20:
        digest.update(b"<deep>")
        return
    if hasattr(value, "get_params") and hasattr(value, "__dict__"):
        digest.update(type(value).__qualname__.encode())
        for name in sorted(vars(value)):
            if name.startswith("_"):
                continue
            digest.update(name.encode())
            _feed(digest, vars(value)[name], depth + 1)
        return
    if isinstance(value, type):
        # A class as a parameter (OneHotEncoder(dtype=np.float64)): its name is its identity.
        digest.update(f"{value.__module__}.{value.__qualname__}".encode())
        return
    if hasattr(value, "tobytes") and hasattr(value, "dtype"):
        digest.update(str(value.dtype).encode() + str(getattr(value, "shape", "")).encode())
        if getattr(value.dtype, "hasobject", False):
            # Object arrays (feature names, categories) hold pointers: hash their values.
            digest.update(canonical_json(to_json_data(value)))
        else:
            digest.update(value.tobytes())
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _feed(digest, item, depth + 1)
        return
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key], depth + 1)
        return
    digest.update(canonical_json(to_json_data(value)))


_identities: weakref.WeakKeyDictionary[Any, tuple[str | None, str | None, dict[str, Any]]] = (
    weakref.WeakKeyDictionary())


def identity(estimator: Any, name: str | None, version: str | None) -> dict[str, Any]:
    """Name and version as configured (API, environment, registry), else derived from the
    model: its qualified class and its fingerprint.

    Cached per estimator (the hot path asks for it on every call) until it is refitted.
    """
    try:
        cached = _identities.get(estimator)
    except TypeError:
        cached = None
    if cached is not None and cached[0] == name and cached[1] == version:
        return cached[2]
    digest = fingerprint(estimator)
    value = {"name": name or estimator_name(estimator, qualified=True),
             "version": version or digest[:12],
             "fingerprint": digest, "framework": "sklearn", "class": estimator_name(estimator)}
    try:
        _identities[estimator] = (name, version, value)
    except TypeError:
        pass
    return value
