"""The one SRTP suite table (callxml.media.suites): its wire facts, and libsrtp agreeing with them
for every suite we run."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pylibsrtp
import pytest

from callxml.errors import MediaError
from callxml.media import srtp, suites
from callxml.media.srtp import PROFILES, SrtpSession, generate_key_salt, get_suite
from callxml.media.suites import SUITE_ALIASES, SUITES, lookup

_lib = pytest.importorskip("pylibsrtp._binding").lib


@pytest.mark.parametrize(
    ("name", "key", "salt", "srtp_tag", "srtcp_tag", "profile"),
    [
        ("AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 10, 1),
        ("AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 10, 2),  # RFC 4568 §6.2.2: SRTCP keeps 80 bits
        ("F8_128_HMAC_SHA1_80", 16, 14, 10, 10, None),
        ("AES_192_CM_HMAC_SHA1_80", 24, 14, 10, 10, None),
        ("AES_192_CM_HMAC_SHA1_32", 24, 14, 4, 10, None),
        ("AES_256_CM_HMAC_SHA1_80", 32, 14, 10, 10, None),
        ("AES_256_CM_HMAC_SHA1_32", 32, 14, 4, 10, None),
        ("AEAD_AES_128_GCM", 16, 12, 16, 16, 7),
        ("AEAD_AES_256_GCM", 32, 12, 16, 16, 8),
        ("AEAD_AES_128_GCM_8", 16, 12, 8, 8, None),
        ("AEAD_AES_256_GCM_8", 32, 12, 8, 8, None),
        ("AES_CM_128_NULL_AUTH", 16, 14, 0, 0, None),
    ],
)
def test_suite_table(
    name: str, key: int, salt: int, srtp_tag: int, srtcp_tag: int, profile: int | None
) -> None:
    suite = SUITES[name]
    assert (suite.key_octets, suite.salt_octets) == (key, salt)
    assert (suite.srtp_tag_octets, suite.srtcp_tag_octets) == (srtp_tag, srtcp_tag)
    assert suite.dtls_srtp_profile == profile
    assert suite.key_salt_octets == key + salt
    assert suite.rfc
    assert lookup(name) is suite


def test_aliases_name_the_rfc_6188_suites() -> None:
    assert SUITE_ALIASES == {
        "AES_CM_192_HMAC_SHA1_80": "AES_192_CM_HMAC_SHA1_80",
        "AES_CM_192_HMAC_SHA1_32": "AES_192_CM_HMAC_SHA1_32",
        "AES_CM_256_HMAC_SHA1_80": "AES_256_CM_HMAC_SHA1_80",
        "AES_CM_256_HMAC_SHA1_32": "AES_256_CM_HMAC_SHA1_32",
    }
    for alias, name in SUITE_ALIASES.items():
        assert lookup(alias) is SUITES[name]
    assert lookup("aes_cm_128_hmac_sha1_80") is None  # exact: case is SDES's business
    assert lookup("ROT13_HMAC_MD5") is None


def test_suites_is_a_pure_leaf() -> None:
    """The table must import nothing of ours and not pylibsrtp: SDP and SRTP both import it."""
    tree = ast.parse(Path(suites.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "dataclasses"}


# -- the table against libsrtp -----------------------------------------------------------------


NUMBERED = sorted(name for name, suite in SUITES.items() if suite.dtls_srtp_profile is not None)


def test_the_numbered_suites() -> None:
    assert NUMBERED == [
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
        "AES_CM_128_HMAC_SHA1_32",
        "AES_CM_128_HMAC_SHA1_80",
    ]


@pytest.mark.parametrize("name", NUMBERED)
def test_libsrtp_profiles_have_the_table_s_key_and_salt(name: str) -> None:
    """Where IANA numbered a suite as a DTLS-SRTP profile, libsrtp's profile of that number takes
    the master key and salt lengths the table gives."""
    suite = SUITES[name]
    profile = suite.dtls_srtp_profile
    assert profile is not None
    assert _lib.srtp_profile_get_master_key_length(profile) == suite.key_octets
    assert _lib.srtp_profile_get_master_salt_length(profile) == suite.salt_octets


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_suite_we_run_agrees_with_libsrtp(name: str) -> None:
    """The runnable suites: the pylibsrtp profile we hand libsrtp is the table's number, takes
    the table's key ‖ salt, and adds the table's SRTP and SRTCP tags to what it protects."""
    suite = get_suite(name)
    assert suite is SUITES[name]
    if suite.dtls_srtp_profile is not None:
        assert PROFILES[name] == suite.dtls_srtp_profile
        assert _lib.srtp_profile_get_master_key_length(PROFILES[name]) == suite.key_octets
        assert _lib.srtp_profile_get_master_salt_length(PROFILES[name]) == suite.salt_octets
    key = generate_key_salt(name)
    assert len(key) == suite.key_salt_octets
    session = SrtpSession(name, our_key=key, their_key=key)
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 42) + bytes(160)
    assert len(session.protect(rtp)) == len(rtp) + suite.srtp_tag_octets
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 42)  # an empty receiver report
    srtcp = session.protect_rtcp(rtcp)
    assert len(srtcp) == len(rtcp) + 4 + suite.srtcp_tag_octets  # E flag + index, then the tag
    assert session.unprotect_rtcp(srtcp) == rtcp
    if suite.dtls_srtp_profile is not None:
        policy = pylibsrtp.Policy(key=key, srtp_profile=PROFILES[name])
        assert policy.srtp_profile == suite.dtls_srtp_profile


def test_only_the_runnable_suites_open_a_session() -> None:
    assert set(PROFILES) == {
        suites.AES_CM_128_HMAC_SHA1_80,
        suites.AES_CM_128_HMAC_SHA1_32,
        suites.AES_256_CM_HMAC_SHA1_80,  # RFC 6188
        suites.AES_256_CM_HMAC_SHA1_32,
        suites.AEAD_AES_128_GCM,  # RFC 7714
        suites.AEAD_AES_256_GCM,
    }
    assert srtp.DEFAULT_SUITE == suites.AES_CM_128_HMAC_SHA1_80
    for name in sorted(set(SUITES) - set(PROFILES)):
        with pytest.raises(MediaError):
            SrtpSession(name, our_key=bytes(SUITES[name].key_salt_octets), their_key=None)
