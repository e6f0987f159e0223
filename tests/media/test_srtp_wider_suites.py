"""Known-answer tests for the wider SRTP suites (RFC 6188 AES-256 counter mode, RFC 7714 AEAD
AES-GCM): libsrtp's published vectors where it has them, and byte-for-byte agreement with the
pure-Python reference in ``support.srtp_reference`` (itself checked against those vectors)
where it does not (AEAD_AES_256_GCM, the _32 tag, SRTCP)."""

from __future__ import annotations

import struct

import pytest

from callxml.media.srtp import SrtpSession
from callxml.media.suites import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_256_CM_HMAC_SHA1_32,
    AES_256_CM_HMAC_SHA1_80,
    SUITES,
)
from support.srtp_reference import ReferenceGcm, ReferenceSrtp

# https://github.com/cisco/libsrtp/blob/main/test/srtp_driver.c: the plaintext every
# srtp_validate_*() protects (SSRC 0xcafebabe, SEQ 0x1234) and its RTCP counterpart.
RTP = bytes.fromhex("800f1234decafbadcafebabe" + "ab" * 16)
RTCP = bytes.fromhex("81c8000bcafebabe" + "ab" * 16)
# srtp_validate_aes_256(): aes_256_test_key -> srtp_ciphertext (AES-CM-256/HMAC-SHA-1-80)
AES_256_KEY = bytes.fromhex(
    "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b63b04803de51ee7c96423ab5b78d2"
)
AES_256_SRTP = bytes.fromhex(
    "800f1234decafbadcafebabef1d9de17ff251ff1aa007774b0b4b40da08d9d9a5b3a55d8873b"
)
# srtp_validate_gcm(): test_key_gcm -> srtp_ciphertext / srtcp_ciphertext (AEAD_AES_128_GCM)
GCM_128_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0fa0a1a2a3a4a5a6a7a8a9aaab")
GCM_128_SRTP = bytes.fromhex(
    "800f1234decafbadcafebabec5002ede04cfdd2eb91159e0880aa06ed2976826f796b201df3131a127e8a392"
)
GCM_128_SRTCP = bytes.fromhex(
    "81c8000bcafebabec98b8b5df0392a55852b6c21ac8e7025c52c6fbea2b3b446ea31123ba88ce61e80000001"
)


def test_aes_256_cm_hmac_sha1_80_known_answer() -> None:
    session = SrtpSession(AES_256_CM_HMAC_SHA1_80, our_key=AES_256_KEY, their_key=AES_256_KEY)
    assert bytes(session.protect(RTP)) == AES_256_SRTP
    assert bytes(session.unprotect(AES_256_SRTP) or b"") == RTP


def test_aead_aes_128_gcm_known_answer() -> None:
    session = SrtpSession(AEAD_AES_128_GCM, our_key=GCM_128_KEY, their_key=GCM_128_KEY)
    assert bytes(session.protect(RTP)) == GCM_128_SRTP
    assert bytes(session.protect_rtcp(RTCP)) == GCM_128_SRTCP
    assert bytes(session.unprotect(GCM_128_SRTP) or b"") == RTP
    assert session.unprotect_rtcp(GCM_128_SRTCP) == RTCP


def test_the_reference_agrees_with_the_published_vectors() -> None:
    """The oracle for the cases below first reproduces libsrtp's own vectors."""
    assert ReferenceSrtp(AES_256_KEY, key_octets=32).protect(RTP) == AES_256_SRTP
    gcm = ReferenceGcm(GCM_128_KEY)
    assert gcm.protect(RTP) == GCM_128_SRTP
    assert gcm.protect_rtcp(RTCP) == GCM_128_SRTCP


def _master(octets: int) -> bytes:
    return bytes((7 * i + 3) & 0xFF for i in range(octets))


@pytest.mark.parametrize("name", [AES_256_CM_HMAC_SHA1_80, AES_256_CM_HMAC_SHA1_32])
def test_aes_256_cm_matches_the_reference(name: str) -> None:
    suite = SUITES[name]
    master = _master(suite.key_salt_octets)
    ours = SrtpSession(name, our_key=master, their_key=master)
    reference = ReferenceSrtp(
        master, rtp_tag=suite.srtp_tag_octets, rtcp_tag=suite.srtcp_tag_octets, key_octets=32
    )
    for seq in (65534, 65535, 0, 1):  # across a rollover
        packet = struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 0x1234) + bytes(range(160))
        protected = reference.protect(packet)
        assert bytes(ours.protect(packet)) == protected
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    assert bytes(ours.protect_rtcp(rtcp)) == reference.protect_rtcp(rtcp)


@pytest.mark.parametrize("name", [AEAD_AES_128_GCM, AEAD_AES_256_GCM])
def test_aead_gcm_matches_the_reference(name: str) -> None:
    master = _master(SUITES[name].key_salt_octets)
    ours = SrtpSession(name, our_key=master, their_key=master)
    receiver = SrtpSession(name, our_key=None, their_key=master)
    reference = ReferenceGcm(master)
    for seq in (10, 11, 12):
        packet = struct.pack("!BBHII", 0x80, 8, seq, 160 * seq, 0xCAFE) + bytes(range(160))
        protected = reference.protect(packet)
        assert bytes(ours.protect(packet)) == protected
        assert len(protected) == len(packet) + SUITES[name].srtp_tag_octets
        assert bytes(receiver.unprotect(protected) or b"") == packet
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 0xCAFE)
    assert bytes(ours.protect_rtcp(rtcp)) == reference.protect_rtcp(rtcp)


@pytest.mark.parametrize(
    "name", [AES_256_CM_HMAC_SHA1_80, AES_256_CM_HMAC_SHA1_32, AEAD_AES_128_GCM, AEAD_AES_256_GCM]
)
def test_a_tampered_packet_is_dropped_and_counted(name: str) -> None:
    master = _master(SUITES[name].key_salt_octets)
    session = SrtpSession(name, our_key=master, their_key=master)
    protected = bytearray(session.protect(RTP))
    protected[-1] ^= 1
    assert session.unprotect(bytes(protected)) is None
    assert session.auth_failures == 1
