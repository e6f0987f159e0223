"""SRTP/SRTCP: RFC 3711 Appendix B vectors, known-answer packets, replay/tamper drops, and a
byte-for-byte comparison of libsrtp (through our wrapper) with a pure-Python reference."""

from __future__ import annotations

import base64
import json
import logging
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from callxml.errors import MediaError
from callxml.media.srtp import PROFILES, SrtpSession, generate_key_salt, get_suite
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80, SUITES
from support.srtp_reference import ReferenceSrtp, aes_cm, derive

FIXTURES = Path(__file__).parent / "fixtures"
# Known-answer packets; each case names its public source (libsrtp srtp_driver.c, pion/srtp
# srtp_test.go, FFmpeg libavformat/tests/srtp.c).
PACKETS: list[dict[str, Any]] = json.loads((FIXTURES / "srtp_packets.json").read_text())["cases"]
# RFC 3711 Appendix B.2 and B.3, transcribed from https://www.rfc-editor.org/rfc/rfc3711
VECTORS: dict[str, Any] = json.loads((FIXTURES / "rfc3711_vectors.json").read_text())


def _master(case: dict[str, Any]) -> bytes:
    if "master_key_and_salt" in case:
        return bytes.fromhex(case["master_key_and_salt"])
    return base64.b64decode(case["master_key_and_salt_b64"])


def _suite(case: dict[str, Any]) -> str:
    name: str = case["suite"]
    return "AES_CM_128_HMAC_SHA1_32" if name.startswith("SRTP_AES128_CM_HMAC_SHA1_32") else name


