"""Run the benchmark modules and print one table: `python -m benchmarks [MODULE ...]`."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from benchmarks import Result

MODULES = ["benchmarks.bench_core", "benchmarks.bench_verify", "benchmarks.bench_instrumentation",
           "benchmarks.bench_sampling", "benchmarks.bench_elasticsearch", "benchmarks.bench_drift",
           "benchmarks.bench_delivery", "benchmarks.bench_evidence", "benchmarks.bench_anchor",
           "benchmarks.bench_durability", "benchmarks.bench_collector", "benchmarks.bench_kafka"]
"""Modules with a `run() -> list[Result]`; later issues append theirs."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"modules to run (default: all of {', '.join(MODULES)})")
    names = parser.parse_args(argv).modules or MODULES
    print(f"Python {platform.python_version()} on {platform.machine()} "
          f"({platform.processor() or platform.platform()})", flush=True)
    results: list[Result] = []
    for name in names:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module_results = importlib.import_module(name).run()
        print(f"  {name}: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
        results.extend(module_results)
    print(format_table(results))
    missed = [result for result in results if not result.passed]
    for result in missed:
        comparison = ">=" if result.higher_is_better else "<="
        print(f"!!! TARGET MISSED: {result.name}: {_number(result.value)} {result.unit} "
              f"(target {comparison} {_number(result.target or 0)})")
    if results and not missed:
        print("all targets met")
    return 0  # a miss is reported, not failed: see the package docstring


def format_table(results: list[Result]) -> str:
    header = ("benchmark", "value", "unit", "target", "status")
    rows = [header]
    for result in results:
        if result.target is None:
            target, status = "", ""
        else:
            target = f"{'>=' if result.higher_is_better else '<='} {_number(result.target)}"
            status = "ok" if result.passed else "MISSED"
        rows.append((result.name, _number(result.value), result.unit, target, status))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"  {result.name}: {result.note}" for result in results if result.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
