"""Unit tests for domain.token: format, generation, parsing and error hygiene."""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyledger.domain.token import (
    ALPHABET,
    CHECKSUM_LENGTH,
    DEFAULT_PREFIX,
    KEY_ID_LENGTH,
    SECRET_LENGTH,
    MalformedToken,
    ParsedToken,
    RandomBytes,
    checksum,
    format_token,
    generate,
    is_key_id,
    is_valid_prefix,
    new_key_id,
    new_secret,
    parse,
    start_length,
)

BASE62 = re.compile(r"[0-9A-Za-z]*")


def seeded(seed: int = 1) -> RandomBytes:
    """A deterministic random source."""
    return random.Random(seed).randbytes


def a_token(seed: int = 1, prefix: str = DEFAULT_PREFIX) -> str:
    return generate(seeded(seed), prefix)


def secret_of(token: str) -> str:
    body = token.partition("_")[2]
    return body[KEY_ID_LENGTH : KEY_ID_LENGTH + SECRET_LENGTH]


# --- constants and helpers -------------------------------------------------------------


def test_alphabet_is_base62_and_unique() -> None:
    assert len(ALPHABET) == 62
    assert len(set(ALPHABET)) == 62
    assert BASE62.fullmatch(ALPHABET)


@pytest.mark.parametrize("prefix", ["kl", "k", "a1", "abcdefghijklmnop", "sk0"])
def test_valid_prefixes(prefix: str) -> None:
    assert is_valid_prefix(prefix)


@pytest.mark.parametrize(
    "prefix",
    ["", "KL", "1kl", "k_l", "kl_", "abcdefghijklmnopq", "k-l", "kl ", "ķl", 3, None],
)
def test_invalid_prefixes(prefix: object) -> None:
    assert not is_valid_prefix(prefix)  # type: ignore[arg-type]


def test_is_key_id() -> None:
    assert is_key_id("aB3dE5gH7jK9")
    assert not is_key_id("aB3dE5gH7jK")  # 11 chars
    assert not is_key_id("aB3dE5gH7jK9x")  # 13 chars
    assert not is_key_id("aB3dE5gH7jK-")
    assert not is_key_id("aB3dE5gH7jKé")
    assert not is_key_id(12345678901)  # type: ignore[arg-type]


def test_checksum_is_padded_base62_crc32() -> None:
    key_id, secret = "0" * KEY_ID_LENGTH, "0" * SECRET_LENGTH
    value = checksum("kl", key_id, secret)
    assert len(value) == CHECKSUM_LENGTH
    decoded = 0
    for char in value:
        decoded = decoded * 62 + ALPHABET.index(char)
    assert decoded == zlib.crc32(f"kl_{key_id}{secret}".encode())


def test_checksum_pads_small_values_with_zero() -> None:
    # Find parts whose CRC32 is small enough to need padding.
    for n in range(100_000):
        key_id = f"{n:012d}"
        if zlib.crc32(f"kl_{key_id}{'0' * SECRET_LENGTH}".encode()) < 62**5:
            break
    value = checksum("kl", key_id, "0" * SECRET_LENGTH)
    assert len(value) == CHECKSUM_LENGTH
    assert value[0] == "0"


# --- generation --------------------------------------------------------------------------


def test_generated_token_shape() -> None:
    token = a_token()
    prefix, sep, body = token.partition("_")
    assert (prefix, sep) == ("kl", "_")
    assert len(body) == KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH == 50
    assert BASE62.fullmatch(body)


def test_round_trip() -> None:
    rng = seeded(7)
    key_id, secret = new_key_id(rng), new_secret(rng)
    token = format_token("kl", key_id, secret)
    parsed = parse(token)
    assert parsed == ParsedToken(prefix="kl", key_id=key_id, secret=secret)
    assert format_token(parsed.prefix, parsed.key_id, parsed.secret) == token


def test_start_is_token_prefix_without_most_of_secret() -> None:
    token = a_token(3)
    parsed = parse(token)
    start = parsed.start()
    assert token.startswith(start)
    assert start == f"kl_{parsed.key_id}{parsed.secret[:4]}"
    assert parsed.secret[4:] not in start


def test_deterministic_with_injected_randomness() -> None:
    assert a_token(42) == a_token(42)
    assert a_token(42) != a_token(43)


def test_rotation_keeps_key_id_and_changes_secret() -> None:
    original = parse(a_token(5))
    rotated = parse(generate(seeded(6), key_id=original.key_id))
    assert rotated.key_id == original.key_id
    assert rotated.secret != original.secret
    assert rotated.start() != original.start()


def test_rotation_rejects_invalid_key_id() -> None:
    with pytest.raises(ValueError):
        generate(seeded(), key_id="short")


def test_custom_prefix() -> None:
    token = a_token(prefix="acme")
    assert token.startswith("acme_")
    assert parse(token, expected_prefix="acme").prefix == "acme"
    with pytest.raises(MalformedToken):
        parse(token)  # default prefix "kl"
    with pytest.raises(MalformedToken):
        parse(a_token(), expected_prefix="acme")


