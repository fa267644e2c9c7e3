"""Outgoing calls to a remote model with requests and httpx, against a real loopback server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from fastapi import FastAPI

import otel_ai_audit
from otel_ai_audit.instrumentation.fastapi import FastAPIAuditInstrumentor
from otel_ai_audit.instrumentation.http import HTTPInferenceInstrumentor
from tests.instrumentation_fixtures import AuditedProcess, instrumented
from tests.services.base import free_port, http_server

JSON = {"content-type": "application/json"}
PAYLOAD = json.dumps({"instances": [[1.5, 2.0, 3.25]]}).encode()


class ModelHandler(BaseHTTPRequestHandler):
    """A remote churn model: `churn:predict` scores, `churn:old` redirects to it, `broken:predict`
    fails with a body echoing the input (as many servers do), `/echo` is not a model."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.read_body()
        if self.path.endswith("/churn:old"):
            self.respond(307, b"", location="/v1/models/churn:predict")
        elif self.path.startswith("/v1/models/churn:predict"):
            rows = json.loads(body)["instances"]
            self.respond(200, json.dumps({"predictions": [round(sum(r) / 10, 4) for r in rows]}
                                         ).encode())
        elif self.path.startswith("/v1/models/broken"):
            self.respond(500, json.dumps({"error": "backend down", "input": body.decode()}
                                         ).encode())
        else:
            self.respond(200, body)

    def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def respond(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def model_server() -> Iterator[str]:
    with http_server(ModelHandler) as url:
        yield url


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[AuditedProcess]:
    with instrumented(tmp_path, HTTPInferenceInstrumentor, http_model_urls=(
            "churn=http://127.0.0.1:*/v1/models/churn:*",
            "http://127.0.0.1:*/v1/models/broken:*")) as process:
        yield process


def keyed(store: Path, data: bytes) -> str:
    key = Path(f"{store}.hmac-key").read_bytes().strip()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


async def async_post(url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, **options)


def test_calls_to_model_urls_are_decisions_and_others_are_not(
        audited: AuditedProcess, model_server: str) -> None:
    url = f"{model_server}/v1/models/churn:predict"
    secret_url = url.replace("http://", "http://user:pa55word@") + "?api_key=SECRET-KEY"
    responses = [requests.post(secret_url, data=PAYLOAD, headers=JSON)]
    ids = otel_ai_audit.last_decision_ids()
    responses.append(httpx.post(url, content=PAYLOAD, headers=JSON))
    responses.append(asyncio.run(async_post(url, content=PAYLOAD, headers=JSON)))
    requests.post(f"{model_server}/echo", data=PAYLOAD)
    httpx.post(f"{model_server}/echo", content=PAYLOAD)
    asyncio.run(async_post(f"{model_server}/echo", content=PAYLOAD))

    decisions = audited.events("inference")
    assert len(decisions) == 3, "one decision per call to a model URL, none for /echo"
    assert decisions[0]["id"] == ids[0]
    for decision, response in zip(decisions, responses, strict=True):
        assert response.json() == {"predictions": [0.675]}
        assert decision["model"] == {"name": "churn", "framework": "http", "endpoint": url}
        assert decision["operation"] == "POST"
        assert decision["http"] == {"method": "POST", "status_code": 200}
        assert decision["input"] == {"policy": "hash", "bytes": len(PAYLOAD),
                                     "hmac_sha256": keyed(audited.store, PAYLOAD)}
        assert decision["output"] == {"policy": "full", "bytes": len(response.content),
                                      "value": {"predictions": [0.675]}}
        assert decision["risk"] == {"level": "high"} and decision["latency_ms"] > 0
        assert decision["trace"]["trace_id"] and "error" not in decision
    raw = b"".join(path.read_bytes() for path in audited.store.parent.glob("audit.db*"))
    assert b"SECRET-KEY" not in raw and b"pa55word" not in raw
    assert audited.verify().ok


def exchanges(base: str) -> list[tuple[int, bytes, dict[str, str]]]:
    """Every way of calling the model server, as the caller sees the responses."""
    predict, broken = f"{base}/v1/models/churn:predict", f"{base}/v1/models/broken:predict"
    results: list[Any] = [
        requests.post(predict, data=PAYLOAD, headers=JSON),
        requests.post(f"{base}/v1/models/churn:old", data=PAYLOAD, headers=JSON),
        requests.post(broken, data=PAYLOAD, headers=JSON),
        httpx.post(predict, content=PAYLOAD, headers=JSON),
        httpx.post(broken, content=PAYLOAD, headers=JSON),
        asyncio.run(async_post(predict, content=PAYLOAD, headers=JSON)),
    ]
    streamed = requests.post(predict, data=PAYLOAD, headers=JSON, stream=True)
    streamed._content = b"".join(streamed.iter_content(3))  # the caller reads the stream
    results.append(streamed)
    with httpx.Client() as client, client.stream("POST", predict, content=PAYLOAD,
                                                 headers=JSON) as response:
        response.read()
        results.append(response)
    return [(r.status_code, r.content, {k.lower(): v for k, v in r.headers.items()
                                        if k.lower() != "date"}) for r in results]


def test_responses_are_unchanged(audited: AuditedProcess, model_server: str) -> None:
    instrumented = exchanges(model_server)
    HTTPInferenceInstrumentor().uninstrument()
    plain = exchanges(model_server)
    HTTPInferenceInstrumentor().instrument(tracer_provider=audited.provider)
    assert instrumented == plain
    assert len(audited.events("inference")) == len(plain)


def test_error_status_redirect_and_streams(audited: AuditedProcess, model_server: str) -> None:
    broken = requests.post(f"{model_server}/v1/models/broken:predict", data=PAYLOAD,
                           headers=JSON)
    requests.post(f"{model_server}/v1/models/churn:old", data=PAYLOAD, headers=JSON)
    with requests.post(f"{model_server}/v1/models/churn:predict", data=PAYLOAD, headers=JSON,
                       stream=True) as streamed:
        assert b"".join(streamed.iter_content(4)) == b'{"predictions": [0.675]}'
    requests.post(f"{model_server}/v1/models/churn:predict", data=iter([PAYLOAD]),
                  headers=JSON)

    failed, redirected, streamed_record, uploaded = audited.events("inference")
    # No name configured for this endpoint: the model is named after host, port and path.
    assert failed["model"]["name"] == f"{model_server[7:]}/v1/models/broken:predict"
    assert failed["http"]["status_code"] == 500 and failed["error"] == {"type": "500"}
    # The error body echoes the input, so it gets the stricter of the two policies (hash).
    assert failed["output"] == {"policy": "hash", "bytes": len(broken.content),
                                "hmac_sha256": keyed(audited.store, broken.content)}
    assert redirected["model"]["endpoint"].endswith("/v1/models/churn:old"), "one record"
    assert redirected["http"]["status_code"] == 200
    assert redirected["output"]["value"] == {"predictions": [0.675]}
    assert streamed_record["output"] == {"policy": "full", "streamed": True}
    assert uploaded["input"] == {"policy": "hash", "streamed": True}
    assert uploaded["output"]["value"] == {"predictions": [0.675]}


def raised(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


def test_connection_refused_is_recorded_and_reraised_unchanged(
        audited: AuditedProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/models/churn:predict"
    calls = [lambda: requests.post(url, data=PAYLOAD, headers=JSON),
             lambda: httpx.post(url, content=PAYLOAD, headers=JSON),
             lambda: asyncio.run(async_post(url, content=PAYLOAD, headers=JSON))]
    instrumented = [raised(call) for call in calls]
    HTTPInferenceInstrumentor().uninstrument()
    plain = [raised(call) for call in calls]
    HTTPInferenceInstrumentor().instrument(tracer_provider=audited.provider)
    assert [type(error) for error in instrumented] == [type(error) for error in plain]
    assert [type(error).__name__ for error in plain] == [
        "ConnectionError", "ConnectError", "ConnectError"]

    decisions = audited.events("inference")
    assert [d["error"] for d in decisions] == [{"type": type(e).__qualname__} for e in plain]
    for decision in decisions:
        assert decision["http"] == {"method": "POST", "status_code": None}
        assert "output" not in decision
        assert decision["input"]["hmac_sha256"] == keyed(audited.store, PAYLOAD)


def test_remote_decisions_made_for_an_inference_request_are_linked(
        audited: AuditedProcess, model_server: str) -> None:
    audit = FastAPIAuditInstrumentor()
    audit.instrument(tracer_provider=audited.provider)
    try:
        app = FastAPI()

        @app.post("/churn")
        def churn(row: list[float]) -> Any:
            remote = httpx.post(f"{model_server}/v1/models/churn:predict",
                                json={"instances": [row]})
            return remote.json()

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.post("/churn", json=[1.0, 2.0],
                                         headers={"x-request-id": "r-7"})

        assert asyncio.run(call()).json() == {"predictions": [0.3]}
    finally:
        audit.uninstrument()
    (decision,) = audited.events("inference")
    (request,) = audited.events("request")
    assert request["decision_ids"] == [decision["id"]]
    assert decision["context"]["request"] == {
        "id": "r-7", "method": "POST", "route": "/churn", "client": request["request"]["client"]}
