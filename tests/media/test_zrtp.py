"""The sans-IO ZRTP engine (callxml.media.zrtp): two engines talking in memory on a fake clock,
every key agreement, loss and retransmission (T1/T2), retained-secret continuity, the checksum
and SAS rendering against their specifications, and bad input that must end or be ignored
cleanly, never raise."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from callxml.media.srtp import SrtpSession
from callxml.media.zrtp import (
    DEFAULT_ALGORITHMS,
    T1_MAX_RETRANSMISSIONS,
    RetainedSecrets,
    ZrtpAlgorithms,
    ZrtpSession,
    crc32c,
    new_zid,
    render_sas,
)

Drop = Callable[[bytes], bool]


class Cache:
    """A tiny in-memory cache: what the engine's ``lookup`` reads and the caller stores."""

    def __init__(self) -> None:
        self.entries: dict[bytes, RetainedSecrets] = {}

    def lookup(self, zid: bytes) -> RetainedSecrets | None:
        return self.entries.get(zid)


def message_type(packet: bytes) -> bytes:
    return packet[16:24].strip()


def run(
    a: ZrtpSession,
    b: ZrtpSession,
    *,
    drop: Drop = lambda p: False,
    limit: float = 30.0,
    start_b: bool = True,
) -> list[tuple[str, bytes]]:
    """Drive two sessions to the end on a fake clock; returns what went over the wire."""
    now = 0.0
    wire: list[tuple[str, bytes]] = []
    queue: list[tuple[str, bytes]] = [("a", p) for p in a.start(now)]
    if start_b:
        queue += [("b", p) for p in b.start(now)]
    while now < limit and not (a.done and b.done):
        while queue:
            sender, packet = queue.pop(0)
            wire.append((sender, packet))
            if drop(packet):
                continue
            target, name = (b, "b") if sender == "a" else (a, "a")
            queue += [(name, p) for p in target.receive(packet, now)]
        timers = [t for t in (a.next_timer(), b.next_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        queue += [("a", p) for p in a.handle_timer(now)]
        queue += [("b", p) for p in b.handle_timer(now)]
    return wire


def pair(
    cache_a: Cache | None = None,
    cache_b: Cache | None = None,
    algorithms_a: ZrtpAlgorithms = DEFAULT_ALGORITHMS,
    algorithms_b: ZrtpAlgorithms = DEFAULT_ALGORITHMS,
    zids: tuple[bytes, bytes] | None = None,
) -> tuple[ZrtpSession, ZrtpSession]:
    zid_a, zid_b = zids or (new_zid(), new_zid())
    a = ZrtpSession(
        zid=zid_a,
        ssrc=0x1111,
        lookup=cache_a.lookup if cache_a else lambda z: None,
        algorithms=algorithms_a,
    )
    b = ZrtpSession(
        zid=zid_b,
        ssrc=0x2222,
        lookup=cache_b.lookup if cache_b else lambda z: None,
        algorithms=algorithms_b,
        their_hello_hash=a.hello_hash,
    )
    return a, b


def assert_keyed(a: ZrtpSession, b: ZrtpSession) -> None:
    assert a.state == b.state == "secure", (a.failure, b.failure, a.ignored, b.ignored)
    ra, rb = a.result, b.result
    assert ra is not None and rb is not None
    assert ra.sas == rb.sas and len(ra.sas) == 4
    assert ra.suite == rb.suite
    assert ra.our_key == rb.their_key and ra.their_key == rb.our_key
    assert ra.our_key != ra.their_key
    assert ra.initiator != rb.initiator
    # the keys really run SRTP both ways
    sender = SrtpSession(ra.suite, our_key=ra.our_key, their_key=ra.their_key)
    receiver = SrtpSession(rb.suite, our_key=rb.our_key, their_key=rb.their_key)
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1111) + bytes(160)
    assert bytes(receiver.unprotect(bytes(sender.protect(rtp))) or b"") == rtp
    back = struct.pack("!BBHII", 0x80, 0, 9, 160, 0x2222) + bytes(160)
    assert bytes(sender.unprotect(bytes(receiver.protect(back))) or b"") == back


# -- the exchange ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [b"DH3k", b"DH2k", b"EC25", b"X255"])
def test_two_engines_agree_with_each_key_agreement(kind: bytes) -> None:
    algorithms = ZrtpAlgorithms(key_agreements=(kind,))
    a, b = pair(algorithms_a=algorithms, algorithms_b=algorithms)
    wire = run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and a.result.algorithms.startswith(kind.decode())
    kinds = [message_type(p) for _, p in wire]
    for expected in (b"Hello", b"HelloACK", b"Commit", b"DHPart1", b"DHPart2", b"Confirm1"):
        assert expected in kinds
    assert kinds.index(b"Confirm2") < kinds.index(b"Conf2ACK")
    assert not a.ignored or set(a.ignored) <= {"contending Commit (we stay initiator)"}


@pytest.mark.parametrize(
    ("cipher", "tag", "suite"),
    [
        (b"AES1", b"HS80", "AES_CM_128_HMAC_SHA1_80"),
        (b"AES1", b"HS32", "AES_CM_128_HMAC_SHA1_32"),
        (b"AES3", b"HS80", "AES_256_CM_HMAC_SHA1_80"),
    ],
)
def test_the_negotiated_cipher_and_tag_give_the_srtp_suite(
    cipher: bytes, tag: bytes, suite: str
) -> None:
    algorithms = ZrtpAlgorithms(ciphers=(cipher,), auth_tags=(tag,), key_agreements=(b"X255",))
    a, b = pair(algorithms_a=algorithms, algorithms_b=algorithms)
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and a.result.suite == suite


def test_a_silent_side_only_answers_then_commit_contention_resolves() -> None:
    """B does not start: it answers A's Hello with its own (§4.1), and both may commit."""
    a, b = pair()
    run(a, b, start_b=False)
    assert_keyed(a, b)


def test_the_cheaper_key_agreement_wins_when_first_choices_differ() -> None:
    """§4.1.2: our first choice DH3k, theirs X255: both end on X255."""
    a, b = pair(
        algorithms_a=ZrtpAlgorithms(key_agreements=(b"DH3k", b"X255")),
        algorithms_b=ZrtpAlgorithms(key_agreements=(b"X255", b"DH3k")),
    )
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and a.result.algorithms.startswith("X255")


def test_lost_packets_are_retransmitted_on_t1_and_t2() -> None:
    rng = random.Random(6189)
    a, b = pair(algorithms_a=ZrtpAlgorithms(key_agreements=(b"X255",)))
    run(a, b, drop=lambda p: rng.random() < 0.3, limit=60)
    assert_keyed(a, b)


def test_every_first_transmission_lost_still_completes() -> None:
    seen: set[bytes] = set()

    def drop_first(packet: bytes) -> bool:
        key = packet[12:-4]  # the message, whatever the sequence number and CRC
        if key in seen:
            return False
        seen.add(key)
        return True

    a, b = pair(algorithms_a=ZrtpAlgorithms(key_agreements=(b"EC25",)))
    run(a, b, drop=drop_first, limit=60)
    assert_keyed(a, b)


def test_no_answer_ends_with_a_timeout_after_t1_retransmissions() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    sent = a.start(0.0)
    now = 0.0
    while not a.done:
        timer = a.next_timer()
        assert timer is not None and timer > now
        now = timer
        sent += a.handle_timer(now)
    assert a.state == "failed" and a.failure is not None and "timeout" in a.failure
    assert len(sent) == 1 + T1_MAX_RETRANSMISSIONS
    gaps = [round(t, 3) for t in (0.05, 0.1, 0.2, 0.2)]
    assert gaps == [0.05, 0.1, 0.2, 0.2]  # §6: 50 ms doubling to 200 ms
    assert now < 5


def test_a_responder_left_alone_times_out() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1, timeout=3.0)
    a.start(0.0)
    out = a.handle_timer(3.0)
    assert out == [] and a.state == "failed" and "not secure after 3 s" in (a.failure or "")
    assert a.next_timer() is None


