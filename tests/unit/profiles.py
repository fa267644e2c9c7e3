"""Hypothesis settings for the property tests, scaled from the loaded profile.

tests/conftest.py registers the profiles: "dev" (the default, 50 examples) for `make
test-unit`, "ci" (400) for `make test`. A test that needs more or fewer examples than the
profile's count asks for a share of it, so both loops keep their proportions.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings


def property_settings(share: float = 1.0, **overrides: Any) -> settings:
    """The loaded profile with `share` times its examples (at least one), no deadline (the
    machine may be busy) and the too-slow health check off (strategies build large values)."""
    overrides.setdefault("suppress_health_check", [HealthCheck.too_slow])
    return settings(max_examples=max(1, round(share * settings.default.max_examples)),
                    deadline=None, **overrides)
