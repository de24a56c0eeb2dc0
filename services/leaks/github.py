"""GitHub's secret-scanning partner signatures: an ECDSA P-256 signature (SHA-256, base64 ASN.1 DER) over the
raw request body, by one of the public keys GitHub publishes as ``{"public_keys": [{"key_identifier", "key",
"is_current"}]}``.

The keys come from ``KEYLEDGER_LEAK_GITHUB_KEYS_FILE`` (a saved copy; then nothing is fetched) or else from
``KEYLEDGER_LEAK_GITHUB_KEYS_URL``, fetched only when a report names an identifier not yet known (never at
start-up), at most once a minute, so made-up identifiers cannot make the service fetch in a loop.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

log = logging.getLogger("keyledger.leaks")

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
IDENTIFIER_HEADER, SIGNATURE_HEADER = "Github-Public-Key-Identifier", "Github-Public-Key-Signature"
_REFRESH_SECONDS = 60.0  # the least time between two reads of the keys for an unknown identifier


class PublicKey(msgspec.Struct, frozen=True):
    """One published key, as GitHub lists it."""

    key_identifier: str
    key: str
    is_current: bool = False


class PublicKeys(msgspec.Struct, frozen=True):
    """GitHub's published keys document."""

    public_keys: list[PublicKey]


def parse_keys(document: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """The P-256 keys of a keys document by identifier (other keys are skipped); ValueError when it is not one."""
    try:
        listed = msgspec.json.decode(document, type=PublicKeys).public_keys
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a public keys document: {exc}") from None
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in listed:
        try:
            key = load_pem_public_key(entry.key.encode())
        except ValueError:
            log.warning("GitHub public key %s is no PEM public key: skipped", entry.key_identifier[:80])
            continue
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys[entry.key_identifier] = key
        else:
            log.warning("GitHub public key %s is not ECDSA P-256: skipped", entry.key_identifier[:80])
    return keys


async def fetch_url(url: str) -> bytes:
    """GET ``url`` (the published keys), 10 seconds at most."""
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        response = await client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        return response.content


class GitHubKeys:
    """Checks report signatures against GitHub's published keys, (re)reading them only for an unknown
    identifier."""

    def __init__(self, keys_file: str | None, keys_url: str = GITHUB_KEYS_URL,
                 fetch: Callable[[str], Awaitable[bytes]] = fetch_url,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._file, self._url, self._fetch, self._monotonic = keys_file, keys_url, fetch, monotonic
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._read_at: float | None = None

    async def verify(self, identifier: str | None, signature: str | None, body: bytes) -> bool:
        """Whether ``signature`` (base64 DER) over ``body`` is by the published key ``identifier``."""
        if not identifier or not signature:
            return False
        try:
            der = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        key = self._keys.get(identifier)
        if key is None:
            await self._refresh()
            key = self._keys.get(identifier)
        if key is None:
            return False
        try:
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    async def _refresh(self) -> None:
        now = self._monotonic()
        if self._read_at is not None and now - self._read_at < _REFRESH_SECONDS:
            return
        self._read_at = now
        try:
            document = Path(self._file).read_bytes() if self._file else await self._fetch(self._url)
            self._keys = parse_keys(document)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            log.warning("cannot read GitHub's secret-scanning public keys from %s: %s", self._file or self._url, exc)