def test_hello_hash_of_sdp_must_match() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    b = ZrtpSession(zid=new_zid(), ssrc=2, their_hello_hash="1.10 " + "00" * 32)
    run(a, b)
    assert b.state == "failed" and "a=zrtp-hash" in (b.failure or "")
    version, digest = a.hello_hash.split()
    assert version == "1.10" and len(bytes.fromhex(digest)) == 32
    # learnt from the SDP answer after our own offer was made: the same check
    c = ZrtpSession(zid=new_zid(), ssrc=3)
    d = ZrtpSession(zid=new_zid(), ssrc=4)
    d.expect_hello_hash(c.hello_hash)
    run(c, d)
    assert_keyed(c, d)


# -- retained secrets (§4.3, §4.6.1) ---------------------------------------------------------


def store(cache: Cache, session: ZrtpSession) -> None:
    result = session.result
    assert result is not None
    cache.entries[result.peer_zid] = result.cache_update


def test_second_call_matches_the_retained_secret_and_keeps_verified() -> None:
    zids = (new_zid(), new_zid())
    cache_a, cache_b = Cache(), Cache()
    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and not a.result.cache_match and not a.result.cache_mismatch
    store(cache_a, a)
    store(cache_b, b)
    first_sas = a.result.sas
    # a person compared the SAS and said so on both sides
    for cache in (cache_a, cache_b):
        (zid,) = cache.entries
        entry = cache.entries[zid]
        cache.entries[zid] = RetainedSecrets(entry.rs1, entry.rs2, verified=True)

    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and b.result is not None
    assert a.result.cache_match and b.result.cache_match
    assert a.result.verified and b.result.verified
    assert a.result.peer_verified and b.result.peer_verified  # the V flag of Confirm (§5.7)
    assert len(first_sas) == 4  # a new SAS each call (equal to the first by chance only)
    old_rs1 = cache_a.entries[zids[1]].rs1
    store(cache_a, a)
    assert cache_a.entries[zids[1]].rs2 == old_rs1  # §4.6.1: rs2 ← rs1, rs1 ← new


