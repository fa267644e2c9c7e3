"""Model cards: `otel-ai-audit document adult` on the real UCI Adult data, and every number of
the card recomputed independently (scikit-learn, pandas, the published SHA256SUMS)."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageChops
from sklearn import metrics

from otel_ai_audit.cli import main
from otel_ai_audit.datasets.adult import TARGET, adult_pipeline, load_split
from otel_ai_audit.document import build_model_card, find_training_record
from otel_ai_audit.document.adult import FEATURES, SENSITIVE
from otel_ai_audit.integrity.keys import load_trusted_keys
from otel_ai_audit.monitoring.fairness import MISSING, attribute_fairness
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.verifier import Verifier
from tests.audit_fixtures import key_beside
from tests.conftest import SHARED_DATA, _service_unavailable
from tests.services.base import REPO_ROOT, ServiceStartError
from tests.services.chromium import chromium_binary, render

EXAMPLE = Path(__file__).parents[2] / "examples" / "adult_income" / "train_and_document.py"
CHARTS = ("model-card-roc.png", "model-card-calibration.png", "model-card-confusion.png")
IMAGES = REPO_ROOT / "docs" / "images"
PAGE_HEIGHT = 12000
MITCHELL_SECTIONS = ["Model Details", "Intended Use", "Factors", "Metrics", "Evaluation Data",
                     "Training Data", "Quantitative Analyses", "Ethical Considerations",
                     "Caveats and Recommendations"]


class Documented(NamedTuple):
    result: Result
    out: Path
    store: Path
    card: dict[str, Any]


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> Documented:
    """One run of the command, as a user types it."""
    out = tmp_path_factory.mktemp("model-card")
    store = out / "trail" / "audit.db"
    store.parent.mkdir()
    result = CliRunner().invoke(main, ["document", "adult", "--out", str(out), "--store",
                                       str(store), "--signing-key", str(key_beside(store))])
    card = json.loads((out / "model-card.json").read_text()) if result.exit_code == 0 else {}
    return Documented(result, out, store, card)


@pytest.fixture(scope="module")
def evaluation(documented: Documented) -> pd.DataFrame:
    """adult.test with the documented model's predictions and scores, as the test computes
    them from the model artifact the command wrote."""
    model = pickle.loads((documented.out / "model.pkl").read_bytes())
    frame = load_split("test").frame
    return frame.assign(predicted=model.predict(frame[FEATURES]),
                        score=model.predict_proba(frame[FEATURES])[:, 1])


def test_the_command_writes_the_card_and_exits_0(documented: Documented) -> None:
    assert documented.result.exit_code == 0, documented.result.output
    for name in ("model-card.md", "model-card.html", "model-card.json", "model.pkl"):
        assert (documented.out / name).is_file(), name
    assert "recorded as model_card" in documented.result.output
    public_key = f"{documented.store}.pub.pem"
    assert f"check it: otel-ai-audit verify {documented.store} --public-key {public_key}" in \
        documented.result.output


def test_without_a_signing_key_it_refuses_in_one_line_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_AI_AUDIT_SIGNING_KEY", raising=False)
    result = CliRunner().invoke(main, ["document", "adult", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "OTEL_AI_AUDIT_SIGNING_KEY is not set" in line and "otel-ai-audit keygen" in line
    assert not list((tmp_path / "out").glob("*.pem")) and not list((tmp_path / "out").glob("*.db"))


def test_the_charts_numbers_are_scikit_learns_own(documented: Documented,
                                                  evaluation: pd.DataFrame) -> None:
    from sklearn.calibration import calibration_curve

    diagnostics = documented.card["diagnostics"]
    truth, score = evaluation[TARGET], evaluation["score"]
    assert diagnostics["labels"] == [0, 1]
    assert diagnostics["confusion"] == metrics.confusion_matrix(
        truth, evaluation["predicted"], labels=[0, 1]).tolist()
    observed, predicted = calibration_curve(truth, score, n_bins=10, strategy="uniform")
    assert diagnostics["calibration"]["observed"] == pytest.approx(observed.tolist())
    assert diagnostics["calibration"]["predicted"] == pytest.approx(predicted.tolist())
    assert sum(diagnostics["calibration"]["count"]) == len(evaluation)
    fpr, tpr, _ = metrics.roc_curve(truth, score)
    points = set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    kept = list(zip(diagnostics["roc"]["fpr"], diagnostics["roc"]["tpr"], strict=True))
    assert set(kept) <= points and kept[0] == (0.0, 0.0) and kept[-1] == (1.0, 1.0)
    assert 50 < len(kept) < len(points) / 4, "thinned, yet a curve"
    assert np.trapezoid([t for _, t in kept], [f for f, _ in kept]) == pytest.approx(
        documented.card["metrics"]["roc_auc"]["value"], abs=2e-3)
    for chart in CHARTS:
        with Image.open(documented.out / chart) as image:
            assert image.format == "PNG" and image.width >= 600
            assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50, chart


def test_the_hyper_parameters_are_those_set(documented: Documented) -> None:
    """The ones that differ from their estimator's defaults, by scikit-learn's own account (the
    parameters its repr shows), as the training record holds them; not the other 40-odd."""
    from sklearn.utils._pprint import _changed_params

    model = pickle.loads((documented.out / "model.pkl").read_bytes())
    nested = {"": model} | {f"{name}__": value for name, value in
                            model.get_params(deep=True).items() if hasattr(value, "get_params")}
    expected = {prefix + name for prefix, estimator in nested.items()
                for name, value in _changed_params(estimator).items()
                if not hasattr(value, "get_params") and name not in ("steps", "transformers")}
    training = documented.card["training"]
    assert set(training["hyperparameters"]) == expected == {
        "classify__max_iter", "prepare__categorical__simpleimputer__strategy",
        "prepare__categorical__onehotencoder__handle_unknown"}
    with AuditStore(documented.store, create=False, readonly=True) as store:
        recorded = next(json.loads(data)["event"] for chain in store.chain_ids()
                        for _, data in store.records(chain)
                        if json.loads(data)["event"]["type"] == "training")
    every = recorded["training"]["hyperparameters"]
    assert all(training["hyperparameters"][name] == every[name] for name in expected)
    structural = {name for name, value in model.get_params(deep=True).items()
                  if hasattr(value, "get_params") or name.endswith(("steps", "transformers"))}
    assert training["parameters_at_default"] == len(every) - len(expected) - len(structural)
    html = (documented.out / "model-card.html").read_text()
    assert "deprecated" not in html and "unserializable" not in html


def test_the_html_card_in_chromium_for_the_docs(documented: Documented, tmp_path: Path) -> None:
    """The card as a reader sees it, in a real browser: drawn, the charts embedded (nothing
    fetched), nothing wider than the window; the first screens go to docs/images."""
    try:
        chromium_binary()
    except ServiceStartError as error:
        _service_unavailable(error)
    card = documented.out / "model-card.html"
    screenshot = tmp_path / "card.png"
    shot = render(card, f"--screenshot={screenshot}", f"--window-size=1280,{PAGE_HEIGHT}",
                  "--enable-logging=stderr", "--v=0")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert [line for line in shot.stderr.splitlines() if "CONSOLE" in line
            or "Failed to load resource" in line] == []
    with Image.open(screenshot) as image:
        page = image.convert("RGB")
    content = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    assert content is not None and content[3] < PAGE_HEIGHT - 40, "the card fits the window"
    assert content[2] < page.width - 40, "nothing runs off the right edge"
    IMAGES.mkdir(parents=True, exist_ok=True)
    card_image = page.crop((0, 0, page.width, content[3] + 24))
    card_image.quantize(256).save(IMAGES / "model-card.png", optimize=True)  # 256 colours: 40%
    dom = render(card, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('src="data:image/png;base64,') == len(CHARTS)


def test_wrong_data_folder_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["document", "adult", "--data", str(tmp_path),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{tmp_path}: no adult.data there" in result.stderr
    assert not (tmp_path / "out" / "audit.db").exists()  # nothing recorded for a failed run


def test_metrics_equal_scikit_learns_own(documented: Documented,
                                         evaluation: pd.DataFrame) -> None:
    truth, predicted = evaluation[TARGET], evaluation["predicted"]
    expected = {"accuracy": metrics.accuracy_score(truth, predicted),
                "precision": metrics.precision_score(truth, predicted),
                "recall": metrics.recall_score(truth, predicted),
                "f1": metrics.f1_score(truth, predicted),
                "roc_auc": metrics.roc_auc_score(truth, evaluation["score"])}
    card_metrics = documented.card["metrics"]
    assert set(card_metrics) == set(expected)
    for name, value in expected.items():
        estimate = card_metrics[name]
        assert estimate["value"] == pytest.approx(value, abs=1e-12), name
        assert estimate["low"] < estimate["value"] < estimate["high"], name
        assert estimate["high"] - estimate["low"] < 0.05, name  # 16,281 rows: a tight interval


def test_accuracy_interval_is_the_wilson_score_interval(documented: Documented,
                                                        evaluation: pd.DataFrame) -> None:
    n = len(evaluation)
    p = float((evaluation[TARGET] == evaluation["predicted"]).mean())
    z = 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    accuracy = documented.card["metrics"]["accuracy"]
    assert accuracy["method"] == "wilson"
    assert (accuracy["low"], accuracy["high"]) == pytest.approx((centre - half, centre + half))


def test_fairness_equals_a_direct_groupby(documented: Documented,
                                          evaluation: pd.DataFrame) -> None:
    rows = evaluation.assign(
        correct=evaluation[TARGET] == evaluation["predicted"],
        tp=(evaluation[TARGET] == 1) & (evaluation["predicted"] == 1),
        fp=(evaluation[TARGET] == 0) & (evaluation["predicted"] == 1))
    by_attribute = {item["attribute"]: item for item in documented.card["fairness"]}
    assert list(by_attribute) == SENSITIVE
    for attribute in SENSITIVE:
        groups = rows.groupby(attribute)
        expected = pd.DataFrame({
            "count": groups.size(),
            "selection_rate": groups["predicted"].mean(),
            "tpr": groups["tp"].sum() / groups[TARGET].sum(),
            "fpr": groups["fp"].sum() / (groups.size() - groups[TARGET].sum()),
            "accuracy": groups["correct"].mean()})
        card = by_attribute[attribute]
        assert {s["value"] for s in card["slices"]} == set(expected.index)
        for piece in card["slices"]:
            row = expected.loc[piece["value"]]
            assert piece["count"] == row["count"]
            for rate in ("selection_rate", "tpr", "fpr", "accuracy"):
                assert piece[rate]["value"] == pytest.approx(row[rate], abs=1e-12), rate
                assert piece[rate]["low"] <= piece[rate]["value"] <= piece[rate]["high"]
        assert card["demographic_parity_difference"] == pytest.approx(
            expected["selection_rate"].max() - expected["selection_rate"].min(), abs=1e-12)
        assert card["demographic_parity_ratio"] == pytest.approx(
            expected["selection_rate"].min() / expected["selection_rate"].max(), abs=1e-12)
        assert card["equalized_odds_difference"] == pytest.approx(max(
            expected["tpr"].max() - expected["tpr"].min(),
            expected["fpr"].max() - expected["fpr"].min()), abs=1e-12)


def test_lineage_hashes_are_the_published_checksums(documented: Documented) -> None:
    """The lineage names the UCI originals' SHA-256 (read from the originals beside the
    project), though the card was made from the package's compressed copy."""
    published = {name: hashlib.sha256((Path(SHARED_DATA) / "uci-adult" / name).read_bytes())
                 .hexdigest() for name in ("adult.data", "adult.test")}
    card = documented.card
    assert card["evaluation"]["source"] == "adult.test"
    assert card["evaluation"]["sha256"] == published["adult.test"]
    assert card["training"]["data"]["sha256"] == published["adult.data"]
    assert card["training"]["data_matches_record"] is True
    assert card["evaluation"]["rows"] == 16281
    missing = {column["name"]: column["missing"] for column in card["training"]["data"]["columns"]}
    assert missing == load_split("train").frame.isna().sum().to_dict()
    steps = [step["path"] for step in card["structure"]]
    assert steps == ["prepare/numeric", "prepare/categorical/simpleimputer",
                     "prepare/categorical/onehotencoder", "classify"]
    assert card["training"]["hyperparameters"]["classify__max_iter"] == 1000
    artifact = hashlib.sha256((documented.out / "model.pkl").read_bytes()).hexdigest()
    assert card["details"]["artifact"]["sha256"] == artifact