@pytest.mark.parametrize("prefix", ["", "KL", "k_l", "1x", "x" * 17])
def test_generate_rejects_invalid_prefix(prefix: str) -> None:
    with pytest.raises(ValueError):
        generate(seeded(), prefix)


def test_format_token_validates_parts() -> None:
    key_id, secret = "a" * KEY_ID_LENGTH, "b" * SECRET_LENGTH
    format_token("kl", key_id, secret)
    for args in [
        ("KL", key_id, secret),
        ("kl", key_id[:-1], secret),
        ("kl", key_id, secret + "c"),
        ("kl", key_id, secret[:-1] + "-"),
    ]:
        with pytest.raises(ValueError):
            format_token(*args)


def test_parse_rejects_invalid_expected_prefix() -> None:
    with pytest.raises(ValueError):
        parse(a_token(), expected_prefix="KL")


# --- random sampling ------------------------------------------------------------------------


def test_new_key_id_and_secret_shape() -> None:
    rng = seeded(11)
    for _ in range(200):
        key_id, secret = new_key_id(rng), new_secret(rng)
        assert len(key_id) == KEY_ID_LENGTH and BASE62.fullmatch(key_id)
        assert len(secret) == SECRET_LENGTH and BASE62.fullmatch(secret)


def test_sampling_rejects_high_bytes_and_keeps_drawing() -> None:
    calls: list[int] = []

    def mostly_rejected(n: int) -> bytes:
        calls.append(n)
        # Many chunks of bytes >= 248 (all rejected) before any usable byte.
        if len(calls) <= 50:
            return bytes([248 + i % 8 for i in range(n)])
        return bytes([255, 61, 124, 186, 247, 0] * n)[:n]

    secret = new_secret(mostly_rejected)
    assert len(secret) == SECRET_LENGTH and BASE62.fullmatch(secret)
    assert len(calls) > 50
    # 61, 124, 186 and 247 all map to the last alphabet char; 0 to the first.
    assert set(secret) == {"z", "0"}


def test_sampling_uses_byte_mod_62() -> None:
    def counting(n: int) -> bytes:
        return bytes(range(n))

    assert new_key_id(counting) == ALPHABET[:KEY_ID_LENGTH]


def test_sampling_rejects_short_random_source() -> None:
    with pytest.raises(ValueError):
        new_secret(lambda n: b"")


def test_sampling_is_roughly_uniform() -> None:
    rng = seeded(99)
    counts = dict.fromkeys(ALPHABET, 0)
    for _ in range(2000):
        for char in new_secret(rng):
            counts[char] += 1
    expected = 2000 * SECRET_LENGTH / 62  # about 1032
    assert all(0.8 * expected < c < 1.2 * expected for c in counts.values())


# --- malformed input ------------------------------------------------------------------------


def assert_malformed(value: object, expected_prefix: str = DEFAULT_PREFIX) -> MalformedToken:
    with pytest.raises(MalformedToken) as info:
        parse(value, expected_prefix)  # type: ignore[arg-type]
    assert str(info.value) == info.value.reason
    return info.value


@pytest.mark.parametrize("value", ["", None, 0, 123, b"kl_abc", ["kl_"]])
def test_rejects_empty_and_non_strings(value: object) -> None:
    assert_malformed(value)


def test_rejects_structurally_wrong_tokens() -> None:
    token = a_token()
    body = token[3:]
    for value in [
        "kl_",
        "kl",
        "_" + body,
        "kl" + body,  # no underscore
        token + "a",  # one too many
        token[:-1],  # one too few
        "kl__" + body[1:],
        "kl_" + body[:20] + "_" + body[21:],
        "xx_" + body,
        "KL_" + body,
        "k1_" + body,  # homoglyph-ish prefix
    ]:
        assert_malformed(value)


@pytest.mark.parametrize("bad", ["-", "+", "/", " ", "é", "=", ".", "\x00", "\n"])
def test_rejects_chars_outside_alphabet(bad: str) -> None:
    token = a_token()
    for position in (3, 20, len(token) - 1):
        assert_malformed(token[:position] + bad + token[position + 1 :])


@pytest.mark.parametrize(
    "homoglyph",
    [
        "\u0430",  # Cyrillic a
        "\u0435",  # Cyrillic e
        "\u043e",  # Cyrillic o
        "\u0391",  # Greek Alpha
        "\uff10",  # fullwidth 0
        "\uff41",  # fullwidth a
        "\u0661",  # Arabic-Indic digit one
        "\u200b",  # zero-width space (inserted)
    ],
)
def test_rejects_unicode_homoglyphs(homoglyph: str) -> None:
    token = a_token()
    assert_malformed(token[:10] + homoglyph + token[11:])
    assert_malformed(token[:10] + homoglyph + token[10:])
    assert_malformed(homoglyph + token[1:])


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\r\n", "\u00a0"])
def test_rejects_surrounding_whitespace(space: str) -> None:
    token = a_token()
    assert_malformed(space + token)
    assert_malformed(token + space)


