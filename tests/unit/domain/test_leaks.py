"""Finding tokens in text: only checksum-valid ones, with their line and start; feedback never holds a token."""

import secrets

from keyledger.domain import token
from keyledger.domain.leaks import feedback, find_tokens, parse_reported, prefixes_for, token_hash


def make(prefix: str = "kl") -> str:
    return token.generate(secrets.token_bytes, prefix)


def look_alike(real: str) -> str:
    """``real`` with its checksum changed: the same shape, no token."""
    last = real[-1]
    return real[:-1] + ("A" if last != "A" else "B")


def test_finds_keys_and_credentials_with_their_lines_and_ignores_look_alikes() -> None:
    key, credential, other = make(), make("klvc"), make()
    text = (f"first line\nAPI_KEY={key}\n# {look_alike(other)}\n"
            f"x = '{credential}' and again {key}\nsk_live_{'a' * 50}\n")
    found = list(find_tokens(text))
    assert [(f.line, f.kind, f.token) for f in found] == [(2, "key", key), (4, "verify_credential", credential),
                                                          (4, "key", key)]
    assert found[0].start == key[:len("kl_") + 16] and found[0].key_id == key[3:15]
    assert key not in repr(found[0]) and key not in str(found)


def test_a_token_glued_to_other_characters_is_still_found() -> None:
    key = make()
    assert [f.token for f in find_tokens(f"Bearer%20{key}xyz")] == [key]


def test_other_prefixes_only_when_asked() -> None:
    key = make("acme")
    assert list(find_tokens(f"k={key}")) == []
    assert [f.token for f in find_tokens(f"k={key}", prefixes_for("acme"))] == [key]


def test_reported_strings_are_parsed_without_lookups() -> None:
    key, credential = make(), make("klvc")
    assert parse_reported(key, "kl") is not None and parse_reported(credential, "kl") is not None
    assert parse_reported(look_alike(key), "kl") is None
    assert parse_reported("ghp_" + "a" * 36, "kl") is None and parse_reported(make("acme"), "kl") is None


def test_feedback_names_the_hash_never_the_token() -> None:
    key = make()
    entry = feedback(key, "keyledger_api_key", True)
    assert entry == {"token_hash": token_hash(key), "token_type": "keyledger_api_key", "label": "true_positive"}
    assert key not in str(entry) and len(entry["token_hash"]) == 64
    assert feedback(key, "t", False)["label"] == "false_positive"
