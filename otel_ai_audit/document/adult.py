"""The UCI Adult scenario of `otel-ai-audit document adult`: train an income classifier with
the scikit-learn instrumentation on (so its `training` record is captured for real), evaluate it
on the held-out split, and write its model card, itself recorded on the audit trail.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from otel_ai_audit import runtime
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, adult_pipeline, load_split
from otel_ai_audit.document.card import ModelCard, Narrative, build_model_card
from otel_ai_audit.document.render import write_model_card
from otel_ai_audit.document.trail import find_training_record, record_model_card
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

MODEL_NAME = "adult-income"
FEATURES = NUMERIC + CATEGORICAL
SENSITIVE = ["sex", "race"]
ARTIFACT = "model.pkl"

NARRATIVE = Narrative(
    overview="Predicts whether a person's yearly income exceeds USD 50,000 from 14 attributes of "
             "the 1994 US Census (UCI Adult): a logistic regression on standardised numeric and "
             "one-hot categorical attributes. It is the reference model of otel-ai-audit's "
             "documentation scenario.",
    owner="otel-ai-audit maintainers (example model)",
    intended_uses=(
        "Demonstrating and reviewing model documentation, audit trails and fairness analysis "
        "on a public benchmark.",
        "Research and teaching on classification and group fairness.",
    ),
    intended_users=("ML engineers, model risk reviewers and auditors evaluating the tooling.",),
    out_of_scope_uses=(
        "Any decision about a real person: credit, employment, housing, insurance, pay or "
        "eligibility for services. The data is from 1994 and the model was not validated for "
        "such a use (under the EU AI Act, Annex III, these are high-risk uses).",
        "Inferring anyone's income, or any use outside the United States population of 1994.",
    ),
    factors=(
        "Sex and race are recorded in the data and are the evaluation factors below. Age, "
        "marital status, relationship and native country also correlate with income and could "
        "carry group effects; they are not analysed here.",
    ),
    ethical_considerations=(
        "The label reflects 1994 US incomes, including the pay gaps between sexes and races of "
        "that time: a model fitted to it learns those gaps and reproduces them in its "
        "predictions.",
        "Sex and race are inputs of the model. Removing them would not remove the disparities, "
        "which flow through correlated attributes (relationship, occupation, hours worked).",
        "The census records sex as binary and race in five coarse categories; small categories "
        "(Amer-Indian-Eskimo, Other) have few rows and wide uncertainty.",
    ),
    caveats=(
        "Predictions use the model's default threshold of 0.5 on its probability; no threshold "
        "was tuned or calibrated for any application.",
        "Rows with a missing label are dropped when loading; missing attribute values (`?` in "
        "the files) are imputed with the most frequent value.",
        "fnlwgt is a census sampling weight used here as a plain feature, as is common for this "
        "benchmark; it is not an attribute of the person.",
        "Re-evaluate and re-document after any change of data, features or hyper-parameters: "
        "the card applies to the fitted-state fingerprint above only.",
    ),
)


@dataclass(frozen=True)
class DocumentedModel:
    model: Any
    card: ModelCard
    files: dict[str, Path]
    """The card's files and the model artifact, by file name."""
    record_id: str
    """Id of the `model_card` audit record."""
    signing_key: str
    """The signing key setting the records were signed with (a path, or `ephemeral`)."""


def document_adult(data_dir: str | Path | None, out: Path, store: Path,
                   signing_key: str | Path | None = None) -> DocumentedModel:
    """Train, evaluate and document the Adult classifier; the audit trail goes to `store`
    (signed with `signing_key`, else the configured one: without either, `ConfigurationError`)."""
    train, test = load_split("train", data_dir), load_split("test", data_dir)
    out.mkdir(parents=True, exist_ok=True)
    provider = TracerProvider()
    configured = runtime.configure(provider, store=str(store),
                                   signing_key=None if signing_key is None else str(signing_key))
    if Path(configured.settings.store).resolve() != store.resolve():
        raise RuntimeError(f"this process already audits to {configured.settings.store}; "
                           f"cannot document into {store}")
    try:
        model = adult_pipeline()
        instrumentor = SklearnInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            model.fit(train.frame[FEATURES], train.frame[TARGET])
        finally:  # evaluation predictions are not decisions: keep them off the trail
            instrumentor.uninstrument()
        artifact = out / ARTIFACT
        artifact.write_bytes(pickle.dumps(model))
        card = build_model_card(
            model, find_training_record(store, model), test.frame, TARGET, SENSITIVE,
            name=MODEL_NAME, eval_source=test.source, train_frame=train.frame,
            train_source=train.source, artifact=artifact, narrative=NARRATIVE)
        files = write_model_card(card, out)
        record_id = record_model_card(card, files)
    finally:
        runtime.shutdown()
        provider.shutdown()
    return DocumentedModel(model, card, {**files, ARTIFACT: artifact}, record_id,
                           str(configured.settings.signing_key))
