"""FastAPI inference requests on the audit trail: a real uvicorn server under
`opentelemetry-instrument`, and in-process apps for the edge cases."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sklearn.linear_model import LogisticRegression

from otel_ai_audit.instrumentation.fastapi import FastAPIAuditInstrumentor
from otel_ai_audit.instrumentation.sklearn import SklearnInstrumentor
from otel_ai_audit.store.sqlite import AuditStore
from tests.audit_fixtures import key_beside
from tests.instrumentation_fixtures import AuditedProcess, audited_process
from tests.integration.test_zero_code import NO_EXPORT
from tests.services.base import free_port, wait_until

CHURN_API = Path(__file__).parents[2] / "examples" / "churn_api"
BIN = Path(sys.executable).parent
TOKEN = "Bearer s3cret-token-of-customer-care"
CUSTOMERS = [{"tenure_months": 2.0 + 7 * i, "monthly_charges": 30.0 + 9 * i,
              "support_calls": i % 5} for i in range(8)]
INVALID = b'{"tenure_months": -1, "monthly_charges": 50}'


def stored_events(store: Path) -> list[dict[str, Any]]:
    with AuditStore(store, create=False, readonly=True) as source:
        return [json.loads(data)["event"] for chain in source.chain_ids()
                for _, data in source.records(chain)]


def keyed(store: Path, data: bytes) -> str:
    key = Path(f"{store}.hmac-key").read_bytes().strip()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def requests_sent(base_url: str) -> list[tuple[dict[str, str], bytes, httpx.Response]]:
    """The same exchange against any server: predictions, one invalid body, health probes."""
    sent = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for index, customer in enumerate(CUSTOMERS):
            headers = {"content-type": "application/json"}
            if index == 3:
                headers["x-request-id"] = "req-audit-42"
            if index % 2:
                headers["authorization"] = TOKEN
            body = json.dumps(customer).encode()
            sent.append((headers, body, client.post("/predict", content=body, headers=headers)))
            client.get("/health")
        headers = {"content-type": "application/json"}
        sent.append((headers, INVALID, client.post("/predict", content=INVALID,
                                                   headers=headers)))
    return sent


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The churn app under `opentelemetry-instrument uvicorn`, called, then stopped by SIGTERM."""
    tmp = tmp_path_factory.mktemp("churn")
    store, port = tmp / "audit.db", free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **NO_EXPORT,
                "OTEL_AI_AUDIT_STORE": str(store), "OTEL_SERVICE_NAME": "churn-api",
                "OTEL_AI_AUDIT_SIGNING_KEY": str(key_beside(store))})
    log = (tmp / "server.log").open("w+")
    server = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), "uvicorn", "app:app", "--app-dir",
         str(CHURN_API), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: httpx.get(f"{base_url}/health").status_code == 200, 120), \
            (tmp / "server.log").read_text()
        sent = requests_sent(base_url)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    yield {"store": store, "sent": sent, "returncode": server.returncode,
           "log": (tmp / "server.log").read_text()}


