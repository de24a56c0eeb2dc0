"""Ed25519 keys for audit export manifests: the server's private key signs, anyone checks with its public key.

A manifest's signature is Ed25519 over the manifest's canonical JSON without its ``signature`` field
(compact, keys sorted: :func:`signed_bytes`), written as standard base64. A key is named by
``key_id`` = ``"ed25519:"`` + the first 16 hex digits of SHA-256(raw 32-byte public key), so anyone
holding the public key can compute the id and every replica using one key names it alike.

Nothing here ever prints a private key: :class:`SigningKey`'s repr shows its id only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
_sorted_json = msgspec.json.Encoder(order="sorted")
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def key_id_for(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    """What a manifest's signature covers: the manifest without ``signature``, as compact sorted JSON."""
    return _sorted_json.encode({name: value for name, value in manifest.items() if name != "signature"})


class PublicKey:
    """An Ed25519 public key: checks manifest signatures."""

    __slots__ = ("_key", "raw", "key_id")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self._key = Ed25519PublicKey.from_public_bytes(raw)
        self.raw = raw
        self.key_id = key_id_for(raw)

    @property
    def base64(self) -> str:
        """The raw 32 bytes in standard base64 (as ``GET /v1/audit/public-key`` serves it)."""
        return base64.b64encode(self.raw).decode()

    def verify(self, manifest: Mapping[str, Any]) -> bool:
        """Whether ``manifest["signature"]`` is this key's signature of the rest of ``manifest``."""
        signature = manifest.get("signature")
        if not isinstance(signature, str):
            return False
        try:
            self._key.verify(base64.b64decode(signature, validate=True), signed_bytes(manifest))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id})"

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """A public key written as base64 of its 32 raw bytes, as PEM (``-----BEGIN PUBLIC KEY-----``), or as
        the JSON answer of ``GET /v1/audit/public-key`` (whose ``key_id``, if any, must match the key).
        Raises ValueError naming what is wrong."""
        text = text.strip()
        if text.startswith("{"):
            try:
                answer = msgspec.json.decode(text.encode(), type=dict[str, Any])
            except msgspec.DecodeError:
                raise ValueError("not valid JSON") from None
            if answer.get("algorithm", ALGORITHM) != ALGORITHM or not isinstance(answer.get("public_key"), str):
                raise ValueError(f"expected {{\"algorithm\": \"{ALGORITHM}\", \"public_key\": <base64>}}")
            key = cls.parse(answer["public_key"])
            if answer.get("key_id", key.key_id) != key.key_id:
                raise ValueError(f"its key_id {answer['key_id']!r} is not the id of its public key ({key.key_id})")
            return key
        if text.startswith("-----BEGIN"):
            try:
                loaded = serialization.load_pem_public_key(text.encode())
            except ValueError:
                raise ValueError("not a PEM public key") from None
            if not isinstance(loaded, Ed25519PublicKey):
                raise ValueError(f"not an {ALGORITHM} public key")
            return cls(loaded.public_bytes(*_RAW))
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        if len(raw) != 32:
            raise ValueError(f"an {ALGORITHM} public key is 32 bytes; this is {len(raw)}")
        return cls(raw)


class SigningKey:
    """An Ed25519 private key that signs manifests. Its repr shows the key id only."""

    __slots__ = ("_private", "public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = PublicKey(private.public_key().public_bytes(*_RAW))

    @property
    def key_id(self) -> str:
        return self.public.key_id

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose 32-byte private seed is ``seed``."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_base64(cls, text: str) -> SigningKey:
        """The key written as base64 of its 32-byte seed (``KEYLEDGER_AUDIT_SIGNING_KEY``). The error never
        repeats the text."""
        try:
            return cls.from_seed(base64.b64decode(text.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("not the base64 of a 32-byte Ed25519 private key") from None

    def seed(self) -> bytes:
        """The 32-byte private seed, to store it (never to show it)."""
        return self._private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())

    def sign(self, manifest: Mapping[str, Any]) -> str:
        """The base64 signature of ``manifest`` (its ``signature`` field, if any, left out)."""
        return base64.b64encode(self._private.sign(signed_bytes(manifest))).decode()

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id})"