@pytest.mark.parametrize("seed", range(5))
def test_every_single_substitution_is_detected(seed: int) -> None:
    token = a_token(seed)
    parse(token)
    for position in range(3, len(token)):
        for char in ALPHABET:
            if char != token[position]:
                assert_malformed(token[:position] + char + token[position + 1 :])


@pytest.mark.parametrize("seed", range(20))
def test_adjacent_swaps_are_detected(seed: int) -> None:
    token = a_token(seed)
    for position in range(3, len(token) - 1):
        a, b = token[position], token[position + 1]
        if a != b:
            assert_malformed(token[:position] + b + a + token[position + 2 :])


def test_each_check_has_its_own_reason() -> None:
    token = a_token()
    body = token[3:]
    bad_checksum = token[:-1] + ("0" if token[-1] != "0" else "1")
    cases: dict[str, list[object]] = {
        "token must be a string": [None, 42],
        "token is empty": [""],
        "token is too long": ["x" * 201],
        "token contains non-ASCII characters": [token[:-1] + "é", "kl_é"],
        "token has no prefix separator": ["kl" + body],
        "token has an unexpected prefix": ["xx_" + body],
        "token has the wrong length": [token + "a", token[:-1], "kl_"],
        "token contains invalid characters": [token[:-1] + "-", "kl_" + "_" * 50],
        "token checksum does not match": [bad_checksum],
    }
    for reason, values in cases.items():
        for value in values:
            assert assert_malformed(value).reason == reason


def test_long_input_is_rejected_by_length_first() -> None:
    huge = "kl_" + "é" * 10_000  # also non-ASCII: length must be checked first
    assert assert_malformed(huge).reason == "token is too long"
    assert assert_malformed("a" * 201).reason == "token is too long"
    assert assert_malformed("x" * 10_000_000).reason == "token is too long"


# --- no secret leaks ---------------------------------------------------------------------------


def malformed_variants(token: str) -> Iterator[str]:
    yield token[:-1]
    yield token + "x"
    yield token[:-1] + ("0" if token[-1] != "0" else "1")  # bad checksum
    yield "xx" + token[2:]
    yield token.replace("_", "")
    yield token[:30] + "-" + token[31:]
    yield token[:30] + "é" + token[31:]
    yield " " + token
    yield token * 5  # too long


@pytest.mark.parametrize("seed", range(5))
def test_errors_never_contain_the_token(seed: int) -> None:
    token = a_token(seed)
    secret = secret_of(token)
    for variant in malformed_variants(token):
        error = assert_malformed(variant)
        for text in (str(error), repr(error), error.reason, *map(str, error.args)):
            assert secret not in text
            assert secret[:8] not in text
            assert secret[-8:] not in text
            assert token[3 : 3 + KEY_ID_LENGTH] not in text


def test_parsed_token_repr_hides_secret() -> None:
    parsed = parse(a_token(8))
    for text in (repr(parsed), str(parsed), f"{parsed}", f"{parsed!r}", repr([parsed])):
        assert parsed.secret not in text
        assert parsed.secret[:8] not in text
        assert "***" in text
        assert parsed.key_id in text
        assert parsed.prefix in text


def test_parsed_token_is_frozen() -> None:
    parsed = parse(a_token())
    with pytest.raises(AttributeError):
        parsed.secret = "x"  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------

alphabet_text = st.text(alphabet=ALPHABET, min_size=0, max_size=60)
valid_tokens = st.builds(
    lambda seed, prefix: generate(random.Random(seed).randbytes, prefix),
    st.integers(min_value=0, max_value=2**32),
    st.just(DEFAULT_PREFIX),
)


@st.composite
def mutated_tokens(draw: st.DrawFn) -> str:
    token = draw(valid_tokens)
    position = draw(st.integers(min_value=0, max_value=len(token)))
    cut = draw(st.integers(min_value=0, max_value=2))
    insert = draw(st.text(max_size=3))
    return token[:position] + insert + token[position + cut :]


@given(
    st.one_of(
        st.text(),
        st.text(max_size=300),
        st.builds(lambda body: "kl_" + body, alphabet_text),
        valid_tokens,
        mutated_tokens(),
    )
)
def test_parse_returns_exact_token_or_raises_malformed(value: str) -> None:
    try:
        parsed = parse(value)
    except MalformedToken:
        return
    assert format_token(parsed.prefix, parsed.key_id, parsed.secret) == value


@given(st.binary(min_size=0, max_size=200), st.sampled_from(["kl", "acme", "a", "sk9x"]))
def test_generate_parse_round_trip(seed_bytes: bytes, prefix: str) -> None:
    rng = random.Random(seed_bytes).randbytes
    token = generate(rng, prefix)
    parsed = parse(token, expected_prefix=prefix)
    assert format_token(parsed.prefix, parsed.key_id, parsed.secret) == token
    assert token.startswith(parsed.start())


@pytest.mark.parametrize("prefix", ["kl", "a", "acme2024", "p" * 16])
def test_start_length_follows_the_configured_prefix(prefix: str) -> None:
    parsed = parse(generate(seeded(3), prefix), prefix)
    assert len(parsed.start()) == start_length(prefix)