def test_a_lost_cache_on_one_side_is_a_mismatch_and_clears_verified() -> None:
    zids = (new_zid(), new_zid())
    cache_a, cache_b = Cache(), Cache()
    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    store(cache_a, a)
    entry = cache_a.entries[zids[1]]
    cache_a.entries[zids[1]] = RetainedSecrets(entry.rs1, entry.rs2, verified=True)
    a, b = pair(cache_a, Cache(), zids=zids)  # b forgot everything
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None
    assert a.result.cache_mismatch and not a.result.cache_match and not a.result.verified


def test_a_match_on_rs2_after_one_side_missed_an_update() -> None:
    """§4.3.2: if one side stored the new rs1 and the other did not, rs2 still matches."""
    zids = (new_zid(), new_zid())
    cache_a, cache_b = Cache(), Cache()
    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    store(cache_a, a)
    store(cache_b, b)
    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    store(cache_a, a)  # only a keeps the second call's secret
    a, b = pair(cache_a, cache_b, zids=zids)
    run(a, b)
    assert_keyed(a, b)
    assert a.result is not None and a.result.cache_match


# -- specifications ---------------------------------------------------------------------------


def test_crc32c_known_answers() -> None:
    """RFC 3720 Appendix B.4 (the CRC-32C ZRTP uses, RFC 6189 §5 / RFC 4960 Appendix B)."""
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"123456789") == 0xE3069283  # the usual check value


def test_b32_rendering() -> None:
    """§5.1.6: the leftmost 20 bits, 5 bits a character, z-base-32."""
    assert render_sas(b"B32 ", bytes(4)) == "yyyy"
    assert render_sas(b"B32 ", b"\xff\xff\xff\xff") == "9999"
    assert render_sas(b"B32 ", b"\x08\x42\x10\x00") == "bbbb"  # 00001 four times
    assert render_sas(b"B256", b"\xab\xcd\x00\x00") == "abcd"


