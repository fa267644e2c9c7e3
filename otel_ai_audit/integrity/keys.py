"""Ed25519 signing keys for checkpoints, and the set of public keys a verifier trusts.

Private keys are PKCS#8 PEM, public keys SubjectPublicKeyInfo PEM. A key id is the SHA-256
fingerprint (hex) of the DER SubjectPublicKeyInfo, so a key id cannot be claimed by another key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from otel_ai_audit.errors import KeyFileError as KeyFileError


def key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """A private key with its public half and key id."""

    private_key: Ed25519PrivateKey

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @cached_property
    def key_id(self) -> str:
        """Computed once: the writer compares it on every commit."""
        return key_id(self.public_key)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise KeyFileError(f"cannot read signing key {path}: {error.strerror}") from error
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise KeyFileError(
                f"{path} is not an unencrypted PKCS#8 PEM private key: {error}") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def save(self, private_path: str | os.PathLike[str],
             public_path: str | os.PathLike[str]) -> None:
        """Write the pair; the private key file is created with mode 0600 and never overwritten."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        Path(public_path).write_text(self.public_pem)


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


_PEM_BLOCK_END = "-----END PUBLIC KEY-----"


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Ed25519PublicKey]:
    """Public keys from PEM files; a file may hold several keys (a trust file)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise KeyFileError(f"cannot read public key {path}: {error.strerror}") from error
        blocks = [block + _PEM_BLOCK_END for block in text.split(_PEM_BLOCK_END) if
                  "-----BEGIN PUBLIC KEY-----" in block]
        if not blocks:
            raise KeyFileError(f"{path} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
        for block in blocks:
            try:
                key = load_public_key_pem(block[block.index("-----BEGIN PUBLIC KEY-----"):])
            except ValueError as error:
                raise KeyFileError(f"{path}: unreadable public key: {error}") from error
            keys[key_id(key)] = key
    return keys
