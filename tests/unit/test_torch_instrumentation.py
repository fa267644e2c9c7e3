"""PyTorch instrumentation with real CPU models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from otel_ai_audit.instrumentation.torch import TorchInstrumentor
from otel_ai_audit.record.canonical import to_json_data
from tests.instrumentation_fixtures import AuditedProcess, instrumented


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[AuditedProcess]:
    with instrumented(tmp_path, TorchInstrumentor) as process:
        yield process


class Triage(torch.nn.Module):
    """A small network with nested submodules, as real models have."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.encoder(features)), dim=-1)


def test_outermost_module_only_one_decision_per_row(audited: AuditedProcess) -> None:
    torch.manual_seed(0)
    model = Triage().eval()
    batch = torch.randn(4, 5)
    with torch.no_grad():
        result = model(batch)
        single = model(batch[:1])
    decisions = audited.events("inference")
    assert [d["batch"]["size"] for d in decisions] == [4, 4, 4, 4, 1]
    assert decisions[0]["model"]["framework"] == "torch"
    assert decisions[0]["model"]["class"] == "Triage"
    assert decisions[2]["output"]["value"] == pytest.approx(result[2].tolist())
    assert decisions[4]["output"]["value"] == pytest.approx(single[0].tolist())
    assert audited.verify().ok


def test_results_are_identical_with_and_without_instrumentation(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = Triage().eval()
    batch = torch.randn(16, 5)
    with torch.no_grad():
        expected = model(batch)
    with instrumented(tmp_path, TorchInstrumentor) as process:
        with torch.no_grad():
            audited_result = model(batch)
        assert torch.equal(expected, audited_result)
        assert len(process.events("inference")) == 16


def test_training_passes_are_not_decisions(audited: AuditedProcess) -> None:
    model = Triage().train()
    loss = model(torch.randn(8, 5)).sum()
    loss.backward()
    # The SGD step by hand: the first torch.optim optimiser loads TorchDynamo (seconds).
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= 0.1 * parameter.grad
    with torch.inference_mode():
        model(torch.randn(2, 5))
    decisions = audited.events("inference")
    assert len(decisions) == 2, "only the inference_mode call is a decision"


def test_weights_changing_changes_the_fingerprint(audited: AuditedProcess) -> None:
    model = Triage().eval()
    with torch.no_grad():
        model(torch.randn(1, 5))
        model.head.bias.add_(1.0)
        model(torch.randn(1, 5))
    first, second = audited.events("inference")
    assert first["model"]["fingerprint"] != second["model"]["fingerprint"]


def test_inputs_are_recorded_as_they_were_when_the_model_saw_them(
        audited: AuditedProcess) -> None:
    model = Triage().eval()
    features = torch.randn(1, 5)
    original = features.clone()
    with torch.no_grad():
        model(features)
    features.mul_(0)
    (decision,) = audited.events("inference")
    expected = audited.runtime.capture.keyed_hash(to_json_data(original.numpy()[0]))
    assert decision["input"]["hmac_sha256"] == expected
