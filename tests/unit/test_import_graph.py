"""The import graph of otel_ai_audit: no cycles, and a core that is cheap and side-effect free.

An offline verifier imports `otel_ai_audit.verify`, `.integrity`, `.store` or `.record`; none of
them may load the OpenTelemetry SDK, numpy, a sink or its client, the runtime or the pipeline
(whose `forks` registers process-wide fork hooks). Each import is checked in a fresh
interpreter, since this one has everything loaded already.

Run as a script to print the module graph (each module and what it imports) and any cycle:

    python -m tests.unit.test_import_graph
"""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys

import grimp
import pytest

import otel_ai_audit

PACKAGE = "otel_ai_audit"
HEAVY = ("opentelemetry.sdk", "numpy", "elasticsearch", "otel_ai_audit.sinks",
         "otel_ai_audit.pipeline", "otel_ai_audit.runtime")
"""Modules (and their submodules) the light core must not load."""
LIGHT_PACKAGES = ("otel_ai_audit.record", "otel_ai_audit.integrity", "otel_ai_audit.store")
"""Packages every module of which is light."""
NEEDS_NUMPY = {"otel_ai_audit.verify.verifier": "it analyses whole chains as numpy arrays"}


def module_graph() -> grimp.ImportGraph:
    """Imports between otel_ai_audit's modules, at run time and inside functions alike; imports
    under `if TYPE_CHECKING:` are left out, as they never run."""
    return grimp.build_graph(PACKAGE, cache_dir=None, exclude_type_checking_imports=True)


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import that is part of one."""
    found = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycle = (importer, *back)
                start = cycle.index(min(cycle[:-1]))
                found.add(cycle[start:-1] + cycle[:start + 1])
    return sorted(found)


def light_modules() -> list[str]:
    modules = [PACKAGE, "otel_ai_audit.verify", "otel_ai_audit.verify.findings",
               *NEEDS_NUMPY]
    for name in LIGHT_PACKAGES:
        package = __import__(name, fromlist=["_"])
        modules.append(name)
        modules += [info.name for info in pkgutil.iter_modules(package.__path__, f"{name}.")]
    return modules


def loaded_after_import(module: str) -> list[str]:
    """The modules a fresh interpreter holds after `import <module>`."""
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, json, {module}; print(json.dumps(list(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_no_import_cycles_among_otel_ai_audit_modules() -> None:
    graph = module_graph()
    assert len(graph.modules) > 50, "the graph should hold the whole package"
    assert cycles(graph) == []


def test_the_integrity_layer_does_not_depend_on_the_store() -> None:
    """The store persists what integrity seals and proves, never the other way round."""
    graph = module_graph()
    assert not graph.chain_exists(importer="otel_ai_audit.integrity",
                                  imported="otel_ai_audit.store", as_packages=True)


@pytest.mark.parametrize("module", light_modules())
def test_light_core_loads_no_sdk_numpy_sink_or_fork_hook(module: str) -> None:
    forbidden = tuple(name for name in HEAVY if not (name == "numpy" and module in NEEDS_NUMPY))
    loaded = loaded_after_import(module)
    heavy = [bad for bad in forbidden
             if any(name == bad or name.startswith(f"{bad}.") for name in loaded)]
    assert module in loaded
    assert heavy == [], f"import {module} loads {heavy}"


def test_light_core_imports_faster_than_the_runtime_it_no_longer_loads() -> None:
    """`-X importtime` in one interpreter: the core first, then the runtime on top of it."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import otel_ai_audit.verify; import otel_ai_audit.runtime"],
        capture_output=True, text=True, check=True)
    cumulative = {match["module"]: int(match["us"]) for match in re.finditer(
        r"^import time:\s+\d+ \|\s+(?P<us>\d+) \| (?P<module>\S+)$", result.stderr, re.M)}
    assert cumulative["otel_ai_audit.verify"] < cumulative["otel_ai_audit.runtime"]


def test_public_api_is_loaded_on_first_use() -> None:
    script = """
import sys, otel_ai_audit
before = "otel_ai_audit.runtime" in sys.modules
public = {name: getattr(otel_ai_audit, name) for name in otel_ai_audit.__all__}
from otel_ai_audit import runtime, decisions
print(before, all(name in dir(otel_ai_audit) for name in public),
      public["configure"] is runtime.configure,
      public["last_decision_ids"] is decisions.last_decision_ids)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        otel_ai_audit.not_public  # noqa: B018


if __name__ == "__main__":
    graph = module_graph()
    for name in sorted(graph.modules):
        imports = sorted(graph.find_modules_directly_imported_by(name))
        print(f"{name} -> {', '.join(imports) or '(nothing)'}")
    for cycle in cycles(graph):
        print("CYCLE:", " -> ".join(cycle))