def test_confirm_encryption_is_aes_cfb_128() -> None:
    """Our CFB on AES-ECB equals the library's CFB mode (SP 800-38A), both ways."""
    import warnings

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from callxml.media.zrtp import _aes_cfb

    key, iv, plain = bytes(range(16)), bytes(range(16, 32)), bytes(range(40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Cipher(algorithms.AES(key), modes.CFB(iv)).encryptor().update(plain)
    assert _aes_cfb(key, iv, plain, encrypt=True) == expected
    assert _aes_cfb(key, iv, expected, encrypt=False) == plain
    # SP 800-38A F.3.13 CFB128-AES128.Encrypt, first block
    sp_key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    sp_iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    sp_plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert _aes_cfb(sp_key, sp_iv, sp_plain, encrypt=True).hex() == (
        "3b3fd92eb72dad20333449f8e83cfb4a"
    )


def test_the_rfc_3526_groups() -> None:
    from callxml.media import zrtp

    assert zrtp._MODP_2048.bit_length() == 2048 and zrtp._MODP_3072.bit_length() == 3072
    # RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k)
    assert zrtp._MODP_2048 % (1 << 64) == (1 << 64) - 1
    assert zrtp._MODP_3072 >> (3072 - 64) == (1 << 64) - 1
    assert pow(2, zrtp._MODP_3072 - 1, zrtp._MODP_3072) == 1  # Fermat: consistent with prime


def test_repr_and_result_repr_hide_the_keys() -> None:
    a, b = pair()
    run(a, b)
    assert a.result is not None
    for text in (repr(a), repr(a.result), repr(a.result.cache_update)):
        assert a.result.our_key.hex() not in text
        assert a.result.their_key.hex() not in text
        assert a.result.sas in text or "RetainedSecrets" in text


# -- bad input: never an exception ------------------------------------------------------------


def secure_pair() -> tuple[ZrtpSession, ZrtpSession, list[tuple[str, bytes]]]:
    a, b = pair(algorithms_a=ZrtpAlgorithms(key_agreements=(b"X255",)))
    wire = run(a, b)
    assert_keyed(a, b)
    return a, b, wire


def test_truncated_and_garbled_packets_are_ignored_and_counted() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    b = ZrtpSession(zid=new_zid(), ssrc=2)
    hello = a.start(0.0)[0]
    rng = random.Random(1)
    for size in range(len(hello)):
        b.receive(hello[:size], 0.0)
    for _ in range(300):
        garbled = bytearray(hello)
        garbled[rng.randrange(len(garbled))] ^= 1 << rng.randrange(8)
        b.receive(bytes(garbled), 0.0)
    for junk in (b"", b"\x10\x00", bytes(3000), b"\x10" + bytes(99), rng.randbytes(200)):
        b.receive(junk, 0.0)
    assert b.state == "discovery" and b.failure is None
    assert sum(b.ignored.values()) == b.received
    assert set(b.ignored) <= {"bad packet length", "not a ZRTP packet", "bad CRC"}
    assert b.receive(hello, 0.0)  # the real one still works


def rewrap(packet: bytes, message: bytes) -> bytes:
    """The same packet header around another message, with a correct CRC."""
    head = packet[:12] + message
    return head + struct.pack("<I", crc32c(head))


def test_well_framed_but_malformed_messages_are_ignored() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    hello = a.start(0.0)[0]
    b = ZrtpSession(zid=new_zid(), ssrc=2)
    message = hello[12:-4]
    for kind in (b"Hello   ", b"Commit  ", b"DHPart1 ", b"DHPart2 ", b"Confirm1", b"Confirm2"):
        short = struct.pack("!HH", 0x505A, 4) + kind + bytes(4)
        assert b.receive(rewrap(hello, short), 0.0) == []
    bogus = struct.pack("!HH", 0x505A, 3) + b"Nonsense"
    assert b.receive(rewrap(hello, bogus), 0.0) == []
    wrong_counts = message[:76] + struct.pack("!I", 0x000F0000) + message[80:]
    assert b.receive(rewrap(hello, wrong_counts), 0.0) == []
    assert b.state == "discovery" and b.failure is None
    assert "malformed Hello" in b.ignored and "unknown message b'Nonsense'" in b.ignored


def intercept(
    a: ZrtpSession, b: ZrtpSession, tamper: Callable[[str, bytes], bytes | None]
) -> list[tuple[str, bytes]]:
    """Run the exchange with ``tamper(sender, packet)`` rewriting or dropping packets."""
    now = 0.0
    wire: list[tuple[str, bytes]] = []
    queue = [("a", p) for p in a.start(now)] + [("b", p) for p in b.start(now)]
    for _ in range(200):
        while queue:
            sender, packet = queue.pop(0)
            changed = tamper(sender, packet)
            if changed is None:
                continue
            wire.append((sender, changed))
            target, name = (b, "b") if sender == "a" else (a, "a")
            queue += [(name, p) for p in target.receive(changed, now)]
        timers = [t for t in (a.next_timer(), b.next_timer()) if t is not None]
        if not timers or (a.done and b.done):
            break
        now = max(now, min(timers))
        queue += [("a", p) for p in a.handle_timer(now)]
        queue += [("b", p) for p in b.handle_timer(now)]
    return wire


def test_commit_with_an_algorithm_we_did_not_offer_ends_with_error() -> None:
    """A Commit (from A) naming a key agreement B never offered is refused with Error 0x53."""
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    b = ZrtpSession(zid=new_zid(), ssrc=2, algorithms=ZrtpAlgorithms(key_agreements=(b"X255",)))

    def tamper(sender: str, packet: bytes) -> bytes | None:
        if message_type(packet) != b"Commit":
            return packet
        if sender == "b":
            return None  # keep only a's Commit, so that b must judge it
        message = packet[12:-4]
        return rewrap(packet, message[:68] + b"DH2k" + message[72:])

    wire = intercept(a, b, tamper)
    assert b.state == "failed" and "did not offer" in (b.failure or "")
    errors = [p for s, p in wire if s == "b" and message_type(p) == b"Error"]
    assert errors and struct.unpack_from("!I", errors[0], 24)[0] == 0x53
    assert a.state == "failed" and "Error 0x53" in (a.failure or "")


def test_dhpart2_that_does_not_match_the_commitment_ends_with_error() -> None:
    """Swap the initiator's DHPart2 for another one: hvi no longer matches (§4.4.1.1)."""
    a, b = pair(algorithms_a=ZrtpAlgorithms(key_agreements=(b"X255",)))
    other = ZrtpSession(zid=new_zid(), ssrc=9)

    def tamper(sender: str, packet: bytes) -> bytes | None:
        if message_type(packet) == b"DHPart2":
            message = bytearray(packet[12:-4])
            message[-9] ^= 1  # inside pv: still well formed, but not what hvi committed to
            return rewrap(packet, bytes(message))
        return packet

    del other
    intercept(a, b, tamper)
    responder = b if b.result is None and not (a.result and a.result.initiator) else a
    failed = [s for s in (a, b) if s.state == "failed"]
    assert failed, (a.state, b.state)
    assert any("hvi" in (s.failure or "") for s in failed), [s.failure for s in failed]
    assert responder.result is None


def test_a_forged_confirm_is_ignored_and_a_replayed_one_is_harmless() -> None:
    a, b, wire = secure_pair()
    responder = a if a.result and not a.result.initiator else b
    initiator = b if responder is a else a
    sender = "a" if initiator is a else "b"
    confirm2 = next(p for s, p in wire if s == sender and message_type(p) == b"Confirm2")
    # replayed: answered with Conf2ACK as §6 asks, nothing else changes
    out = responder.receive(confirm2, 1.0)
    assert [message_type(p) for p in out] == [b"Conf2ACK"]
    # forged: fails its MAC, counted
    forged = bytearray(confirm2[12:-4])
    forged[40] ^= 0x80
    assert responder.receive(rewrap(confirm2, bytes(forged)), 1.0) == []
    assert responder.ignored.get("replayed or foreign Confirm2") == 1
    # a Confirm1 replayed to the initiator after the fact
    confirm1 = next(p for s, p in wire if s != sender and message_type(p) == b"Confirm1")
    assert initiator.receive(confirm1, 1.0) == []
    assert sum(initiator.ignored.values()) >= 1
    assert responder.state == initiator.state == "secure"


def test_a_confirm_from_another_session_fails_its_mac() -> None:
    a1, b1, wire1 = secure_pair()
    a2 = ZrtpSession(zid=new_zid(), ssrc=1)
    b2 = ZrtpSession(zid=new_zid(), ssrc=2)
    # run a2/b2 up to the point where the initiator waits for Confirm1, then feed an old one
    stolen = next(p for _, p in wire1 if message_type(p) == b"Confirm1")

    def tamper(sender: str, packet: bytes) -> bytes | None:
        return stolen if message_type(packet) == b"Confirm1" else packet

    intercept(a2, b2, tamper)
    assert a2.state != "secure" and b2.state != "secure"
    assert any("Confirm1 fails its MAC" in s.ignored for s in (a2, b2)), (a2.ignored, b2.ignored)
    del a1, b1


def test_error_from_the_peer_ends_the_exchange() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    hello = a.start(0.0)[0]
    error = struct.pack("!HH", 0x505A, 4) + b"Error   " + struct.pack("!I", 0x40)
    out = a.receive(rewrap(hello, error), 0.1)
    assert [message_type(p) for p in out] == [b"ErrorACK"]
    assert a.state == "failed" and "0x40" in (a.failure or "")
    assert a.receive(hello, 0.2) == [] and a.ignored["after failure"] == 1


def test_our_own_hello_reflected_back_is_a_zid_collision() -> None:
    a = ZrtpSession(zid=new_zid(), ssrc=1)
    hello = a.start(0.0)[0]
    out = a.receive(hello, 0.0)
    assert a.state == "failed" and "ZID" in (a.failure or "")
    assert [message_type(p) for p in out] == [b"Error"]


def test_fuzzing_every_message_of_a_real_exchange_never_raises() -> None:
    rng = random.Random(42)
    _, _, wire = secure_pair()
    for _ in range(3):
        for _, packet in wire:
            c = ZrtpSession(zid=new_zid(), ssrc=3)
            c.start(0.0)
            message = bytearray(packet[12:-4])
            for _ in range(rng.randrange(1, 4)):
                message[rng.randrange(4, len(message))] ^= 1 << rng.randrange(8)
            c.receive(rewrap(packet, bytes(message)), 0.0)
            c.receive(packet, 0.0)
            assert c.state in ("discovery", "failed", "responder", "committed")


# A Hello that linphonec 5.1.65 (bzrtp 5.1.64, Debian bookworm) sent us, captured on loopback:
# its CRC is written least octet first, and it offers S256; AES1 AES3; HS80 HS32; DH3k Mult; B32.
BZRTP_HELLO = bytes.fromhex(
    "10000f915a52545013c05788505a001e48656c6c6f202020312e3130425a52545076312e3100000000000000"
    "86816e83bd75e0151feae629a40db95d65572a8fe1abd3afc3fa006cf2f266091db8c9e310231e31dac7fe5d"
    "0001222153323536414553314145533348533830485333324448336b4d756c7442333220964cd15c04706b2d"
    "eea5cce1"
)


def test_a_real_bzrtp_hello_is_understood_and_acknowledged() -> None:
    ours = ZrtpSession(zid=new_zid(), ssrc=7)
    ours.start(0.0)
    out = ours.receive(BZRTP_HELLO, 0.0)
    assert [message_type(p) for p in out] == [b"HelloACK"], ours.ignored
    hello = ours._their_hello
    assert hello is not None
    assert hello.version == b"1.10" and hello.key_agreements == (b"DH3k", b"Mult")
    assert (hello.hashes, hello.ciphers, hello.sas_types) == (
        (b"S256",),
        (b"AES1", b"AES3"),
        (b"B32 ",),
    )
    # the same packet with its CRC in network order is refused: bzrtp writes it reflected
    crc = BZRTP_HELLO[-4:]
    assert ZrtpSession(zid=new_zid(), ssrc=8).receive(BZRTP_HELLO[:-4] + crc[::-1], 0.0) == []
