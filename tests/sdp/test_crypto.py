"""SDES ``a=crypto`` (RFC 4568 §9): parse/format, suite names as SDES spells them, key hygiene.

The suite table itself (sizes, and its agreement with libsrtp) is tested in
``tests/media/test_suites.py``."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml import sdp
from callxml.media import suites
from callxml.sdp.crypto import (
    SUITE_ALIASES,
    SUITES,
    CryptoAttribute,
    InvalidCrypto,
    KeyParam,
    find_suite,
    new_crypto,
    parse_crypto,
    redact,
)
from callxml.sdp.session import SessionDescription

FIXTURES = Path(__file__).parent / "fixtures"


def test_rfc_4568_example_with_lifetime_and_mki() -> None:
    # RFC 4568 §4 / §9.1 example line.
    value = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
    crypto = parse_crypto(value)
    assert crypto.tag == 1
    assert crypto.suite == "AES_CM_128_HMAC_SHA1_80"
    (kp,) = crypto.key_params
    material = base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert (kp.key, kp.salt) == (material[:16], material[16:])
    assert kp.keying_material() == material
    assert kp.lifetime == "2^20"
    assert kp.lifetime_packets == 2**20
    assert (kp.mki, kp.mki_length) == (1, 4)
    assert crypto.has_mki
    assert str(crypto) == value


def test_several_key_params_and_session_params() -> None:
    # RFC 4568 §9.1: key-params separated by ';', session-params after a space.
    value = (
        "7 AES_CM_128_HMAC_SHA1_32 "
        "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32;"
        "inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:32 KDR=23 FEC_ORDER=FEC_SRTP"
    )
    crypto = parse_crypto(value)
    assert crypto.tag == 7
    assert [kp.mki for kp in crypto.key_params] == [1, 2]
    assert crypto.session_params == ("KDR=23", "FEC_ORDER=FEC_SRTP")
    assert str(crypto) == value


def test_decimal_lifetime() -> None:
    crypto = parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000"
    )
    assert crypto.key_params[0].lifetime_packets == 1000
    assert crypto.key_params[0].mki is None


def test_every_carrier_suite_parses_with_its_sizes() -> None:
    sd = SessionDescription.parse((FIXTURES / "carrier_offer_9_suites.sdp").read_bytes())
    lines = [parse_crypto(v) for v in sd.media[0].attributes_named("crypto")]
    sizes = {c.suite: (len(c.key_params[0].key), len(c.key_params[0].salt)) for c in lines}
    assert sizes == {
        "AEAD_AES_256_GCM_8": (32, 12),
        "AEAD_AES_128_GCM_8": (16, 12),
        "AES_256_CM_HMAC_SHA1_80": (32, 14),
        "AES_192_CM_HMAC_SHA1_80": (24, 14),
        "AES_CM_128_HMAC_SHA1_80": (16, 14),
        "AES_256_CM_HMAC_SHA1_32": (32, 14),
        "AES_192_CM_HMAC_SHA1_32": (24, 14),
        "AES_CM_128_HMAC_SHA1_32": (16, 14),
        "AES_CM_128_NULL_AUTH": (16, 14),
    }
    assert [c.tag for c in lines] == list(range(1, 10))
    for crypto, value in zip(lines, sd.media[0].attributes_named("crypto"), strict=True):
        assert str(crypto) == value  # padded base64 written back as it was


def test_the_suite_table_is_the_media_one() -> None:
    """One table: what SDP checks keys against is what SRTP sizes its keys from."""
    assert SUITES is suites.SUITES and SUITE_ALIASES is suites.SUITE_ALIASES
    assert sdp.SUITES is suites.SUITES and sdp.SrtpSuite is suites.SrtpSuite


def test_both_spellings_and_any_case_find_the_same_suite() -> None:
    assert set(SUITE_ALIASES) == {
        "AES_CM_192_HMAC_SHA1_80",
        "AES_CM_192_HMAC_SHA1_32",
        "AES_CM_256_HMAC_SHA1_80",
        "AES_CM_256_HMAC_SHA1_32",
    }
    for alias, name in SUITE_ALIASES.items():
        assert find_suite(alias) is SUITES[name]
        assert find_suite(alias.lower()) is SUITES[name]
    assert find_suite("aes_cm_128_hmac_sha1_80") is SUITES["AES_CM_128_HMAC_SHA1_80"]
    assert find_suite("ROT13_HMAC_MD5") is None


@pytest.mark.parametrize("name", sorted(SUITES))
def test_inline_key_length_follows_the_table(name: str) -> None:
    """Every suite's ``inline:`` key must be exactly its key ‖ salt, split where the table says."""
    suite = SUITES[name]
    material = bytes(range(suite.key_salt_octets))
    crypto = parse_crypto(f"1 {name} inline:" + base64.b64encode(material).decode())
    assert crypto.key_params[0].key == material[: suite.key_octets]
    assert crypto.key_params[0].salt == material[suite.key_octets :]
    short = base64.b64encode(material[:-1]).decode()
    with pytest.raises(InvalidCrypto, match=f"needs {suite.key_salt_octets} bytes"):
        parse_crypto(f"1 {name} inline:{short}")


