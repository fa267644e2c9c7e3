"""`otel-ai-audit kibana install` against a loopback peer that holds requests to Kibana's rules.

Kibana cannot run on this machine (it is on none of the registries we can reach), so the peer
below answers as Kibana 8.x documents its APIs and checks what a real Kibana would refuse:
writes without `kbn-xsrf`, wrong credentials, unknown spaces, an import whose references do
not resolve, a rule created twice (409), an update carrying fields only a create takes. It
keeps what was installed, so a second install is seen to update rather than duplicate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from otel_ai_audit.cli import main
from otel_ai_audit.dashboards import kibana
from tests.services.base import free_port, json_http_server

CREATE_FIELDS = {"name", "rule_type_id", "consumer", "schedule", "params", "actions", "tags",
                 "enabled", "throttle", "notify_when"}
UPDATE_FIELDS = {"name", "tags", "schedule", "params", "actions", "throttle", "notify_when"}


@dataclass
class FakeKibana:
    """What the peer holds and how it behaves."""

    authorization: str
    spaces: tuple[str, ...] = ("default",)
    unsupported_types: tuple[str, ...] = ()
    forbid_rules: bool = False
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    update_bodies: list[dict[str, Any]] = field(default_factory=list)

    def handle(self, method: str, target: str, headers: Any,
               body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, target))
        url = urlsplit(target)
        space, path = "default", url.path
        if path.startswith("/s/"):
            _, _, space, rest = path.split("/", 3)
            path = "/" + rest
        if headers.get("Authorization") != self.authorization:
            return 401, {"statusCode": 401, "error": "Unauthorized",
                         "message": "[security_exception] unable to authenticate user"}
        if space not in self.spaces:
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
        if headers.get("kbn-xsrf") is None:
            return 400, {"statusCode": 400, "error": "Bad Request",
                         "message": "Request must contain a kbn-xsrf header."}
        if method == "POST" and path == "/api/saved_objects/_import":
            assert url.query == "overwrite=true"
            return self.import_objects(space, headers["Content-Type"], body)
        if path.startswith("/api/alerting/rule/"):
            if self.forbid_rules:
                return 403, {"statusCode": 403, "error": "Forbidden", "message":
                             'Unauthorized to create a ".es-query" rule for "stackAlerts"'}
            return self.rule(method, (space, path.rsplit("/", 1)[1]), json.loads(body))
        return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}

    def import_objects(self, space: str, content_type: str,
                       body: bytes) -> tuple[int, dict[str, Any]]:
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        (part,) = message.iter_parts()
        assert part.get_param("name", header="content-disposition") == "file"
        assert part.get_filename().endswith(".ndjson")
        lines = part.get_payload(decode=True).decode().splitlines()
        items = [json.loads(line) for line in lines]
        present = {(kind, object_id) for (_, kind, object_id) in self.objects} | {
            (item["type"], item["id"]) for item in items}
        errors = []
        for item in items:
            missing = [ref for ref in item["references"] if (ref["type"], ref["id"])
                       not in present]
            if item["type"] in self.unsupported_types:
                errors.append({"id": item["id"], "type": item["type"],
                               "error": {"type": "unsupported_type"}})
            elif missing:
                errors.append({"id": item["id"], "type": item["type"],
                               "error": {"type": "missing_references",
                                         "references": missing}})
        if not errors:
            for item in items:
                self.objects[(space, item["type"], item["id"])] = item
        return 200, {"success": not errors, "successCount": len(items) - len(errors),
                     "errors": errors, "successResults": []}

    def rule(self, method: str, key: tuple[str, str],
             body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        allowed = CREATE_FIELDS if method == "POST" else UPDATE_FIELDS
        unknown = set(body) - allowed
        if unknown:
            return 400, {"statusCode": 400, "error": "Bad Request", "message":
                         f"[request body.{sorted(unknown)[0]}]: definition for this key is "
                         "missing"}
        if method == "POST":
            if key in self.rules:
                return 409, {"statusCode": 409, "error": "Conflict",
                             "message": f"Saved object [alert/{key[1]}] conflict"}
            assert {"name", "rule_type_id", "consumer", "schedule", "params"} <= set(body)
            self.rules[key] = body
            return 200, {"id": key[1], **body}
        if key not in self.rules:
            return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
        self.update_bodies.append(body)
        self.rules[key] = {**self.rules[key], **body}
        return 200, {"id": key[1], **self.rules[key]}


API_KEY = "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"
API_KEY_HEADER = "ApiKey " + base64.b64encode(API_KEY.encode()).decode()


@pytest.fixture
def peer() -> Iterator[tuple[str, FakeKibana]]:
    state = FakeKibana(API_KEY_HEADER, spaces=("default", "audit"))
    with json_http_server(state.handle) as url:
        yield url, state


def install(*arguments: str) -> Any:
    return CliRunner(env={"OTEL_AI_AUDIT_KIBANA_URL": None}).invoke(
        main, ["kibana", "install", *arguments])


def test_install_imports_everything_then_updates_in_place(
        peer: tuple[str, FakeKibana]) -> None:
    url, state = peer
    result = install("--url", url, "--api-key", API_KEY)
    assert result.exit_code == 0, result.output
    objects = kibana.saved_objects()
    assert f"imported {len(objects)} saved object(s) into Kibana at {url} (space default)" \
        in result.stdout
    assert result.stdout.count("created rule: ") == len(kibana.RULES)
    assert set(state.objects) == {("default", item["type"], item["id"]) for item in objects}
    assert set(state.rules) == {("default", rule_id) for rule_id in kibana.alert_rules()}
    assert all(not body["actions"] for body in state.rules.values())
    # Again: the same ids, overwritten objects, rules updated with what an update takes.
    result = install("--url", url, "--api-key", API_KEY)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("updated rule: ") == len(kibana.RULES)
    assert len(state.objects) == len(objects) and len(state.rules) == len(kibana.RULES)
    assert len(state.update_bodies) == len(kibana.RULES)
    assert all(set(body) == set(kibana.UPDATABLE_RULE_FIELDS) for body in state.update_bodies)


def test_space_prefix_connector_and_basic_auth(peer: tuple[str, FakeKibana]) -> None:
    url, state = peer
    state.authorization = "Basic " + base64.b64encode(b"elastic:changeme").decode()
    result = install("--url", url + "/", "--username", "elastic", "--password", "changeme",
                     "--space", "audit", "--index-prefix", "acme-audit",
                     "--connector-id", "slack-ops")
    assert result.exit_code == 0, result.output
    assert all(path.startswith("/s/audit/api/") for _, path in state.requests)
    views = [item for (_, kind, _), item in state.objects.items() if kind == "index-pattern"]
    assert {view["attributes"]["title"] for view in views} == {
        "acme-audit-records", "acme-audit-checkpoints", "acme-audit-findings",
        "acme-audit-anchors"}
    for body in state.rules.values():
        (action,) = body["actions"]
        assert action["id"] == "slack-ops" and body["params"]["index"][0].startswith("acme-")


def test_failures_are_one_line_errors(peer: tuple[str, FakeKibana]) -> None:
    url, state = peer
    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["--url", url, "--api-key", "id:wrong"], "refused the credentials (HTTP 401)"),
        (["--url", url, "--api-key", API_KEY, "--space", "nope"], "has no space 'nope'"),
        (["--url", down], f"cannot reach Kibana at {down} (importing saved objects): "
                          "[Errno 111] Connection refused"),
    ]
    for arguments, message in cases:
        result = install(*arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert result.stderr.startswith("otel-ai-audit: error: "), result.output
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    state.unsupported_types = ("lens",)
    result = install("--url", url, "--api-key", API_KEY)
    assert result.exit_code == 2 and f"did not import {len(kibana.PANELS)} of " in result.stderr
    assert "unsupported_type" in result.stderr and result.stderr.count("\n") == 1
    assert not state.objects and not state.rules
    state.unsupported_types, state.forbid_rules = (), True
    result = install("--url", url, "--api-key", API_KEY)
    assert result.exit_code == 2 and "may not do this (creating rule" in result.stderr
    assert "HTTP 403" in result.stderr and result.stderr.count("\n") == 1


def test_the_peer_refuses_what_kibana_refuses(peer: tuple[str, FakeKibana]) -> None:
    """The checks above mean something: the peer rejects a request without kbn-xsrf, an
    import with a dangling reference, and an update with create-only fields."""
    url, state = peer
    headers = {"Authorization": API_KEY_HEADER}
    assert state.handle("POST", "/api/alerting/rule/x", headers, b"{}")[0] == 400
    headers["kbn-xsrf"] = "x"
    (lens,) = [item for item in kibana.saved_objects() if item["type"] == "lens"][:1]
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x.ndjson\"\r\nContent-Type: application/ndjson\r\n\r\n"
            f"{json.dumps(lens)}\n\r\n--{boundary}--\r\n").encode()
    status, answer = state.import_objects("default", f"multipart/form-data; boundary={boundary}",
                                          body)
    assert status == 200 and not answer["success"]
    assert answer["errors"][0]["error"]["type"] == "missing_references"
    rule_id, create = next(iter(kibana.alert_rules().items()))
    assert state.handle("POST", f"/api/alerting/rule/{rule_id}", headers,
                        json.dumps(create).encode())[0] == 200
    assert state.handle("PUT", f"/api/alerting/rule/{rule_id}", headers,
                        json.dumps(create).encode())[0] == 400
