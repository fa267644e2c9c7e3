"""The real anchoring services behave as the anchor code relies on.

S3 (versitygw): a bucket made with Object Lock keeps every version written under COMPLIANCE
retention undeletable and its retention unshortenable, while overwrites add versions. The TSA
(sigstore timestamp-server): rfc3161-client's tokens verify against the served chain, bind the
exact SHA-256 and carry the current time, and survive a bytes round trip for storage.
"""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimeStampRequest,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    Verifier,
    VerifierBuilder,
    decode_timestamp_response,
)

from tests.services.s3 import S3Service
from tests.services.tsa import TimestampAuthorityService


@pytest.fixture
def s3(s3_service: S3Service) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_service.endpoint,
        aws_access_key_id=s3_service.access_key,
        aws_secret_access_key=s3_service.secret_key,
        region_name=s3_service.region,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def locked_bucket(s3: Any) -> str:
    bucket = f"locked-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_object_lock_is_enabled_and_implies_versioning(s3: Any, locked_bucket: str) -> None:
    config = s3.get_object_lock_configuration(Bucket=locked_bucket)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"
    assert s3.get_bucket_versioning(Bucket=locked_bucket)["Status"] == "Enabled"


def test_compliance_version_cannot_be_deleted_or_shortened(s3: Any, locked_bucket: str) -> None:
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)
    put = s3.put_object(Bucket=locked_bucket, Key="anchor", Body=b"root-1",
                        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    version = put["VersionId"]

    read = s3.get_object(Bucket=locked_bucket, Key="anchor", VersionId=version)
    assert read["Body"].read() == b"root-1"
    head = s3.head_object(Bucket=locked_bucket, Key="anchor", VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until

    with pytest.raises(ClientError) as deleted:
        s3.delete_object(Bucket=locked_bucket, Key="anchor", VersionId=version)
    assert error_code(deleted) == "AccessDenied"
    for mode in ("COMPLIANCE", "GOVERNANCE"):
        with pytest.raises(ClientError) as shortened:
            s3.put_object_retention(
                Bucket=locked_bucket, Key="anchor", VersionId=version,
                Retention={"Mode": mode, "RetainUntilDate": until - timedelta(days=1)},
                BypassGovernanceRetention=True,
            )
        assert error_code(shortened) == "AccessDenied"
    retention = s3.get_object_retention(Bucket=locked_bucket, Key="anchor", VersionId=version)
    assert retention["Retention"] == {"Mode": "COMPLIANCE", "RetainUntilDate": until}

    overwrite = s3.put_object(Bucket=locked_bucket, Key="anchor", Body=b"root-2")
    assert overwrite["VersionId"] != version
    assert s3.get_object(Bucket=locked_bucket, Key="anchor")["Body"].read() == b"root-2"
    old = s3.get_object(Bucket=locked_bucket, Key="anchor", VersionId=version)
    assert old["Body"].read() == b"root-1"


def test_default_retention_is_not_recorded_on_the_version(s3: Any, locked_bucket: str) -> None:
    """versitygw applies the bucket rule at delete time instead of recording it on each version
    as AWS does: HeadObject shows no lock and dropping the rule frees the version. Anchors must
    therefore carry their own retention (ObjectLockMode / ObjectLockRetainUntilDate)."""
    rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2}}
    s3.put_object_lock_configuration(
        Bucket=locked_bucket,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule},
    )
    config = s3.get_object_lock_configuration(Bucket=locked_bucket)["ObjectLockConfiguration"]
    assert config["Rule"] == rule
    version = s3.put_object(Bucket=locked_bucket, Key="by-default", Body=b"x")["VersionId"]

    with pytest.raises(ClientError) as deleted:
        s3.delete_object(Bucket=locked_bucket, Key="by-default", VersionId=version)
    assert error_code(deleted) == "AccessDenied"
    head = s3.head_object(Bucket=locked_bucket, Key="by-default", VersionId=version)
    assert "ObjectLockMode" not in head

    s3.put_object_lock_configuration(
        Bucket=locked_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    s3.delete_object(Bucket=locked_bucket, Key="by-default", VersionId=version)


def test_bucket_without_object_lock(s3: Any) -> None:
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as no_lock:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert error_code(no_lock) == "ObjectLockConfigurationNotFoundError"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="missing")
    assert error_code(missing) == "404"
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="x", Body=b"x", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=datetime.now(timezone.utc) + timedelta(days=1))
    assert error_code(refused) == "InvalidRequest"


def timestamp(
    tsa: TimestampAuthorityService, data: bytes
) -> tuple[TimeStampRequest, TimeStampResponse]:
    """A request for SHA-256(data) with a nonce and the TSA certificate, and its response."""
    request = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    http_request = urllib.request.Request(
        tsa.url, data=request.as_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    )
    with urllib.request.urlopen(http_request, timeout=10) as answer:
        assert answer.headers["Content-Type"] == "application/timestamp-reply"
        return request, decode_timestamp_response(answer.read())


def verifier(
    tsa: TimestampAuthorityService, request: TimeStampRequest | None = None
) -> Verifier:
    """Root = last certificate of the chain, intermediates = the rest, leaf pinned."""
    chain = x509.load_pem_x509_certificates(tsa.certchain_path.read_bytes())
    builder = VerifierBuilder.from_request(request) if request is not None else VerifierBuilder()
    builder = builder.tsa_certificate(chain[0]).add_root_certificate(chain[-1])
    for intermediate in chain[1:-1]:
        builder = builder.add_intermediate_certificate(intermediate)
    return builder.build()


def test_timestamp_token_verifies_against_the_served_chain(
    tsa_service: TimestampAuthorityService,
) -> None:
    assert tsa_service.certchain_path.read_bytes() == tsa_service.certchain_pem
    data = b"chain head 0f3a"
    digest = hashlib.sha256(data).digest()
    request, response = timestamp(tsa_service, data)

    info = response.tst_info
    assert info.message_imprint.message == digest
    assert info.message_imprint.hash_algorithm.dotted_string == "2.16.840.1.101.3.4.2.1"
    assert info.nonce == request.nonce
    assert abs(info.gen_time - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert info.serial_number > 0
    assert verifier(tsa_service, request).verify(response, digest)

    stored = decode_timestamp_response(response.as_bytes())
    assert stored.tst_info.serial_number == info.serial_number
    assert verifier(tsa_service).verify_message(stored, data)
    with pytest.raises(VerificationError, match="Mismatch between messages"):
        verifier(tsa_service).verify_message(stored, b"chain head 0f3b")


def test_timestamp_token_needs_the_intermediate(tsa_service: TimestampAuthorityService) -> None:
    """The token embeds only the TSA certificate: the root alone does not verify it."""
    _, response = timestamp(tsa_service, b"x")
    assert len(response.signed_data.certificates) == 1
    root = x509.load_pem_x509_certificates(tsa_service.certchain_pem)[-1]
    root_only = VerifierBuilder().add_root_certificate(root).build()
    with pytest.raises(VerificationError, match="unable to get local issuer certificate"):
        root_only.verify_message(response, b"x")
