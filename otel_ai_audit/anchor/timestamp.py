"""RFC 3161 time-stamps: a time-stamping authority's signed word that an anchor existed at a
time, so the anchor's time rests neither on our clock nor on our key.

The token kept is the TSA's whole DER `TimeStampResp`: it carries the signed `TSTInfo`
(message imprint, genTime, serial number) and usually the TSA's certificate.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from types import ModuleType

import urllib3
from cryptography import x509

from otel_ai_audit.errors import BackendError

CONTENT_TYPE = "application/timestamp-query"


class TimestampError(BackendError):
    """No token could be had, or a token does not prove what it should."""


def request_timestamp(url: str, data: bytes, *, timeout: float = 10.0,
                      http: urllib3.PoolManager | None = None) -> bytes:
    """A time-stamp token over SHA-256(`data`) from the TSA at `url`, checked to be granted,
    over these bytes and for this request (nonce) before it is kept."""
    rfc3161 = _rfc3161_client()
    request = rfc3161.TimestampRequestBuilder(data, rfc3161.HashAlgorithm.SHA256, nonce=True,
                                              cert_req=True).build()
    pool = http or urllib3.PoolManager()
    try:
        answer = pool.request("POST", url, body=request.as_bytes(),
                              headers={"Content-Type": CONTENT_TYPE},
                              timeout=urllib3.Timeout(total=timeout), retries=False)
    except urllib3.exceptions.HTTPError as error:
        raise TimestampError(f"time-stamping authority {url} unreachable: {error}") from error
    if answer.status != 200:
        raise TimestampError(f"time-stamping authority {url} answered HTTP {answer.status}")
    try:
        response = rfc3161.decode_timestamp_response(answer.data)
    except ValueError as error:
        raise TimestampError(f"{url} did not answer with an RFC 3161 response: {error}") from error
    granted = (rfc3161.PKIStatus.GRANTED, rfc3161.PKIStatus.GRANTED_WITH_MODS)
    if rfc3161.PKIStatus(response.status) not in granted:
        raise TimestampError(f"time-stamping authority {url} refused: status "
                             f"{response.status} {' '.join(response.status_string)}")
    info = response.tst_info
    if info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampError(f"time-stamping authority {url} stamped other bytes")
    if info.nonce != request.nonce:
        raise TimestampError(f"time-stamping authority {url} answered another request (nonce)")
    return response.as_bytes()


def load_certificate_chain(path: str | Path) -> list[x509.Certificate]:
    """The TSA's chain, PEM, signing certificate first and root last (as TSAs serve it)."""
    try:
        certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise TimestampError(f"cannot read the TSA certificate chain {path}: {error}") from error
    return certificates


def verify_timestamp(token: bytes, data: bytes, chain: list[x509.Certificate]) -> datetime:
    """The genTime a valid token gives `data`; TimestampError when it does not hold (not
    granted, signature or chain invalid, or over other bytes)."""
    rfc3161 = _rfc3161_client()
    if not chain:
        raise TimestampError("no TSA certificate to verify time-stamps against")
    builder = rfc3161.VerifierBuilder(roots=[chain[-1]], intermediates=list(chain[1:-1]),
                              tsa_certificate=chain[0] if len(chain) > 1 else None)
    try:
        response = rfc3161.decode_timestamp_response(token)
        builder.build().verify_message(response, data)
    except (ValueError, rfc3161.VerificationError) as error:
        raise TimestampError(f"time-stamp token does not verify: {error}") from error
    return response.tst_info.gen_time


def _rfc3161_client() -> ModuleType:
    try:
        import rfc3161_client
    except ImportError as error:
        raise TimestampError("RFC 3161 time-stamps need the anchor extra: "
                             "pip install 'otel-ai-audit[anchor]'") from error
    return rfc3161_client
