"""Benchmarks behind `make bench` (`python -m benchmarks`).

Each module listed in `benchmarks.__main__.MODULES` exposes `run() -> list[Result]`; the
runner prints one table and says loudly which targets were missed, but exits 0: the numbers
are a measurement to report, not a gate (shared CI machines are too noisy to fail builds on).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One measured number, with the target it is held to (if any)."""

    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""

    @property
    def passed(self) -> bool:
        """Met the target (a number without a target cannot miss)."""
        if self.target is None:
            return True
        return self.value >= self.target if self.higher_is_better else self.value <= self.target