def test_unpadded_base64_is_accepted() -> None:
    padded = "1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(range(46))).decode()
    assert padded.endswith("==")
    a = parse_crypto(padded)
    b = parse_crypto(padded.rstrip("="))
    assert a == b
    assert a.keying_material() == bytes(range(46))
    assert str(b) == padded  # written back padded (RFC 4648)


def test_unknown_suite_keeps_the_material_whole() -> None:
    crypto = parse_crypto("3 SOME_FUTURE_SUITE inline:AAECAwQF")
    assert crypto.suite_info is None
    assert crypto.key_params[0].key == bytes(range(6))
    assert crypto.key_params[0].salt == b""
    assert str(crypto) == "3 SOME_FUTURE_SUITE inline:AAECAwQF"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "tag"),
        (
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "tag",
        ),
        ("1 AES-CM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "suite name"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key", "not inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:A", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQF", "needs 30 bytes"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|256:1", "MKI"),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:4|2^20",
            "bad",
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99", "large"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|x", "bad"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1|2|3", "many"),
        ("1 AES_CM_128_HMAC_SHA1_80 " + ";".join(["inline:AAAA"] * 17), "too many"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA " + "X " * 2000, "too long"),
    ],
)
def test_malformed_crypto_is_refused(value: str, message: str) -> None:
    with pytest.raises(InvalidCrypto, match=message) as info:
        parse_crypto(value)
    assert "PS1uQCVe" not in str(info.value)


def test_new_crypto_is_fresh_and_well_formed() -> None:
    a, b = new_crypto(), new_crypto()
    assert a.keying_material() != b.keying_material()
    text = str(a)
    assert text.startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
    encoded = text.split("inline:")[1]
    assert len(encoded) == 40 and "|" not in encoded
    assert parse_crypto(text) == a


def test_new_crypto_uses_the_given_randomness() -> None:
    crypto = new_crypto(4, "AES_CM_128_HMAC_SHA1_32", random_bytes=lambda n: bytes(range(n)))
    assert crypto.tag == 4
    assert crypto.key_params == (KeyParam(bytes(range(16)), bytes(range(16, 30))),)
    with pytest.raises(ValueError):
        new_crypto(suite="NOPE")
    with pytest.raises(ValueError):
        new_crypto(random_bytes=lambda n: b"short")


def test_keys_never_in_repr_and_redact_scrubs_text() -> None:
    crypto = new_crypto()
    encoded = str(crypto).split("inline:")[1]
    assert encoded not in repr(crypto)
    assert crypto.key_params[0].key.hex() not in repr(crypto)
    assert repr(crypto.key_params[0].key) not in repr(crypto)
    line = f"a=crypto:{crypto}|2^31"
    assert redact(line) == "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>|2^31"


def test_crypto_attribute_equality_includes_keys() -> None:
    a = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(b"k" * 16, b"s" * 14),))
    b = CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(b"K" * 16, b"s" * 14),))
    assert a != b


_piece = st.sampled_from(
    [
        "1",
        "9",
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_256_HMAC_SHA1_32",
        "inline:",
        "|",
        ":",
        ";",
        "2^",
        "20",
        " ",
        "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        "=",
        "KDR=1",
        "x",
    ]
)


@given(st.lists(_piece, max_size=20).map("".join) | st.text(max_size=80))
def test_random_crypto_values_parse_or_fail_cleanly(value: str) -> None:
    try:
        crypto = parse_crypto(value)
    except InvalidCrypto:
        return
    assert parse_crypto(str(crypto)) == crypto
