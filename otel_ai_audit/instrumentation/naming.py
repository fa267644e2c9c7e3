"""The default name of a model nobody named: its class with the module it is imported from."""

from __future__ import annotations


def qualified_name(cls: type) -> str:
    """`module.Class` by the public path users import it from: private modules are left out,
    so `sklearn.ensemble._gb.GradientBoostingClassifier` is named
    `sklearn.ensemble.GradientBoostingClassifier` (a class defined in a script is
    `__main__.Class`)."""
    public = []
    for part in cls.__module__.split("."):
        if part.startswith("_") and not part.startswith("__"):
            break
        public.append(part)
    return ".".join([*public, cls.__qualname__])
