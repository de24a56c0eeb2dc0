"""GitHub's signatures: checked against the published keys, which are read only for an identifier not yet known
(never up front), at most once a minute, from the file when one is set and else from the URL."""

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from keyledger.services.leaks.github import GitHubKeys, parse_keys

BODY = b'[{"token":"x","type":"t","url":"u","source":"content"}]'


def pem(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def document(**keys: str) -> bytes:
    return json.dumps({"public_keys": [{"key_identifier": k, "key": v, "is_current": True}
                                       for k, v in keys.items()]}).encode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes = BODY) -> str:
    return base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


class Fetcher:
    def __init__(self, served: bytes) -> None:
        self.served, self.urls = served, list[str]()

    async def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.served


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_url_is_fetched_only_for_an_unknown_identifier_and_at_most_once_a_minute() -> None:
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    fetch, clock = Fetcher(document(one=pem(first))), Clock()
    keys = GitHubKeys(None, "https://keys.example/k", fetch=fetch, monotonic=clock)
    assert fetch.urls == []  # nothing up front
    assert await keys.verify("one", sign(first), BODY)
    assert await keys.verify("one", sign(first), BODY) and fetch.urls == ["https://keys.example/k"]
    assert not await keys.verify("one", sign(first), BODY + b" ")  # another body
    assert not await keys.verify("one", sign(second), BODY)  # another key
    fetch.served = document(one=pem(first), two=pem(second))
    assert not await keys.verify("two", sign(second), BODY)  # unknown, but the keys were read a moment ago
    clock.now += 61
    assert await keys.verify("two", sign(second), BODY) and len(fetch.urls) == 2
    for _ in range(5):
        assert not await keys.verify("made-up", sign(second), BODY)
    assert len(fetch.urls) == 2  # made-up identifiers cannot make it fetch in a loop


async def test_a_keys_file_is_read_and_nothing_is_fetched(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "keys.json"
    path.write_bytes(document(one=pem(private)))
    fetch = Fetcher(b"")
    keys = GitHubKeys(str(path), fetch=fetch)
    assert await keys.verify("one", sign(private), BODY)
    assert not await keys.verify("other", sign(private), BODY)
    assert fetch.urls == []


async def test_missing_or_malformed_headers_are_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    keys = GitHubKeys(None, fetch=Fetcher(document(one=pem(private))))
    for identifier, signature in ((None, sign(private)), ("one", None), ("one", ""), ("one", "not base64!"),
                                  ("one", base64.b64encode(b"garbage").decode())):
        assert not await keys.verify(identifier, signature, BODY)


def test_only_p256_keys_are_taken() -> None:
    p384, edwards = ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    assert set(parse_keys(document(a=pem(p384), b=pem(edwards), c=pem(p256), d="not a key"))) == {"c"}