def test_sigterm_closes_a_verified_chain(served: dict[str, Any]) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown; the audit runtime's handler turns
    # it into SystemExit, so atexit closes the chain.
    assert served["returncode"] == 128 + signal.SIGTERM, served["log"]
    store = served["store"]
    result = subprocess.run(
        [str(BIN / "otel-ai-audit"), "verify", str(store), "--public-key", f"{store}.pub.pem",
         "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and all(chain["closed"] for chain in report["chain_summaries"])


def test_one_decision_per_prediction_with_its_request_context(served: dict[str, Any]) -> None:
    events = stored_events(served["store"])
    decisions = [event for event in events if event["type"] == "inference"]
    requests = [event for event in events if event["type"] == "request"]
    assert len(decisions) == len(CUSTOMERS)
    assert len(requests) == len(CUSTOMERS) + 1, "one per /predict request, none for /health"
    assert all(request["request"]["route"] == "/predict" for request in requests)
    assert len({request["request"]["id"] for request in requests}) == len(requests)

    by_id = {decision["id"]: decision for decision in decisions}
    by_body = {request["request"]["body"]["hmac_sha256"]: request for request in requests}
    for _, body, response in served["sent"]:
        request = by_body[keyed(served["store"], body)]
        assert request["request"]["method"] == "POST"
        assert request["response"]["status_code"] == response.status_code
        assert request["request"]["body"] == {"policy": "hash", "bytes": len(body),
                                              "hmac_sha256": keyed(served["store"], body)}
        assert request["latency_ms"] > 0
        assert request["trace"]["trace_id"], "the contrib server span is current"
        if response.status_code == 200:
            assert request["response"]["body"] == {"policy": "full", "bytes": len(
                response.content), "value": response.json()}
            (decision_id,) = request["decision_ids"]
            decision = by_id[decision_id]
            assert decision["context"] == {"request": {
                key: request["request"][key] for key in ("id", "method", "route", "client")}}
            assert decision["trace"]["trace_id"] == request["trace"]["trace_id"]
            assert decision["output"]["value"][1] == pytest.approx(
                response.json()["probability"], abs=1e-6)
        else:
            # Validation failed before the model: on the record, with no decision; the error
            # body echoes the input, so it is kept under the stricter (input) policy.
            assert response.status_code == 422 and request["decision_ids"] == []
            assert request["response"]["body"]["policy"] == "hash"
    (supplied,) = [r for r in requests if r["request"]["id"] == "req-audit-42"]
    assert supplied["request"]["body"]["hmac_sha256"] == keyed(
        served["store"], json.dumps(CUSTOMERS[3]).encode())
    assert by_id[supplied["decision_ids"][0]]["context"]["request"]["id"] == "req-audit-42"


def test_client_identity_is_only_a_keyed_pseudonym(served: dict[str, Any]) -> None:
    store = served["store"]
    requests = [event for event in stored_events(store) if event["type"] == "request"]
    by_token = keyed(store, f"authorization:{TOKEN}".encode())[:32]
    by_address = keyed(store, b"address:127.0.0.1")[:32]
    by_body = {request["request"]["body"]["hmac_sha256"]: request for request in requests}
    for headers, body, _ in served["sent"]:
        expected = ({"pseudo_id": by_token, "source": "authorization"} if "authorization" in
                    headers else {"pseudo_id": by_address, "source": "address"})
        assert by_body[keyed(store, body)]["request"]["client"] == expected
    raw = b"".join(path.read_bytes() for path in store.parent.glob(f"{store.name}*"))
    assert TOKEN.encode() not in raw and b"s3cret" not in raw
    assert b"127.0.0.1" not in raw


def test_responses_are_those_of_the_uninstrumented_app(served: dict[str, Any]) -> None:
    spec = importlib.util.spec_from_file_location("churn_api_app", CHURN_API / "app.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.app

    async def plain() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://plain") as client:
            return [await client.post("/predict", content=body, headers=headers)
                    for headers, body, _ in served["sent"]]

    for (_, _, audited), expected in zip(served["sent"], asyncio.run(plain()), strict=True):
        assert audited.status_code == expected.status_code
        assert audited.content == expected.content
        assert audited.headers["content-type"] == expected.headers["content-type"]
        assert audited.headers["content-length"] == expected.headers["content-length"]


# --- in-process: edge cases, and coexistence with the contrib instrumentor in both orders ----

@pytest.fixture
def audited(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AuditedProcess]:
    settings = getattr(request, "param", {})
    for process in audited_process(tmp_path, **settings):
        sklearn, audit = SklearnInstrumentor(), FastAPIAuditInstrumentor()
        sklearn.instrument(tracer_provider=process.provider)
        audit.instrument(tracer_provider=process.provider)
        try:
            yield process
        finally:
            audit.uninstrument()
            sklearn.uninstrument()


def churn_model() -> LogisticRegression:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(100, 3))
    return LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))


def score_app(app_class: type[FastAPI]) -> FastAPI:
    app, model = app_class(), churn_model()

    @app.post("/score")
    def score(row: list[float]) -> float:
        return float(model.predict_proba([row])[0, 1])

    return app


