"""Model cards from the audit trail (Mitchell et al. 2019), themselves recorded on the trail.

    from otel_ai_audit.document import (build_model_card, find_training_record,
                                        record_model_card, write_model_card)

    training = find_training_record("audit.db", model)   # captured at fit
    card = build_model_card(model, training, test_frame, "income", ["sex", "race"],
                            name="adult-income")
    files = write_model_card(card, "model-card/")   # .md, .html, .json, chart PNGs
    record_model_card(card, files)                  # a `model_card` audit record

Needs the `ml` extra (scikit-learn, pandas, scipy, jinja2, matplotlib).
"""

from otel_ai_audit.document.card import ModelCard, Narrative, build_model_card
from otel_ai_audit.document.render import render_model_card, write_model_card
from otel_ai_audit.document.trail import (
    RecordRef,
    StoredRecord,
    TrainingRecordNotFound,
    find_training_record,
    record_model_card,
)

__all__ = [
    "ModelCard",
    "Narrative",
    "RecordRef",
    "StoredRecord",
    "TrainingRecordNotFound",
    "build_model_card",
    "find_training_record",
    "record_model_card",
    "render_model_card",
    "write_model_card",
]