def test_every_mitchell_section_is_in_the_markdown_and_the_html(documented: Documented) -> None:
    markdown = (documented.out / "model-card.md").read_text()
    html = (documented.out / "model-card.html").read_text()
    for section in MITCHELL_SECTIONS:
        assert f"\n## {section}\n" in markdown, section
        assert f"<h2>{section}</h2>" in html, section


def test_the_card_is_on_the_trail_and_the_trail_verifies(documented: Documented) -> None:
    with AuditStore(documented.store, create=False, readonly=True) as store:
        events = [json.loads(data)["event"] for chain in store.chain_ids()
                  for _, data in store.records(chain)]
        report = Verifier(load_trusted_keys([f"{documented.store}.pub.pem"])).verify(store)
    assert report.ok, report.findings
    [training] = [event for event in events if event["type"] == "training"]
    [card_record] = [event for event in events if event["type"] == "model_card"]
    assert card_record["model"]["fingerprint"] == training["model"]["fingerprint"] == (
        documented.card["details"]["fingerprint"])
    assert card_record["model_card"]["training_record"]["id"] == training["id"]
    assert card_record["model_card"]["files"] == {
        name: hashlib.sha256((documented.out / name).read_bytes()).hexdigest()
        for name in ("model-card.md", "model-card.html", "model-card.json", *CHARTS)}
    assert card_record["model_card"]["metrics"]["accuracy"]["value"] == (
        documented.card["metrics"]["accuracy"]["value"])
    assert not [event for event in events if event["type"] == "inference"]  # evaluation is not