def _rtp(seq: int, ts: int, ssrc: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + payload


# -- RFC 3711 Appendix B --------------------------------------------------------------------


def test_rfc3711_b2_aes_cm_keystream() -> None:
    """B.2: the keystream for SSRC 0, SEQ 0, ROC 0 under the printed session key and salt."""
    b2 = VECTORS["B.2_aes_cm_keystream"]
    key = bytes.fromhex(b2["session_key"])
    iv = int(b2["session_salt_14_octets"], 16) << 16
    stream = aes_cm(key, iv, bytes(16 * 65536))
    for block in b2["blocks"]:
        n = int(block["counter"], 16) - iv
        assert stream[16 * n : 16 * n + 16].hex().upper() == block["keystream"]


@pytest.mark.parametrize("step", VECTORS["B.3_key_derivation"]["steps"], ids=lambda s: s["name"])
def test_rfc3711_b3_key_derivation(step: dict[str, Any]) -> None:
    b3 = VECTORS["B.3_key_derivation"]
    key, salt = bytes.fromhex(b3["master_key"]), bytes.fromhex(b3["master_salt"])
    expected = bytes.fromhex(step["output"])
    assert derive(key, salt, step["label"], len(expected)) == expected


@pytest.mark.parametrize(
    "case",
    [c for c in VECTORS["kdf_extra_nist_acvp"]["cases"] if c["label"] < 3],
    ids=lambda c: f"{c['id']}-label{c['label']}",
)
def test_key_derivation_with_rate(case: dict[str, Any]) -> None:
    """NIST ACVP SRTP KDF cases with a non-zero key derivation rate (RTP labels only)."""
    key, salt = bytes.fromhex(case["master_key"]), bytes.fromhex(case["master_salt"])
    expected = bytes.fromhex(case["output"])
    got = derive(key, salt, case["label"], len(expected), int(case["index"], 16), case["kdr"])
    assert got == expected


def test_libsrtp_uses_the_b3_session_keys() -> None:
    """libsrtp with the B.3 master key protects exactly as the reference with derived keys."""
    b3 = VECTORS["B.3_key_derivation"]
    master = bytes.fromhex(b3["master_key"] + b3["master_salt"])
    packet = _rtp(0x1234, 0xDECAFBAD, 0xCAFEBABE, bytes(range(64)))
    ours = SrtpSession("AES_CM_128_HMAC_SHA1_80", our_key=master, their_key=None)
    assert ours.protect(packet) == ReferenceSrtp(master).protect(packet)


# -- known-answer packets -------------------------------------------------------------------


@pytest.mark.parametrize("case", PACKETS, ids=lambda c: c["id"])
def test_known_answer_packets(case: dict[str, Any]) -> None:
    master, suite = _master(case), _suite(case)
    plain, protected = bytes.fromhex(case["plaintext"]), bytes.fromhex(case["protected"])
    session = SrtpSession(suite, our_key=master, their_key=master)
    if "mki" in case:
        # Our SDES policy never negotiates MKI: the MKI octets break authentication.
        unprotect = session.unprotect if case["kind"] == "rtp" else session.unprotect_rtcp
        assert unprotect(protected) is None
        assert session.auth_failures == 1
        return
    if case["id"] == "ffmpeg-srtcp-aes128-32":
        # FFmpeg truncates the SRTCP tag to 32 bits for this suite; RFC 4568 §6.2.2 keeps 80.
        assert session.unprotect_rtcp(protected) is None
        assert session.dropped == 1
        return
    if case["kind"] == "rtp":
        assert session.unprotect(protected) == plain
        fresh = SrtpSession(suite, our_key=master, their_key=None)
        assert fresh.protect(plain) == protected
        tag = SUITES[suite].srtp_tag_octets
    else:
        assert session.unprotect_rtcp(protected) == plain
        tag = SUITES[suite].srtcp_tag_octets
        if case["srtcp_index"] == 1:  # libsrtp's first protected RTCP packet has index 1
            fresh = SrtpSession(suite, our_key=master, their_key=None)
            assert fresh.protect_rtcp(plain) == protected
    assert len(protected) == len(plain) + tag + (4 if case["kind"] == "rtcp" else 0)
    # The reference agrees on every authenticated known answer too.
    ref = ReferenceSrtp(master, rtp_tag=SUITES[suite].srtp_tag_octets)
    got = ref.unprotect(protected) if case["kind"] == "rtp" else ref.unprotect_rtcp(protected)
    assert got == plain


# -- drops ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", sorted(PROFILES))
def test_replayed_packet_is_dropped_and_counted(suite: str) -> None:
    key = generate_key_salt(suite)
    tx = SrtpSession(suite, our_key=key, their_key=None)
    rx = SrtpSession(suite, our_key=None, their_key=key)
    first = tx.protect(_rtp(100, 0, 42, b"\x01" * 160))
    second = tx.protect(_rtp(101, 160, 42, b"\x02" * 160))
    assert rx.unprotect(first) is not None
    assert rx.unprotect(second) is not None
    assert rx.unprotect(first) is None
    assert (rx.replays, rx.auth_failures) == (1, 0)
    rtcp = tx.protect_rtcp(bytes.fromhex("80c90001") + struct.pack("!I", 42))
    assert rx.unprotect_rtcp(rtcp) is not None
    assert rx.unprotect_rtcp(rtcp) is None
    assert rx.replays == 2


@pytest.mark.parametrize("suite", sorted(PROFILES))
def test_tampered_packet_is_dropped_and_counted(suite: str) -> None:
    key = generate_key_salt(suite)
    tx = SrtpSession(suite, our_key=key, their_key=None)
    rx = SrtpSession(suite, our_key=None, their_key=key)
    packet = bytearray(tx.protect(_rtp(7, 0, 42, b"\x01" * 160)))
    for position in (1, 3, 20, len(packet) - 1):  # header, seq, payload, tag
        tampered = bytearray(packet)
        tampered[position] ^= 0x01
        assert rx.unprotect(bytes(tampered)) is None
    assert rx.auth_failures == 4
    assert rx.unprotect(bytes(packet)) == _rtp(7, 0, 42, b"\x01" * 160)  # the real one is fine
    wrong_key = SrtpSession(suite, our_key=None, their_key=generate_key_salt(suite))
    assert wrong_key.unprotect(bytes(packet)) is None
    assert wrong_key.auth_failures == 1


def test_garbage_is_dropped_not_raised() -> None:
    rx = SrtpSession(DEFAULT := "AES_CM_128_HMAC_SHA1_80", our_key=None, their_key=bytes(30))
    assert DEFAULT in PROFILES
    for junk in (b"", b"\x80", bytes(11), bytes(2000), b"\x80\x00" + bytes(30)):
        assert rx.unprotect(junk) is None
        assert rx.unprotect_rtcp(junk) is None
    assert rx.dropped == 10


def test_key_and_suite_validation() -> None:
    with pytest.raises(MediaError):
        get_suite("AES_192_CM_HMAC_SHA1_80")
    with pytest.raises(MediaError):
        SrtpSession("AES_CM_128_HMAC_SHA1_80", our_key=bytes(16), their_key=None)
    session = SrtpSession("AES_CM_128_HMAC_SHA1_80", our_key=None, their_key=bytes(30))
    with pytest.raises(MediaError):
        session.protect(_rtp(1, 1, 1, b""))
    assert len({generate_key_salt() for _ in range(4)}) == 4
    assert len(generate_key_salt("AES_CM_128_HMAC_SHA1_32")) == 30


def test_repr_and_logs_never_show_keys(caplog: pytest.LogCaptureFixture) -> None:
    key = bytes(range(30))
    caplog.set_level(logging.DEBUG)
    session = SrtpSession("AES_CM_128_HMAC_SHA1_80", our_key=key, their_key=key)
    text = repr(session) + str(session)
    session.unprotect(b"\x80" * 40)
    for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)):
        assert form not in text
        assert form not in caplog.text


