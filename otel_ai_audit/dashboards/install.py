"""Installing the saved objects and alert rules into Kibana through its HTTP APIs.

* Saved objects: `POST /api/saved_objects/_import?overwrite=true`, multipart field `file`
  holding the NDJSON. Kibana answers 200 even when objects fail; `success` and `errors` in
  the body say which, so both are checked.
* Rules: `POST /api/alerting/rule/{id}` creates; 409 means the id exists, and then `PUT` on
  the same path updates it with the fields an update takes.

Every request carries `kbn-xsrf` (Kibana refuses writes without it) and the credentials: an
API key (`Authorization: ApiKey <base64 of id:key>`, given encoded or as id:key) or a user and
password. A space other than `default` is addressed as `/s/<space>/api/...`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import urllib3

from otel_ai_audit.backends._http import transport_reason
from otel_ai_audit.config import ELASTICSEARCH_INDEX_PREFIX
from otel_ai_audit.dashboards import kibana
from otel_ai_audit.errors import BackendError

IMPORT_PATH = "/api/saved_objects/_import?overwrite=true"
RULE_PATH = "/api/alerting/rule/"


class KibanaError(BackendError):
    """Kibana could not be reached or refused the request; one line a user can act on."""


@dataclass
class InstallResult:
    imported: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


class KibanaInstaller:
    """Posts the objects of one index prefix into one Kibana space."""

    def __init__(self, url: str, *, api_key: str | None = None, username: str | None = None,
                 password: str | None = None, ca_certs: str | None = None,
                 space: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.base = self.url if space in (None, "", "default") else f"{self.url}/s/{space}"
        self.space = space or "default"
        self.headers = {"kbn-xsrf": "otel-ai-audit"}
        if api_key:
            encoded = (base64.b64encode(api_key.encode()).decode() if ":" in api_key
                       else api_key)
            self.headers["Authorization"] = f"ApiKey {encoded}"
        elif username:
            self.headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self.pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10.0, read=timeout), retries=False,
            **({"ca_certs": ca_certs} if ca_certs else {}))

    def install(self, *, index_prefix: str = ELASTICSEARCH_INDEX_PREFIX,
                connector_id: str | None = None) -> InstallResult:
        result = InstallResult(imported=self.import_objects(kibana.saved_objects(index_prefix)))
        for rule_id, body in kibana.alert_rules(index_prefix, connector_id).items():
            (result.created if self.put_rule(rule_id, body) else result.updated).append(
                body["name"])
        return result

    def import_objects(self, objects: list[dict[str, Any]]) -> int:
        """Import (overwriting); return how many objects Kibana took."""
        ndjson = kibana.to_ndjson(objects).encode()
        status, answer = self._request(
            "POST", IMPORT_PATH, "importing saved objects",
            fields={"file": ("otel-ai-audit.ndjson", ndjson, "application/ndjson")})
        if status != 200:
            raise self._refused(status, answer, "importing saved objects")
        errors = answer.get("errors") or []
        if not answer.get("success") or errors:
            shown = "; ".join(f"{error.get('type')} {error.get('id')}: "
                              f"{(error.get('error') or {}).get('type')}" for error in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise KibanaError(f"Kibana at {self.url} did not import {len(errors)} of "
                              f"{len(objects)} saved object(s): {shown or answer}{more}")
        return int(answer.get("successCount", len(objects)))

    def put_rule(self, rule_id: str, body: dict[str, Any]) -> bool:
        """Create the rule, or update it if it exists; True if it was created."""
        what = f"creating rule {body['name']!r}"
        status, answer = self._request("POST", RULE_PATH + rule_id, what, body=body)
        if status == 200:
            return True
        if status != 409:
            raise self._refused(status, answer, what)
        update = {key: body[key] for key in kibana.UPDATABLE_RULE_FIELDS}
        what = f"updating rule {body['name']!r}"
        status, answer = self._request("PUT", RULE_PATH + rule_id, what, body=update)
        if status != 200:
            raise self._refused(status, answer, what)
        return False

    def _request(self, method: str, path: str, what: str, *, body: Any = None,
                 fields: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        headers = dict(self.headers)
        options: dict[str, Any] = {}
        if fields is not None:
            options["fields"] = fields
        else:
            headers["Content-Type"] = "application/json"
            options["body"] = json.dumps(body).encode()
        try:
            response = self.pool.request(method, self.base + path, headers=headers,
                                         **options)
        except urllib3.exceptions.HTTPError as error:
            raise KibanaError(f"cannot reach Kibana at {self.url} ({what}): "
                              f"{transport_reason(error)}") from error
        try:
            answer = json.loads(response.data or b"{}")
        except ValueError:
            answer = {"message": response.data[:200].decode(errors="replace").strip()}
        return response.status, answer if isinstance(answer, dict) else {"message": answer}

    def _refused(self, status: int, answer: dict[str, Any], what: str) -> KibanaError:
        where = f"Kibana at {self.url}"
        if status == 401:
            return KibanaError(f"{where} refused the credentials (HTTP 401): check the API "
                               "key, or the user name and password")
        if status == 403:
            return KibanaError(f"{where}: these credentials may not do this ({what}, HTTP 403):"
                               f" {answer.get('message', '')}".rstrip(": "))
        if status == 404 and self.space != "default":
            return KibanaError(f"{where} has no space {self.space!r} (HTTP 404 {what})")
        return KibanaError(f"{where} answered HTTP {status} {what}: "
                           f"{answer.get('message') or answer.get('error') or answer}")