def test_a_card_never_pairs_one_models_training_with_anothers_numbers(
        documented: Documented) -> None:
    train = load_split("train").frame.head(2000)
    other = adult_pipeline().fit(train[FEATURES], train[TARGET])
    record = find_training_record(documented.store)
    with pytest.raises(ValueError, match="is of the model with fingerprint"):
        build_model_card(other, record, load_split("test").frame, TARGET, SENSITIVE,
                         name="other")


def test_fairness_keeps_missing_values_and_skips_undefined_rates() -> None:
    groups = ["a", "a", "a", "b", "b", None]
    truth = np.array([1, 0, 1, 0, 0, 1])
    predicted = np.array([1, 1, 0, 0, 1, 1])
    report = attribute_fairness("group", groups, truth, predicted)
    slices = {piece.value: piece for piece in report.slices}
    assert list(slices) == ["a", "b", MISSING]  # largest slice first
    assert slices["b"].tpr is None  # no actual positives in b
    assert slices[MISSING].fpr is None
    assert slices["a"].tpr.value == 0.5 and slices["a"].fpr.value == 1.0
    # TPR over a (0.5) and (missing) (1.0); FPR over a (1.0) and b (0.5)
    assert report.equalized_odds_difference == 0.5
    assert report.demographic_parity_difference == pytest.approx(1 - 1 / 2)
    assert report.demographic_parity_ratio == pytest.approx(0.5)


@pytest.mark.slow
def test_the_example_documents_its_own_model_through_the_public_api(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--signing-key",
                          str(key_beside(tmp_path / "audit.db"))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    card = json.loads((tmp_path / "model-card.json").read_text())
    assert card["details"]["name"] == "adult-income-gbt"
    assert {item["attribute"] for item in card["fairness"]} == {"sex", "race"}
    with AuditStore(tmp_path / "audit.db", create=False, readonly=True) as store:
        assert Verifier(load_trusted_keys([tmp_path / "audit.db.pub.pem"])).verify(store).ok