# -- libsrtp vs the pure-Python reference -----------------------------------------------------


@pytest.mark.parametrize("suite", sorted(s for s in PROFILES if "HMAC_SHA1" in s))
def test_libsrtp_agrees_with_reference_across_sequence_wrap(suite: str) -> None:
    """The counter-mode suites (AES-GCM has its own reference in test_srtp_wider_suites)."""
    rng = random.Random(3711)
    info = SUITES[suite]
    key = bytes(rng.randrange(256) for _ in range(info.key_salt_octets))
    ours_tx = SrtpSession(suite, our_key=key, their_key=None)
    ours_rx = SrtpSession(suite, our_key=None, their_key=key)
    sizes = {
        "rtp_tag": info.srtp_tag_octets,
        "rtcp_tag": info.srtcp_tag_octets,
        "key_octets": info.key_octets,
    }
    ref_tx = ReferenceSrtp(key, **sizes)
    ref_rx = ReferenceSrtp(key, **sizes)
    ssrc = rng.getrandbits(32)
    seq, ts = 65536 - 150, rng.getrandbits(32)
    for n in range(300):  # crosses 65535 -> 0, so the ROC becomes 1 halfway
        size = rng.choice((0, 1, 15, 16, 17, 160, 320))
        packet = _rtp((seq + n) & 0xFFFF, (ts + 160 * n) & 0xFFFFFFFF, ssrc, rng.randbytes(size))
        protected = ours_tx.protect(packet)
        assert protected == ref_tx.protect(packet), f"packet {n}"
        assert ours_rx.unprotect(protected) == packet
        assert ref_rx.unprotect(protected) == packet
    assert ref_tx.roc == 1
    for _ in range(40):
        report = bytes.fromhex("80c80006") + struct.pack("!I", ssrc) + rng.randbytes(20)
        protected = ours_tx.protect_rtcp(report)
        assert protected == ref_tx.protect_rtcp(report)
        assert ours_rx.unprotect_rtcp(protected) == report
        assert ref_rx.unprotect_rtcp(protected) == report
    assert ours_rx.dropped == 0


# -- both code paths: direct libsrtp calls and the public pylibsrtp API ----------------------


