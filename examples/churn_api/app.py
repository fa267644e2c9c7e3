"""An unmodified churn-scoring API: no otel-ai-audit import anywhere.

A logistic regression trained at start-up on synthetic customers (seeded, so every run serves
the same model); `POST /predict` scores one customer, `GET /health` is a probe.

    opentelemetry-instrument uvicorn app:app --app-dir examples/churn_api
"""

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(11)
tenure = rng.uniform(0, 72, 600)
charges = rng.uniform(20, 120, 600)
calls = rng.poisson(2, 600)
churned = (0.04 * charges + 0.5 * calls - 0.08 * tenure + rng.normal(0, 1, 600)) > 1.5
model = LogisticRegression(max_iter=1000).fit(np.column_stack([tenure, charges, calls]), churned)

app = FastAPI(title="churn scoring")


class Customer(BaseModel):
    tenure_months: float = Field(ge=0)
    monthly_charges: float = Field(gt=0)
    support_calls: int = Field(ge=0)


@app.post("/predict")
def predict(customer: Customer) -> dict[str, float | bool]:
    features = [[customer.tenure_months, customer.monthly_charges, customer.support_calls]]
    probability = float(model.predict_proba(features)[0, 1])
    return {"churn": probability >= 0.5, "probability": round(probability, 6)}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
