"""Document your own scikit-learn model with otel-ai-audit, through the public API only.

A gradient-boosted income classifier on UCI Adult that does not take sex or race as inputs,
yet is evaluated by them: its `fit` is recorded on the audit trail by the scikit-learn
instrumentation, and its model card (with lineage, metrics with confidence intervals and
fairness per slice) is written and recorded on the same trail.

    otel-ai-audit keygen --out adult-signing
    python examples/adult_income/train_and_document.py --signing-key adult-signing.key.pem

The data is the copy of UCI Adult shipped with otel-ai-audit; `--data DIR` names another.
Without `--signing-key`, the key is `$OTEL_AI_AUDIT_SIGNING_KEY`: the trail is always signed.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

import otel_ai_audit
from otel_ai_audit.datasets.adult import CATEGORICAL, NUMERIC, TARGET, load_split
from otel_ai_audit.document import (
    Narrative,
    build_model_card,
    find_training_record,
    record_model_card,
    write_model_card,
)
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor

SENSITIVE = ["sex", "race"]
CATEGORIES = [column for column in CATEGORICAL if column not in SENSITIVE]
FEATURES = CATEGORIES + NUMERIC


def make_model() -> Pipeline:
    return Pipeline([
        ("encode", ColumnTransformer(
            [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                            encoded_missing_value=-1), CATEGORIES)],
            remainder="passthrough")),
        ("classify", HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=100, max_leaf_nodes=31, early_stopping=False,
            categorical_features=list(range(len(CATEGORIES))), random_state=0)),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with adult.data and adult.test (default: the "
                        "copy shipped with otel-ai-audit)")
    parser.add_argument("--out", default="adult-gbt-card", type=Path)
    parser.add_argument("--signing-key", help="private key from 'otel-ai-audit keygen' that "
                        "signs the trail (default: $OTEL_AI_AUDIT_SIGNING_KEY)")
    args = parser.parse_args()
    store = args.out / "audit.db"
    args.out.mkdir(parents=True, exist_ok=True)
    train, test = load_split("train", args.data), load_split("test", args.data)

    # Instrumented by hand, for the fit only: the evaluation's predictions are not decisions.
    otel_ai_audit.configure(store=str(store), signing_key=args.signing_key, instrument=False)
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument()
    model = make_model().fit(train.frame[FEATURES], train.frame[TARGET])  # recorded
    instrumentor.uninstrument()  # the evaluation's predictions are not decisions

    artifact = args.out / "model.pkl"
    artifact.write_bytes(pickle.dumps(model))
    card = build_model_card(
        model, find_training_record(store, model), test.frame, TARGET, SENSITIVE,
        name="adult-income-gbt", version="1.0.0", eval_source=test.source,
        train_frame=train.frame, train_source=train.source, artifact=artifact,
        narrative=Narrative(
            overview="Gradient-boosted trees predicting income above USD 50,000 from UCI "
                     "Adult, without sex or race among its inputs.",
            intended_uses=("An example of documenting a model with otel-ai-audit.",),
            out_of_scope_uses=("Any decision about a real person.",)))
    files = write_model_card(card, args.out)
    record_id = record_model_card(card, files)
    otel_ai_audit.shutdown()  # closes the chain with a signed checkpoint

    for path in files.values():
        print(f"wrote {path}")
    print(f"recorded as model_card {record_id} in {store}")


if __name__ == "__main__":
    main()