def call(app: FastAPI, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [await client.request(method, path, **options)
                    for method, path, options in requests]

    return asyncio.run(run())


@pytest.mark.parametrize("contrib_first", [True, False])
def test_coexists_with_the_contrib_instrumentor_in_either_order(
        tmp_path: Path, contrib_first: bool) -> None:
    for process in audited_process(tmp_path):
        contrib, audit = FastAPIInstrumentor(), FastAPIAuditInstrumentor()
        order = [contrib, audit] if contrib_first else [audit, contrib]
        for instrumentor in order:
            instrumentor.instrument(tracer_provider=process.provider)
        sklearn = SklearnInstrumentor()
        sklearn.instrument(tracer_provider=process.provider)
        try:
            import fastapi  # the class the contrib instrumentor put in place, if it did

            responses = call(score_app(fastapi.FastAPI), ("POST", "/score",
                                                          {"json": [0.1, 0.2, 0.3]}))
            assert responses[0].status_code == 200
        finally:
            sklearn.uninstrument()
            for instrumentor in reversed(order):
                instrumentor.uninstrument()
        (request,) = process.events("request")
        (decision,) = process.events("inference")
        assert request["decision_ids"] == [decision["id"]]
        assert request["trace"]["trace_id"] == decision["trace"]["trace_id"]


@pytest.mark.parametrize("audited", [{
    "fastapi_routes": ("POST /v1/*", "GET /v1/items/{item}", "POST /inner/*"),
    "capture_inputs": "full",
    "capture_max_bytes": 64, "redact_fields": ("ssn",)}], indirect=True)
def test_routes_bodies_errors_and_mounts(audited: AuditedProcess) -> None:
    model = churn_model()
    inner = FastAPI()
    app = FastAPI()

    @app.post("/v1/score")
    def score(row: dict[str, Any]) -> dict[str, float]:
        return {"p": float(model.predict_proba([row["x"]])[0, 1])}

    @app.post("/v1/explode")
    def explode() -> None:
        raise RuntimeError("model backend down")

    @app.get("/v1/items/{item}")
    def item(item: str) -> StreamingResponse:
        return StreamingResponse(iter([b"a" * 50, b"b" * 50]), media_type="text/plain")

    @app.post("/admin/retrain")
    def retrain() -> dict[str, str]:
        return {"status": "queued"}

    @inner.post("/v1/sub")
    async def sub(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.mount("/inner", inner)
    big, row = b"x" * 1000, b'{"x": [1, 2, 3], "ssn": "123"}'
    responses = call(app, ("POST", "/v1/score", {"content": row,
                                                 "headers": {"content-type": "application/json"}}),
                     ("POST", "/v1/explode", {}),
                     ("GET", "/v1/items/42", {}),
                     ("POST", "/admin/retrain", {}),
                     ("POST", "/inner/v1/sub", {"content": big}))
    assert [r.status_code for r in responses] == [200, 500, 200, 200, 200]
    assert responses[2].content == b"a" * 50 + b"b" * 50
    assert responses[4].json() == {"bytes": 1000}

    requests = {r["request"]["route"]: r for r in audited.events("request")}
    assert set(requests) == {"/v1/score", "/v1/explode", "/v1/items/{item}", "/inner/v1/sub"}
    scored = requests["/v1/score"]
    assert scored["request"]["body"] == {"policy": "full", "bytes": len(row),
                                         "value": {"x": [1, 2, 3], "ssn": "[redacted]"}}
    assert len(scored["decision_ids"]) == 1
    exploded = requests["/v1/explode"]
    assert exploded["response"] == {"status_code": 500}
    assert exploded["error"] == {"type": "RuntimeError"}
    streamed = requests["/v1/items/{item}"]["response"]
    assert streamed["status_code"] == 200
    assert streamed["body"] == {"policy": "full", "bytes": 100, "truncated": True,
                                "hmac_sha256": keyed(audited.store, b"a" * 50 + b"b" * 50)}
    assert len(audited.events("request")) == len(requests), "a mounted app is recorded once"
    assert requests["/inner/v1/sub"]["request"]["body"] == {
        "policy": "full", "bytes": 1000, "truncated": True,
        "hmac_sha256": keyed(audited.store, big)}
