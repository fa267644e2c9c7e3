"""Synthetic emergency-department triage data: vitals, age band, sex, arrival mode, and the
urgency class a senior clinician would assign (1 = immediate ... 5 = non-urgent).

Seeded numpy only, so every run of the scenario sees the same patients. Urgency follows a
severity score with noise; `shift` moves the population (older, more breathless: a flu wave)
so the scenario can show input drift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERIC = ["heart_rate", "resp_rate", "systolic_bp", "spo2", "temperature"]
CATEGORICAL = ["age_band", "sex", "arrival_mode"]
FEATURES = NUMERIC + CATEGORICAL
TARGET = "urgency"
SUBGROUPS = ("age_band", "sex")
AGE_BANDS = ("0-17", "18-39", "40-64", "65+")
ARRIVAL_MODES = ("walk-in", "ambulance", "referral")
HIGH_URGENCY = (1, 2)
"""Urgency classes treated as high risk (EU AI Act Art. 14 review before acting)."""


def patients(rng: np.random.Generator, count: int, *, shift: float = 0.0) -> pd.DataFrame:
    """`count` patients with their true urgency; `shift` in [0, 1] is the flu-wave strength."""
    age_weights = np.array([0.15, 0.35, 0.30, 0.20]) + shift * np.array([-0.05, -0.10, 0, 0.15])
    age = rng.choice(len(AGE_BANDS), size=count, p=age_weights / age_weights.sum())
    arrival = rng.choice(len(ARRIVAL_MODES), size=count, p=[0.6, 0.25, 0.15])
    sick = rng.gamma(2.0, 1.0, size=count) + 0.5 * (age == 3) + 0.8 * (arrival == 1)
    frame = pd.DataFrame({
        "heart_rate": np.round(72 + 9 * sick + rng.normal(0, 8, count)),
        "resp_rate": np.round(14 + 2.2 * sick + 5 * shift + rng.normal(0, 2, count)),
        "systolic_bp": np.round(128 - 6 * sick + rng.normal(0, 12, count)),
        "spo2": np.clip(np.round(99 - 1.4 * sick - 2 * shift + rng.normal(0, 1, count)), 70, 100),
        "temperature": np.round(36.8 + 0.3 * sick + 0.6 * shift + rng.normal(0, 0.3, count), 1),
        "age_band": np.array(AGE_BANDS)[age],
        "sex": rng.choice(["F", "M"], size=count),
        "arrival_mode": np.array(ARRIVAL_MODES)[arrival],
    })
    severity = sick + 0.4 * (age == 3) + rng.normal(0, 0.5, count)
    frame[TARGET] = 5 - np.digitize(severity, [1.2, 2.2, 3.4, 4.8])
    return frame