@pytest.fixture(params=[True, False], ids=["direct", "public-api"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    import callxml.media.srtp as srtp_module

    if request.param:
        assert srtp_module._FAST, "the direct libsrtp path failed its self-test"
    monkeypatch.setattr(srtp_module, "_FAST", request.param)
    return bool(request.param)


def test_both_paths_agree_and_count_the_same(fast_path: bool) -> None:
    key_in, key_out = generate_key_salt(), generate_key_salt()
    sender = SrtpSession(SUITE80, our_key=key_in, their_key=None)
    relay_in = SrtpSession(SUITE80, our_key=None, their_key=key_in)
    relay_out = SrtpSession(SUITE80, our_key=key_out, their_key=None)
    reference_out = ReferenceSrtp(key_out)
    assert (relay_in._rx_ctx is not None) is fast_path
    packets = [_rtp((65530 + n) & 0xFFFF, 160 * n, 99, bytes([n]) * 160) for n in range(12)]
    protected = [sender.protect(p) for p in packets]
    for plain, wire in zip(packets, protected, strict=True):
        relayed = relay_in.relay_to(wire, relay_out)
        assert relayed == reference_out.protect(plain)
    assert relay_in.relay_to(protected[3], relay_out) is None  # replay
    tampered = bytearray(sender.protect(_rtp(9, 0, 99, bytes(160))))  # not yet seen
    tampered[15] ^= 1
    assert relay_in.relay_to(bytes(tampered), relay_out) is None
    assert relay_in.unprotect(bytes(2000)) is None  # over-long
    assert (relay_in.replays, relay_in.auth_failures, relay_in.other_failures) == (1, 1, 1)


SUITE80 = AES_CM_128_HMAC_SHA1_80


def test_in_place_relay_matches_the_reference_and_counts_drops() -> None:
    """relay_in_place / protect_in_place (the batched reader's slots) against the pure-Python
    reference: same bytes as relay_to, same drop counting, nothing raised for peer input."""
    import callxml.media.srtp as srtp_module

    assert srtp_module.in_place_available()
    ffi = srtp_module._ffi
    slot = ffi.new("char[]", srtp_module.IN_PLACE_BUFFER_OCTETS)
    key_in, key_out = generate_key_salt(), generate_key_salt()
    sender = SrtpSession(SUITE80, our_key=key_in, their_key=None)
    relay_in = SrtpSession(SUITE80, our_key=None, their_key=key_in)
    relay_out = SrtpSession(SUITE80, our_key=key_out, their_key=None)
    reference_out = ReferenceSrtp(key_out)

    def run(data: bytes, out: SrtpSession | None) -> bytes | None:
        slot[0 : len(data)] = data
        size = relay_in.relay_in_place(slot, len(data), out)
        return None if size < 0 else ffi.buffer(slot, size)[:]

    packets = [_rtp(n, 160 * n, 7, bytes([n]) * 160) for n in range(6)]
    protected = [sender.protect(p) for p in packets]
    for plain, wire in zip(packets[:5], protected[:5], strict=True):
        assert run(wire, relay_out) == reference_out.protect(plain)
    assert run(protected[5], None) == packets[5]  # unprotect only (SRTP leg to RTP leg)
    assert run(protected[2], relay_out) is None  # replay
    tampered = bytearray(sender.protect(_rtp(40, 0, 7, bytes(160))))
    tampered[20] ^= 1
    assert run(bytes(tampered), relay_out) is None
    assert relay_in.relay_in_place(slot, 1501, relay_out) == -1  # longer than we accept
    assert (relay_in.replays, relay_in.auth_failures, relay_in.other_failures) == (1, 1, 1)

    plain_out = SrtpSession(SUITE80, our_key=key_out, their_key=None)
    reference = ReferenceSrtp(key_out)
    packet = _rtp(100, 0, 7, bytes(160))
    slot[0 : len(packet)] = packet
    size = plain_out.protect_in_place(slot, len(packet))
    assert ffi.buffer(slot, size)[:] == reference.protect(packet)
    slot[0 : len(packet)] = packet
    assert plain_out.protect_in_place(slot, len(packet)) == -1  # same index twice: refused
    assert plain_out.other_failures == 1
    with pytest.raises(MediaError):
        relay_out.relay_in_place(slot, 10, None)  # no receiving key
