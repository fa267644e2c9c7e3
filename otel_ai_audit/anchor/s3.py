"""Anchors on S3-compatible object storage with Object Lock in compliance mode.

Each anchor is one object, `PREFIX/anchors/SEQ.json` (12-digit sequence number), written once
with a compliance-mode retention: until it ends nobody, the bucket owner and root included, can
delete that version or shorten its retention. Versioning (which Object Lock requires) keeps the
first version of a key even if someone writes the key again, and the verifier reads every
version, so a second version of an anchor is itself evidence. A bucket without Object Lock is
refused: anchors there could be deleted, and would prove nothing.

Credentials and region come from boto3's usual chain (AWS_ACCESS_KEY_ID, profiles, instance
roles); `endpoint_url` points at a non-AWS implementation (MinIO, versitygw, Ceph).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from otel_ai_audit.errors import BackendError

ANCHOR_FOLDER = "anchors"


class AnchorStorageError(BackendError):
    """The anchor bucket cannot be used or did not answer."""


class AnchorConflictError(AnchorStorageError):
    """An anchor of that number is already published with other bytes: the local outbox is
    behind what was published (the store was rolled back or replaced)."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise AnchorStorageError(f"{url!r} is not an s3://BUCKET/PREFIX location")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, seq: int) -> str:
        return "/".join(part for part in (self.prefix, ANCHOR_FOLDER, f"{seq:012d}.json")
                        if part)

    @property
    def folder(self) -> str:
        return "/".join(part for part in (self.prefix, ANCHOR_FOLDER) if part) + "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    last_modified: datetime


@dataclass(frozen=True)
class Retention:
    mode: str | None
    retain_until: datetime | None


class AnchorBucket:
    """The anchors of one store under one S3 location."""

    def __init__(self, location: S3Location | str, *, endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None) -> None:
        self.location = S3Location.parse(location) if isinstance(location, str) else location
        self._client = client if client is not None else _client(endpoint_url, region)

    def check_object_lock(self) -> None:
        """Refuse a bucket without Object Lock, in one line that says how to fix it."""
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.location.bucket)
        except Exception as error:  # botocore raises ClientError and connection errors
            if _code(error) == "ObjectLockConfigurationNotFoundError":
                raise AnchorStorageError(
                    f"{self.location}: bucket {self.location.bucket} has no Object Lock, so "
                    "anchors there could be deleted; create a bucket with Object Lock "
                    "enabled (docs/deploy.md)") from error
            raise AnchorStorageError(f"{self.location}: {_describe(error)}") from error
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise AnchorStorageError(f"{self.location}: Object Lock is not enabled on bucket "
                                     f"{self.location.bucket}")

    def put(self, seq: int, body: bytes, retain_until: datetime) -> str:
        """Write anchor `seq` once, locked in compliance mode until `retain_until`; its
        version id. Writing the same bytes again (a retry) returns the first version."""
        key = self.location.key(seq)
        existing = self._first_version(key)
        if existing is not None:
            if self.get(existing.key, existing.version_id) == body:
                return existing.version_id
            raise AnchorConflictError(
                f"{self.location}: anchor {seq} is already published with other content: this "
                "store's anchors are behind the published ones (was the store rolled back or "
                "replaced?); not publishing over it")
        try:
            answer = self._client.put_object(
                Bucket=self.location.bucket, Key=key, Body=body,
                ContentType="application/json", ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until)
        except Exception as error:
            raise AnchorStorageError(f"{self.location}: cannot write anchor {seq}: "
                                     f"{_describe(error)}") from error
        return str(answer.get("VersionId") or "")

    def versions(self) -> dict[str, list[ObjectVersion]]:
        """Every version of every object under the anchor folder, oldest first per key (by
        S3's listing order: a second write in the same second has the same LastModified)."""
        found: dict[str, list[ObjectVersion]] = {}
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.location.bucket, Prefix=self.location.folder)
            for page in pages:
                for version in page.get("Versions", []):
                    found.setdefault(version["Key"], []).append(ObjectVersion(
                        version["Key"], str(version.get("VersionId") or ""),
                        version["LastModified"]))
        except Exception as error:
            raise AnchorStorageError(f"{self.location}: cannot list anchors: "
                                     f"{_describe(error)}") from error
        for versions in found.values():
            versions.reverse()  # S3 lists a key's versions newest first
        return found

    def _first_version(self, key: str) -> ObjectVersion | None:
        try:
            answer = self._client.list_object_versions(Bucket=self.location.bucket, Prefix=key)
        except Exception as error:
            raise AnchorStorageError(f"{self.location}: {_describe(error)}") from error
        versions = [v for v in answer.get("Versions", []) if v["Key"] == key]
        if not versions:
            return None
        first = versions[-1]  # S3 lists a key's versions newest first
        return ObjectVersion(key, str(first.get("VersionId") or ""), first["LastModified"])

    def get(self, key: str, version_id: str) -> bytes:
        try:
            answer = self._client.get_object(Bucket=self.location.bucket, Key=key,
                                             **({"VersionId": version_id} if version_id else {}))
            return bytes(answer["Body"].read())
        except Exception as error:
            raise AnchorStorageError(f"{self.location}: cannot read {key}: "
                                     f"{_describe(error)}") from error

    def retention(self, key: str, version_id: str) -> Retention:
        """The version's lock, from GetObjectRetention (versitygw's HEAD omits it for a version
        that is no longer the latest)."""
        try:
            answer = self._client.get_object_retention(
                Bucket=self.location.bucket, Key=key,
                **({"VersionId": version_id} if version_id else {}))
        except Exception as error:
            if _code(error) == "NoSuchObjectLockConfiguration":
                return Retention(None, None)
            raise AnchorStorageError(f"{self.location}: cannot read the retention of {key}: "
                                     f"{_describe(error)}") from error
        retention = answer.get("Retention", {})
        return Retention(retention.get("Mode"), retention.get("RetainUntilDate"))


def _client(endpoint_url: str | None, region: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:
        raise AnchorStorageError("anchoring to S3 needs the anchor extra: "
                                 "pip install 'otel-ai-audit[anchor]'") from error
    config = Config(s3={"addressing_style": "path"} if endpoint_url else {},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5, read_timeout=30)
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _describe(error: Exception) -> str:
    code = _code(error)
    if code:
        message = getattr(error, "response", {}).get("Error", {}).get("Message", "")
        return f"{code}: {message}".rstrip(": ")
    return str(error)
