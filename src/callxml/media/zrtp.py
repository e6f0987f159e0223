"""ZRTP key agreement (RFC 6189) as a sans-IO state machine: packets and ``now`` in, packets out.

Owns the ZRTP wire format (§5: packet header, CRC-32C, every message we send or take), the
discovery/commit/DH/confirm exchange in both roles (§4), the hash chain H0..H3 and the MACs that
bind each message to the next (§9), the key derivation of s0, the SRTP master keys and salts of
both directions and the SAS (§4.4.1.4, §4.5), retained-secret matching and the new rs1 (§4.3,
§4.6.1), and the retransmission timers T1/T2 (§6). It hands its caller a :class:`ZrtpResult` --
the SRTP suite, our and their master key ‖ salt, the SAS -- which the caller turns into
``SrtpKeys`` for the endpoint exactly as SDES does.

It must not know about sockets, SDP or SIP: the caller feeds :meth:`ZrtpSession.receive` every
datagram the endpoint classified as ZRTP, sends what it returns, asks :meth:`next_timer` when to
call :meth:`handle_timer`, and persists :attr:`ZrtpResult.cache_update` (the peer's ZID, the new
rs1 and rs2) in its store; the previous secrets come through the ``lookup`` callable. Peer input
never raises: a packet that fails a check is ignored and counted (:attr:`ZrtpSession.ignored`),
and a check that the RFC says ends the exchange (a hash chain or commitment that does not match,
an algorithm we did not offer) moves to ``failed`` with :attr:`ZrtpSession.failure` saying why,
plus the Error message §5.9 asks for. Nothing here logs or prints secrets: ``repr`` shows the
state and the SAS only.

Algorithms (§5.1): hash ``S256``; ciphers ``AES1`` and ``AES3``; auth tags ``HS32`` and
``HS80``; key agreements ``DH3k`` (RFC 3526 group 15), ``DH2k`` (group 14), ``EC25`` (P-256) and
``X255`` (X25519, as bzrtp/linphone and the ZRTP registry name it); SAS ``B32`` and ``B256``
(rendered as PGP words is the caller's affair: ``B256`` gives the two bytes). DH mode only: no
Multistream, Preshared, SASrelay, PBX enrolment or signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DEFAULT_ALGORITHMS",
    "PROTOCOL_VERSION",
    "MemoryZrtpCache",
    "RetainedSecrets",
    "ZrtpAlgorithms",
    "ZrtpCache",
    "ZrtpResult",
    "ZrtpSession",
    "crc32c",
    "new_zid",
    "render_sas",
]

PROTOCOL_VERSION: Final = b"1.10"  # §5.2
CLIENT_ID: Final = b"callxml ZRTP    "  # §5.2: 16 octets, ours
MAGIC: Final = b"ZRTP"  # §5: 0x5a525450
PREAMBLE: Final = 0x505A  # §5.1
HEADER_OCTETS: Final = 12
MAX_PACKET_OCTETS: Final = 3072  # our largest message is a DH3k DHPart (468 octets)
ZID_OCTETS: Final = 12
MAC_OCTETS: Final = 8  # §5.2..5.7: HMAC truncated to 64 bits
DEFAULT_TIMEOUT: Final = 15.0  # seconds from start to secure, whatever the role

# §6: T1 for Hello (50 ms doubling to 200 ms, 20 retransmissions); T2 for Commit, DHPart2 and
# Confirm2 (150 ms doubling to 1200 ms, 10 retransmissions).
T1_INITIAL, T1_CAP, T1_MAX_RETRANSMISSIONS = 0.05, 0.2, 20
T2_INITIAL, T2_CAP, T2_MAX_RETRANSMISSIONS = 0.15, 1.2, 10

# RFC 3526 §3 (2048-bit MODP group 14) and §4 (3072-bit MODP group 15), generator 2.
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6"
    "F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A6916"
    "3FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C"
    "32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA95"
    "6AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_MODP_3072 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E34"
    "04DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6"
    "F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A6916"
    "3FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C"
    "32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA95"
    "6AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA7157"
    "5D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D876"
    "02733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E"
    "4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)

#: §5.1.5: key agreement → public value octets. Cost order (cheapest first) breaks a tie (§4.1.2).
_PV_OCTETS: Final = {b"X255": 32, b"EC25": 64, b"DH2k": 256, b"DH3k": 384}
_COST_ORDER: Final = (b"X255", b"EC25", b"DH2k", b"DH3k")
_CIPHER_KEY_OCTETS: Final = {b"AES1": 16, b"AES3": 32}  # §5.1.3
_SUITES: Final = {  # (cipher, auth tag) → the SRTP suite the keys are for (§5.1.4, RFC 6188)
    (b"AES1", b"HS80"): "AES_CM_128_HMAC_SHA1_80",
    (b"AES1", b"HS32"): "AES_CM_128_HMAC_SHA1_32",
    (b"AES3", b"HS80"): "AES_256_CM_HMAC_SHA1_80",
    (b"AES3", b"HS32"): "AES_256_CM_HMAC_SHA1_32",
}
#: What every ZRTP endpoint supports whether or not its Hello lists it (§5.1.2-5.1.6).
_MANDATORY: Final = {
    "hashes": (b"S256",),
    "ciphers": (b"AES1",),
    "auth_tags": (b"HS32", b"HS80"),
    "key_agreements": (b"DH3k",),
    "sas_types": (b"B32 ",),
}
_B32_ALPHABET: Final = "ybndrfg8ejkmcpqxot1uwisza345h769"  # §5.1.6
_MAX_IGNORED_REASONS = 32
_FLAG_V = 0x04  # §5.7: the Confirm flags octet is 0000 E V A D (V: SAS verified)


@dataclass(frozen=True, slots=True)
class ZrtpAlgorithms:
    """What our Hello offers, each list in our order of preference (§5.2)."""

    hashes: tuple[bytes, ...] = (b"S256",)
    ciphers: tuple[bytes, ...] = (b"AES1", b"AES3")
    auth_tags: tuple[bytes, ...] = (b"HS80", b"HS32")
    key_agreements: tuple[bytes, ...] = (b"DH3k", b"X255", b"EC25", b"DH2k")
    sas_types: tuple[bytes, ...] = (b"B32 ", b"B256")

    def __post_init__(self) -> None:
        known = {
            "hashes": {b"S256"},
            "ciphers": set(_CIPHER_KEY_OCTETS),
            "auth_tags": {b"HS32", b"HS80"},
            "key_agreements": set(_PV_OCTETS),
            "sas_types": {b"B32 ", b"B256"},
        }
        for name, allowed in known.items():
            values = getattr(self, name)
            if not values or not set(values) <= allowed or len(values) > 7:
                raise ValueError(f"ZRTP {name}: choose up to 7 of {sorted(allowed)}")


DEFAULT_ALGORITHMS: Final = ZrtpAlgorithms()


@dataclass(frozen=True, slots=True)
class RetainedSecrets:
    """What the cache holds for one peer ZID (§4.9): rs1, rs2 (32 octets or ``None``) and
    whether the SAS was verified by a person. ``repr`` hides the secrets."""

    rs1: bytes | None = field(default=None, repr=False)
    rs2: bytes | None = field(default=None, repr=False)
    verified: bool = False


@dataclass(frozen=True, slots=True)
class ZrtpResult:
    """A completed exchange: SRTP keys for both directions and what to show and store.

    ``our_key`` protects what we send, ``their_key`` unprotects what we receive (master key ‖
    master salt, :mod:`callxml.media.srtp`). ``cache_match`` says a retained secret matched
    (continuity, §4.3.2); ``cache_mismatch`` that we had a secret for this peer and neither
    matched (§4.3.2: warn; the verified flag is cleared). ``verified`` is the SAS-verified flag
    after this call. ``cache_update`` is what to store for ``peer_zid`` (§4.6.1).
    """

    suite: str
    our_key: bytes = field(repr=False)
    their_key: bytes = field(repr=False)
    sas: str
    peer_zid: bytes
    initiator: bool
    algorithms: str
    cache_match: bool
    cache_mismatch: bool
    verified: bool
    peer_verified: bool
    cache_update: RetainedSecrets = field(repr=False)


def new_zid() -> bytes:
    """A fresh random 96-bit ZID (§4.9): made once per installation and kept."""
    return secrets.token_bytes(ZID_OCTETS)


# -- CRC-32C (§5: RFC 4960 Appendix B, reflected polynomial 0x82F63B78) --------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` as RFC 4960 Appendix B computes it (ZRTP's packet checksum)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for octet in data:
        crc = table[(crc ^ octet) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- primitives --------------------------------------------------------------------------------


def _sha256(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _mac(key: bytes, data: bytes) -> bytes:
    """The 64-bit message MAC of §5.2..§5.6 and the confirm_mac of §5.7."""
    return _hmac(key, data)[:MAC_OCTETS]


def _kdf(key: bytes, label: bytes, context: bytes, bits: int) -> bytes:
    """§4.5.1: KDF(KI, Label, Context, L) = HMAC(KI, i ‖ Label ‖ 0x00 ‖ Context ‖ L), i = 1,
    truncated to L bits (all our lengths are whole octets and at most one hash)."""
    return _hmac(key, struct.pack("!I", 1) + label + b"\x00" + context + struct.pack("!I", bits))[
        : bits // 8
    ]


def _equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of MACs, hashes and secret IDs."""
    return hmac.compare_digest(a, b)


def _aes_cfb(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """§5.7: the Confirm messages' encrypted part, AES in CFB-128 mode (SP 800-38A §6.3):
    C_j = P_j XOR AES(K, C_{j-1}), C_0 = IV. Written on AES itself because ``cryptography``
    moved CFB to its "decrepit" corner; 40 octets, three blocks."""
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = bytearray()
    feedback = iv
    for start in range(0, len(data), 16):
        block = data[start : start + 16]
        stream = aes.update(feedback)
        done = bytes(x ^ y for x, y in zip(block, stream, strict=False))
        out += done
        feedback = done if encrypt else block
    return bytes(out)


def render_sas(sas_type: bytes, sas_value: bytes) -> str:
    """§5.1.6: B32 renders the leftmost 20 bits of the 32-bit SAS value as four characters of
    the z-base-32 alphabet; B256 as the first two octets in hex (the caller may map them to the
    PGP word list)."""
    if sas_type == b"B32 ":
        bits = int.from_bytes(sas_value[:4], "big") >> 12
        return "".join(_B32_ALPHABET[(bits >> shift) & 0x1F] for shift in (15, 10, 5, 0))
    return sas_value[:2].hex()


class _KeyAgreement:
    """One side of a DH/ECDH exchange: our public value and the shared DHResult (§4.4.1)."""

    def __init__(self, kind: bytes) -> None:
        self.kind = kind
        if kind in (b"DH3k", b"DH2k"):
            prime = _MODP_3072 if kind == b"DH3k" else _MODP_2048
            self._prime = prime
            with warnings.catch_warnings():  # FFDH is what RFC 6189 mandates (DH3k), still
                warnings.simplefilter("ignore")
                # OpenSSL knows the RFC 3526 groups and picks a short secret exponent for them
                # (RFC 3526 §8: twice the group's strength), as §4.4.1.1 allows.
                self._dh = dh.DHParameterNumbers(prime, 2).parameters().generate_private_key()
            y = self._dh.public_key().public_numbers().y
            self.public_value = y.to_bytes(_PV_OCTETS[kind], "big")
        elif kind == b"EC25":
            self._ec = ec.generate_private_key(ec.SECP256R1())
            point = self._ec.public_key().public_numbers()
            self.public_value = point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
        elif kind == b"X255":
            self._x = x25519.X25519PrivateKey.generate()
            self.public_value = self._x.public_key().public_bytes_raw()
        else:  # pragma: no cover - ZrtpAlgorithms refuses other names
            raise ValueError(f"unsupported key agreement {kind!r}")

    def shared(self, their_value: bytes) -> bytes | None:
        """DHResult (§4.4.1.4), or ``None`` for a public value §4.4.1.1 tells us to refuse."""
        if len(their_value) != _PV_OCTETS[self.kind]:
            return None
        try:
            if self.kind in (b"DH3k", b"DH2k"):
                prime = self._prime
                y = int.from_bytes(their_value, "big")
                if not 1 < y < prime - 1:  # §4.4.1.1: pv must not be 1 or p-1 (nor 0, p)
                    return None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    peer = dh.DHPublicNumbers(y, dh.DHParameterNumbers(prime, 2)).public_key()
                    return self._dh.exchange(peer).rjust(_PV_OCTETS[self.kind], b"\x00")
            if self.kind == b"EC25":
                x = int.from_bytes(their_value[:32], "big")
                y = int.from_bytes(their_value[32:], "big")
                peer_ec = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
                return self._ec.exchange(ec.ECDH(), peer_ec)  # the x-coordinate, 32 octets
            peer_x = x25519.X25519PublicKey.from_public_bytes(their_value)
            return self._x.exchange(peer_x)
        except (ValueError, InvalidKey):  # not on the curve, all-zero X25519 result...
            return None


# -- messages ----------------------------------------------------------------------------------


def _message(kind: bytes, body: bytes) -> bytes:
    """§5.1: preamble, length in 32-bit words (the whole message), the 8-octet type block."""
    return struct.pack("!HH", PREAMBLE, (12 + len(body)) // 4) + kind.ljust(8) + body


@dataclass(frozen=True, slots=True)
class _Hello:
    raw: bytes
    version: bytes
    h3: bytes
    zid: bytes
    passive: bool
    hashes: tuple[bytes, ...]
    ciphers: tuple[bytes, ...]
    auth_tags: tuple[bytes, ...]
    key_agreements: tuple[bytes, ...]
    sas_types: tuple[bytes, ...]
    mac: bytes


def _parse_hello(message: bytes) -> _Hello | None:
    """§5.2; ``None`` when malformed."""
    if len(message) < 88:
        return None
    version, h3, zid = message[12:16], message[32:64], message[64:76]
    (flags,) = struct.unpack_from("!I", message, 76)
    counts = [(flags >> shift) & 0xF for shift in (16, 12, 8, 4, 0)]
    if any(c > 7 for c in counts) or len(message) != 88 + 4 * sum(counts):
        return None
    offset, lists = 80, []
    for count in counts:
        lists.append(tuple(message[offset + 4 * i : offset + 4 * i + 4] for i in range(count)))
        offset += 4 * count
    return _Hello(
        message,
        version,
        h3,
        zid,
        bool(flags & 0x10000000),
        lists[0],
        lists[1],
        lists[2],
        lists[3],
        lists[4],
        message[offset : offset + 8],
    )


class ZrtpSession:
    """One ZRTP exchange on one media stream (DH mode), either role.

    ``zid`` is our persistent ZID; ``ssrc`` the stream's SSRC (the packets' source identifier,
    §5); ``lookup(peer_zid)`` returns what the cache holds for a peer (or ``None``);
    ``their_hello_hash`` is the peer's ``a=zrtp-hash`` value (§8.1), checked against its Hello
    when given. The whole exchange must end within ``timeout`` seconds of :meth:`start` (the
    responder retransmits nothing, so this is what ends a silent peer). ``random_bytes`` is
    injectable for tests only.

    States: ``discovery`` (Hellos), ``committed`` (we sent Commit), ``responder`` (we answered a
    Commit), ``confirming`` (initiator: Confirm2 sent), ``secure``, ``failed``.
    """

    def __init__(
        self,
        *,
        zid: bytes,
        ssrc: int,
        lookup: Callable[[bytes], RetainedSecrets | None] = lambda zid: None,
        their_hello_hash: str | None = None,
        algorithms: ZrtpAlgorithms = DEFAULT_ALGORITHMS,
        timeout: float = DEFAULT_TIMEOUT,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(zid) != ZID_OCTETS:
            raise ValueError("a ZID is 12 octets")
        self.zid = zid
        self.ssrc = ssrc & 0xFFFFFFFF
        self.algorithms = algorithms
        self._lookup = lookup
        self._random = random_bytes
        self._their_hello_hash = their_hello_hash
        # §5: starts anywhere; low enough never to wrap (bzrtp drops a sequence number that is
        # not above the last one, wrap or not).
        self._seq = int.from_bytes(random_bytes(2), "big") & 0x3FFF
        # §9: the hash chain; H3 goes in Hello, H2 in Commit, H1 in DHPart, H0 in Confirm.
        self._h0 = random_bytes(32)
        self._h1 = _sha256(self._h0)
        self._h2 = _sha256(self._h1)
        self._h3 = _sha256(self._h2)
        self._hello = self._build_hello()
        self.state = "discovery"
        self.failure: str | None = None
        self.result: ZrtpResult | None = None
        #: Packets ignored, by reason (bounded): what the logs and tests look at.
        self.ignored: dict[str, int] = {}
        self.received = 0
        self._their_hello: _Hello | None = None
        self._hello_acked = False
        self._started = False
        self._commit: bytes | None = None  # the Commit of this exchange (ours or theirs)
        self._dhpart1: bytes | None = None
        self._dhpart2: bytes | None = None
        self._confirm1: bytes | None = None
        self._confirm2: bytes | None = None
        self._initiator = False
        self._agreement: _KeyAgreement | None = None
        self._chosen: dict[str, bytes] = {}
        self._secrets: RetainedSecrets | None = None
        self._keys: dict[str, bytes] = {}
        self._their_commit_h2: bytes | None = None
        self._their_dh_h1: bytes | None = None
        self._s1_matched = False
        self._peer_verified = False
        # retransmission: what, when next, how many so far, current interval, which timer
        self._pending: bytes | None = None
        self._deadline: float | None = None
        self._retries = 0
        self._interval = 0.0
        self._timer = ""
        self._timeout = timeout
        self._give_up: float | None = None  # start + timeout: the responder has no T2

    def __repr__(self) -> str:  # never the secrets
        sas = self.result.sas if self.result else None
        return f"ZrtpSession(state={self.state}, sas={sas}, failure={self.failure!r})"

    # -- the public surface ---------------------------------------------------------------------

    @property
    def hello_hash(self) -> str:
        """Our ``a=zrtp-hash`` value (§8.1): version, a space, the hex SHA-256 of our Hello."""
        return f"{PROTOCOL_VERSION.decode()} {_sha256(self._hello).hex()}"

    def expect_hello_hash(self, value: str) -> None:
        """The peer's ``a=zrtp-hash`` (§8.1), learnt from its SDP after we made ours: its
        Hello must hash to it, or the exchange fails."""
        if self._their_hello is None:
            self._their_hello_hash = value

    @property
    def done(self) -> bool:
        return self.state in ("secure", "failed")

    def start(self, now: float) -> list[bytes]:
        """Begin discovery: our first Hello, then T1 retransmits it (§6)."""
        if self._started or self.done:
            return []
        self._started = True
        self._give_up = now + self._timeout
        return self._send_with_timer(self._hello, now, "T1")

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next, or ``None``."""
        if self.done:
            return None
        times = [t for t in (self._deadline, self._give_up) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[bytes]:
        """Retransmit what is pending (§6), or fail when its retransmissions are used up or the
        exchange took longer than ``timeout``."""
        if self.done:
            return []
        if self._give_up is not None and now >= self._give_up:
            return self._fail(f"ZRTP timeout: not secure after {self._timeout:g} s", error=None)
        if self._deadline is None or now < self._deadline or self._pending is None:
            return []
        limit = T1_MAX_RETRANSMISSIONS if self._timer == "T1" else T2_MAX_RETRANSMISSIONS
        cap = T1_CAP if self._timer == "T1" else T2_CAP
        if self._retries >= limit:
            what = "Hello" if self._timer == "T1" else "the exchange"
            return self._fail(f"ZRTP timeout: no answer to {what} (RFC 6189 §6)", error=None)
        self._retries += 1
        self._interval = min(self._interval * 2, cap)
        self._deadline = now + self._interval
        return [self._packet(self._pending)]

    def receive(self, packet: bytes, now: float) -> list[bytes]:
        """Take one datagram the endpoint classified as ZRTP; return what to send."""
        self.received += 1
        if self.state == "failed":
            return self._ignore("after failure")
        message = self._unwrap(packet)
        if message is None:
            return []
        kind = message[4:12]
        handler = _HANDLERS.get(kind)
        if handler is None:
            return self._ignore(f"unknown message {kind.strip()!r}")
        return handler(self, message, now)

    # -- framing --------------------------------------------------------------------------------

    def _packet(self, message: bytes) -> bytes:
        """§5: 0001 + zeros, sequence number, magic cookie, SSRC, the message, CRC-32C."""
        self._seq = (self._seq + 1) & 0xFFFF
        head = struct.pack("!HH4sI", 0x1000, self._seq, MAGIC, self.ssrc) + message
        return head + struct.pack("<I", crc32c(head))  # RFC 4960 App. B: least octet first

    def _unwrap(self, packet: bytes) -> bytes | None:
        size = len(packet)
        if size < HEADER_OCTETS + 12 + 4 or size > MAX_PACKET_OCTETS or size % 4:
            self._ignore("bad packet length")
            return None
        if packet[0] & 0xF0 != 0x10 or packet[4:8] != MAGIC:
            self._ignore("not a ZRTP packet")
            return None
        (crc,) = struct.unpack_from("<I", packet, size - 4)
        if crc32c(packet[:-4]) != crc:
            self._ignore("bad CRC")
            return None
        message = packet[HEADER_OCTETS:-4]
        preamble, words = struct.unpack_from("!HH", message)
        if preamble != PREAMBLE or words * 4 != len(message):
            self._ignore("bad message length")
            return None
        return message

    def _ignore(self, reason: str) -> list[bytes]:
        if reason in self.ignored or len(self.ignored) < _MAX_IGNORED_REASONS:
            self.ignored[reason] = self.ignored.get(reason, 0) + 1
        return []

    def _send_with_timer(self, message: bytes, now: float, timer: str) -> list[bytes]:
        self._pending = message
        self._timer = timer
        self._retries = 0
        self._interval = T1_INITIAL if timer == "T1" else T2_INITIAL
        self._deadline = now + self._interval
        return [self._packet(message)]

    def _stop_timer(self) -> None:
        self._pending = None
        self._deadline = None

    def _fail(self, reason: str, *, error: int | None) -> list[bytes]:
        """End the exchange (§5.9: send Error with ``error`` when the peer should know)."""
        self.state = "failed"
        self.failure = reason
        self._stop_timer()
        self._keys.clear()
        if error is None:
            return []
        return [self._packet(_message(b"Error", struct.pack("!I", error)))]

    # -- Hello / HelloACK (§4.1) -----------------------------------------------------------------

    def _build_hello(self) -> bytes:
        a = self.algorithms
        lists = (a.hashes, a.ciphers, a.auth_tags, a.key_agreements, a.sas_types)
        counts = 0
        for n, values in enumerate(lists):
            counts |= len(values) << (16 - 4 * n)
        body = (
            PROTOCOL_VERSION
            + CLIENT_ID
            + self._h3
            + self.zid
            + struct.pack("!I", counts)
            + b"".join(b"".join(values) for values in lists)
        )
        unsigned = _message(b"Hello", body + bytes(MAC_OCTETS))[:-MAC_OCTETS]
        return unsigned + _mac(self._h2, unsigned)

    def _on_hello(self, message: bytes, now: float) -> list[bytes]:
        hello = _parse_hello(message)
        if hello is None:
            return self._ignore("malformed Hello")
        if self._their_hello is not None:
            if message != self._their_hello.raw:
                return self._ignore("a different Hello")
            return [self._packet(_message(b"HelloACK", b""))]  # §6: ACK every retransmission
        if hello.version[:1] != b"1":
            return self._fail(
                f"ZRTP version {hello.version!r} not supported", error=0x30
            )  # §5.9 Unsupported ZRTP version
        if hello.zid == self.zid:
            return self._fail("ZRTP peer has our ZID (a loop?)", error=0x90)  # §5.9 ZID collision
        if self._their_hello_hash is not None and not self._hello_hash_matches(hello.raw):
            return self._fail("ZRTP Hello does not match a=zrtp-hash (RFC 6189 §8.1)", error=None)
        self._their_hello = hello
        self._secrets = self._lookup(hello.zid)
        out = [self._packet(_message(b"HelloACK", b""))]
        if not self._started:
            out += self.start(now)
        if self._hello_acked and self.state == "discovery":
            out += self._commit_now(now)
        return out

    def _hello_hash_matches(self, raw: bytes) -> bool:
        text = (self._their_hello_hash or "").strip().split()
        if len(text) != 2:
            return False
        try:
            wanted = bytes.fromhex(text[1])
        except ValueError:
            return False
        return _equal(_sha256(raw), wanted)

    def _on_hello_ack(self, message: bytes, now: float) -> list[bytes]:
        if len(message) != 12:
            return self._ignore("malformed HelloACK")
        if self.state != "discovery":
            return self._ignore("late HelloACK")
        self._hello_acked = True
        if self._timer == "T1":
            self._stop_timer()
        if self._their_hello is not None:
            return self._commit_now(now)
        return []

    # -- negotiation (§4.1.2) --------------------------------------------------------------------

    def _negotiate(self, hello: _Hello) -> dict[str, bytes] | str:
        """Our choice of algorithms against their Hello, or why there is none."""
        ours = self.algorithms
        chosen: dict[str, bytes] = {}
        for name in ("hashes", "ciphers", "auth_tags", "sas_types"):
            theirs = set(getattr(hello, name)) | set(_MANDATORY[name])
            pick = next((v for v in getattr(ours, name) if v in theirs), None)
            if pick is None:
                return f"no common ZRTP {name}"
            chosen[name] = pick
        theirs_ka = [*hello.key_agreements, b"DH3k"]
        common = [k for k in ours.key_agreements if k in theirs_ka]
        if not common:
            return "no common ZRTP key agreement"
        their_first = next((k for k in theirs_ka if k in common), common[0])
        # §4.1.2: if our first choices differ, take the one that costs less to compute.
        pick_ka = common[0]
        if their_first != pick_ka:
            pick_ka = min(pick_ka, their_first, key=_COST_ORDER.index)
        chosen["key_agreements"] = pick_ka
        return chosen

    def _shared_ids(self, role: bytes) -> bytes:
        """§4.3.1: rs1ID, rs2ID, auxsecretID, pbxsecretID for ``role`` ('Initiator' or
        'Responder'); random where we have no secret."""
        cached = self._secrets
        ids = []
        for secret in (cached.rs1 if cached else None, cached.rs2 if cached else None):
            ids.append(_mac(secret, role) if secret else self._random(8))
        ids.append(self._random(8))  # no auxiliary secret (§4.3: no SRTCP-derived aux secret)
        ids.append(self._random(8))  # no PBX secret
        return b"".join(ids)

    def _dhpart(self, kind: bytes, role: bytes) -> bytes:
        assert self._agreement is not None
        body = self._h1 + self._shared_ids(role) + self._agreement.public_value
        unsigned = _message(kind, body + bytes(MAC_OCTETS))[:-MAC_OCTETS]
        return unsigned + _mac(self._h0, unsigned)  # §5.5: keyed with H0, checked at Confirm

    def _commit_now(self, now: float) -> list[bytes]:
        """§4.2: once we hold their Hello and they acknowledged ours, we commit."""
        hello = self._their_hello
        assert hello is not None
        if hello.passive:  # §4.1.1: a passive endpoint never commits; fine, we do
            pass
        chosen = self._negotiate(hello)
        if isinstance(chosen, str):  # §5.9: 0x51..0x55, the type that has no common value
            codes = {"hashes": 0x51, "ciphers": 0x52, "key agreement": 0x53, "auth_tags": 0x54}
            code = next((c for word, c in codes.items() if word in chosen), 0x55)
            return self._fail(chosen, error=code)
        self._chosen = chosen
        self._agreement = _KeyAgreement(chosen["key_agreements"])
        self._dhpart2 = self._dhpart(b"DHPart2", b"Initiator")
        hvi = _sha256(self._dhpart2, hello.raw)  # §4.4.1.1: hash(DHPart2 ‖ responder's Hello)
        body = (
            self._h2
            + self.zid
            + chosen["hashes"]
            + chosen["ciphers"]
            + chosen["auth_tags"]
            + chosen["key_agreements"]
            + chosen["sas_types"]
            + hvi
        )
        unsigned = _message(b"Commit", body + bytes(MAC_OCTETS))[:-MAC_OCTETS]
        self._commit = unsigned + _mac(self._h1, unsigned)
        self.state = "committed"
        self._initiator = True
        return self._send_with_timer(self._commit, now, "T2")

    # -- Commit (§4.2, §5.4) ----------------------------------------------------------------------

    def _on_commit(self, message: bytes, now: float) -> list[bytes]:
        if len(message) != 116:
            return self._ignore("malformed or non-DH Commit")  # Multistream/Preshared: not ours
        hello = self._their_hello
        if hello is None:
            return self._ignore("Commit before Hello")
        if self.state == "responder":
            if message == self._commit and self._dhpart1 is not None:
                return [self._packet(self._dhpart1)]  # §6: the responder resends on Commit
            return self._ignore("a second Commit")
        if self.state not in ("discovery", "committed"):
            return self._ignore("late Commit")
        h2, zid = message[12:44], message[44:56]
        algos = {
            "hashes": message[56:60],
            "ciphers": message[60:64],
            "auth_tags": message[64:68],
            "key_agreements": message[68:72],
            "sas_types": message[72:76],
        }
        hvi = message[76:108]
        if zid != hello.zid:
            return self._ignore("Commit from another ZID")
        # §9: their H2 hashes to the H3 of their Hello, and keys the Hello's MAC.
        if not _equal(_sha256(h2), hello.h3) or not _equal(
            _mac(h2, hello.raw[:-MAC_OCTETS]), hello.mac
        ):
            return self._fail(
                "ZRTP Commit does not match the peer's Hello (hash chain)", error=None
            )
        for name, value in algos.items():
            offered = getattr(self.algorithms, name)
            if value not in offered:
                code = {
                    "hashes": 0x51,
                    "ciphers": 0x52,
                    "auth_tags": 0x54,
                    "key_agreements": 0x53,
                    "sas_types": 0x55,
                }[name]
                return self._fail(
                    f"ZRTP Commit chose {name} {value!r}, which we did not offer", error=code
                )
        if self.state == "committed":
            # §4.2 contention: both committed; the higher hvi stays initiator.
            assert self._commit is not None
            if hvi <= self._commit[76:108]:
                return self._ignore("contending Commit (we stay initiator)")
            self._stop_timer()
            self._initiator = False
        self._chosen = algos
        self._their_commit_h2 = h2
        self._commit = message
        self._agreement = _KeyAgreement(algos["key_agreements"])
        self._dhpart1 = self._dhpart(b"DHPart1", b"Responder")
        self.state = "responder"
        self._stop_timer()
        return [self._packet(self._dhpart1)]

    # -- DHPart1 / DHPart2 (§4.4) -----------------------------------------------------------------

    def _parse_dhpart(self, message: bytes) -> tuple[bytes, bytes, bytes] | None:
        """(H1, the four shared secret IDs, pv), or ``None`` if the length is wrong."""
        agreement = self._agreement
        if agreement is None or len(message) != 84 + _PV_OCTETS[agreement.kind]:
            return None
        return message[12:44], message[44:76], message[76:-MAC_OCTETS]

    def _on_dhpart1(self, message: bytes, now: float) -> list[bytes]:
        if self.state != "committed":
            return self._ignore("unexpected DHPart1")
        parts = self._parse_dhpart(message)
        hello = self._their_hello
        if parts is None or hello is None:
            return self._ignore("malformed DHPart1")
        h1, ids, pv = parts
        h2 = _sha256(h1)
        # §9: the responder never sent Commit: hash(hash(H1)) must be its Hello's H3, and H2
        # keys its Hello's MAC.
        if not _equal(_sha256(h2), hello.h3) or not _equal(
            _mac(h2, hello.raw[:-MAC_OCTETS]), hello.mac
        ):
            return self._fail(
                "ZRTP DHPart1 does not match the peer's Hello (hash chain)", error=None
            )
        self._their_dh_h1 = h1
        self._dhpart1 = message
        out = self._derive(pv, ids, their_role=b"Responder")
        if out is not None:
            return out
        assert self._dhpart2 is not None
        return self._send_with_timer(self._dhpart2, now, "T2")

    def _on_dhpart2(self, message: bytes, now: float) -> list[bytes]:
        if self.state == "secure" or (self.state == "responder" and self._confirm1 is not None):
            if message == self._dhpart2 and self._confirm1 is not None:
                return [self._packet(self._confirm1)]  # §6: resend Confirm1 on DHPart2
            return self._ignore("unexpected DHPart2")
        if self.state != "responder":
            return self._ignore("unexpected DHPart2")
        parts = self._parse_dhpart(message)
        hello_ours = self._hello
        if parts is None:
            return self._ignore("malformed DHPart2")
        assert self._commit is not None and self._their_commit_h2 is not None
        h1, ids, pv = parts
        # §4.4.1.1: the commitment: hvi = hash(DHPart2 ‖ our Hello).
        if not _equal(_sha256(message, hello_ours), self._commit[76:108]):
            return self._fail("ZRTP DHPart2 does not match the Commit's hvi", error=0x62)
        # §9: their H1 hashes to the Commit's H2, and keys the Commit's MAC.
        if not _equal(_sha256(h1), self._their_commit_h2) or not _equal(
            _mac(h1, self._commit[:-MAC_OCTETS]), self._commit[-MAC_OCTETS:]
        ):
            return self._fail("ZRTP DHPart2 does not match the Commit (hash chain)", error=None)
        self._their_dh_h1 = h1
        self._dhpart2 = message
        out = self._derive(pv, ids, their_role=b"Initiator")
        if out is not None:
            return out
        self._confirm1 = self._confirm(b"Confirm1")
        return [self._packet(self._confirm1)]

    def _derive(self, pv: bytes, their_ids: bytes, *, their_role: bytes) -> list[bytes] | None:
        """§4.4.1.4: DHResult, total_hash, s0 and every key from it; ``None`` on success."""
        agreement = self._agreement
        hello = self._their_hello
        assert agreement is not None and hello is not None
        result = agreement.shared(pv)
        if result is None:
            return self._fail("ZRTP DH public value refused (RFC 6189 §4.4.1.1)", error=0x61)
        if self._initiator:
            zid_i, zid_r, responder_hello = self.zid, hello.zid, hello.raw
        else:
            zid_i, zid_r, responder_hello = hello.zid, self.zid, self._hello
        assert self._commit and self._dhpart1 and self._dhpart2
        total_hash = _sha256(responder_hello, self._commit, self._dhpart1, self._dhpart2)
        context = zid_i + zid_r + total_hash
        s1 = self._match_secret(their_ids, their_role)
        s0 = _sha256(
            struct.pack("!I", 1),
            result,
            b"ZRTP-HMAC-KDF",
            zid_i,
            zid_r,
            total_hash,
            struct.pack("!I", len(s1)),
            s1,
            struct.pack("!I", 0),  # no auxsecret
            struct.pack("!I", 0),  # no pbxsecret
        )
        cipher_octets = _CIPHER_KEY_OCTETS[self._chosen["ciphers"]]
        bits = 8 * cipher_octets
        k = self._keys
        for side, name in ((b"Initiator", "i"), (b"Responder", "r")):
            k["srtpkey" + name] = _kdf(s0, side + b" SRTP master key", context, bits)
            k["srtpsalt" + name] = _kdf(s0, side + b" SRTP master salt", context, 112)
            k["mackey" + name] = _kdf(s0, side + b" HMAC key", context, 256)
            k["zrtpkey" + name] = _kdf(s0, side + b" ZRTP key", context, bits)
        k["sashash"] = _kdf(s0, b"SAS", context, 256)
        k["rs1"] = _kdf(s0, b"retained secret", context, 256)
        return None

    def _match_secret(self, their_ids: bytes, their_role: bytes) -> bytes:
        """§4.3.2: which retained secret both sides hold (s1), or ``b""``."""
        cached = self._secrets
        their_rs1, their_rs2 = their_ids[:8], their_ids[8:16]
        self._s1_matched = False
        if cached is None:
            return b""
        ours = [s for s in (cached.rs1, cached.rs2) if s]
        for theirs in (their_rs1, their_rs2):
            for secret in ours:
                if theirs is their_rs2 and secret is cached.rs2:
                    continue  # §4.3.2: rs2 against rs2 is not a match
                if _equal(_mac(secret, their_role), theirs):
                    self._s1_matched = True
                    return secret
        return b""

    # -- Confirm1 / Confirm2 / Conf2ACK (§4.6, §5.7) ---------------------------------------------

    def _confirm(self, kind: bytes) -> bytes:
        name = "i" if self._initiator else "r"
        cached = self._secrets
        verified = bool(cached and cached.verified and self._s1_matched)
        flags = _FLAG_V if verified else 0  # §5.7: E V A D are the low four bits
        plain = self._h0 + struct.pack("!II", flags, 0xFFFFFFFF)  # sig len 0; cache forever
        iv = self._random(16)
        encrypted = _aes_cfb(self._keys["zrtpkey" + name], iv, plain, encrypt=True)
        confirm_mac = _mac(self._keys["mackey" + name], encrypted)
        return _message(kind, confirm_mac + iv + encrypted)

    def _open_confirm(self, message: bytes) -> tuple[bytes, int] | None:
        """Check and decrypt the peer's Confirm: (their H0, flags), or ``None``."""
        if len(message) != 76:
            return None
        name = "r" if self._initiator else "i"
        confirm_mac, iv, encrypted = message[12:20], message[20:36], message[36:]
        if not _equal(_mac(self._keys["mackey" + name], encrypted), confirm_mac):
            return None
        plain = _aes_cfb(self._keys["zrtpkey" + name], iv, encrypted, encrypt=False)
        (flags,) = struct.unpack_from("!I", plain, 32)
        return plain[:32], flags

    def _their_dhpart_ok(self, h0: bytes) -> bool:
        """§9: their H0 hashes to the H1 of their DHPart and keys its MAC."""
        their_dhpart = self._dhpart1 if self._initiator else self._dhpart2
        assert self._their_dh_h1 is not None and their_dhpart is not None
        return _equal(_sha256(h0), self._their_dh_h1) and _equal(
            _mac(h0, their_dhpart[:-MAC_OCTETS]), their_dhpart[-MAC_OCTETS:]
        )

    def _on_confirm1(self, message: bytes, now: float) -> list[bytes]:
        if not self._initiator or self.state != "committed" or "mackeyr" not in self._keys:
            repeated = self._initiator and message == self._confirm1
            if repeated and self.state in ("confirming", "secure"):
                return self._ignore("repeated Confirm1")
            return self._ignore("unexpected Confirm1")
        opened = self._open_confirm(message)
        if opened is None:
            return self._ignore("Confirm1 fails its MAC")
        h0, flags = opened
        if not self._their_dhpart_ok(h0):
            return self._fail("ZRTP Confirm1 does not match DHPart1 (hash chain)", error=None)
        self._confirm1 = message
        self._peer_verified = bool(flags & _FLAG_V)
        self._confirm2 = self._confirm(b"Confirm2")
        self.state = "confirming"
        return self._send_with_timer(self._confirm2, now, "T2")

    def _on_confirm2(self, message: bytes, now: float) -> list[bytes]:
        ack = self._packet(_message(b"Conf2ACK", b""))
        if self.state == "secure" and not self._initiator:
            if message == self._confirm2:
                return [ack]  # §6: every Confirm2 retransmission gets a Conf2ACK
            return self._ignore("replayed or foreign Confirm2")
        if self._initiator or self.state != "responder" or self._confirm1 is None:
            return self._ignore("unexpected Confirm2")
        opened = self._open_confirm(message)
        if opened is None:
            return self._ignore("Confirm2 fails its MAC")
        h0, flags = opened
        if not self._their_dhpart_ok(h0):
            return self._fail("ZRTP Confirm2 does not match DHPart2 (hash chain)", error=None)
        self._confirm2 = message
        self._peer_verified = bool(flags & _FLAG_V)
        self._complete()
        return [ack]

    def _on_conf2ack(self, message: bytes, now: float) -> list[bytes]:
        if not self._initiator or self.state != "confirming":
            return self._ignore("unexpected Conf2ACK")
        self._complete()
        return []

    def _complete(self) -> None:
        """§4.6.1: keys for SRTP, the SAS, and the cache update (rs2 ← rs1, rs1 ← new)."""
        hello = self._their_hello
        assert hello is not None
        k = self._keys
        ours, theirs = ("i", "r") if self._initiator else ("r", "i")
        sas_type = self._chosen["sas_types"]
        sas = render_sas(sas_type, k["sashash"][:4])  # §4.5.2: sasvalue, leftmost 32 bits
        cached = self._secrets
        had_secret = bool(cached and (cached.rs1 or cached.rs2))
        mismatch = had_secret and not self._s1_matched
        # §4.3.2/§7.1: a mismatch clears the verified flag; a match keeps it.
        verified = bool(cached and cached.verified and self._s1_matched)
        update = RetainedSecrets(
            rs1=k["rs1"], rs2=cached.rs1 if cached and cached.rs1 else None, verified=verified
        )
        c = self._chosen
        algorithms = "/".join(
            value.decode(errors="replace").strip()
            for value in (
                c["key_agreements"],
                c["hashes"],
                c["ciphers"],
                c["auth_tags"],
                c["sas_types"],
            )
        )
        self.result = ZrtpResult(
            suite=_SUITES[(c["ciphers"], c["auth_tags"])],
            our_key=k["srtpkey" + ours] + k["srtpsalt" + ours],
            their_key=k["srtpkey" + theirs] + k["srtpsalt" + theirs],
            sas=sas,
            peer_zid=hello.zid,
            initiator=self._initiator,
            algorithms=algorithms,
            cache_match=self._s1_matched,
            cache_mismatch=mismatch,
            verified=verified,
            peer_verified=self._peer_verified,
            cache_update=update,
        )
        self.state = "secure"
        self._stop_timer()
        k.clear()  # the session keys live on in the result only

    # -- Error, Ping and the rest (§5.9-§5.16) ----------------------------------------------------

    def _on_error(self, message: bytes, now: float) -> list[bytes]:
        if len(message) != 16:
            return self._ignore("malformed Error")
        (code,) = struct.unpack_from("!I", message, 12)
        out = [self._packet(_message(b"ErrorACK", b""))]
        if self.state != "secure":
            out += self._fail(f"ZRTP peer sent Error 0x{code:x} (RFC 6189 §5.9)", error=None)
        return out

    def _on_ping(self, message: bytes, now: float) -> list[bytes]:
        if len(message) != 24:
            return self._ignore("malformed Ping")
        endpoint_hash = message[16:24]
        ours = _sha256(self.zid)[:8]  # §5.15: our endpoint hash
        body = PROTOCOL_VERSION + ours + endpoint_hash + struct.pack("!I", self.ssrc)
        return [self._packet(_message(b"PingACK", body))]

    def _on_other(self, message: bytes, now: float) -> list[bytes]:
        return self._ignore(f"unsupported message {message[4:12].strip()!r}")


_HANDLERS: Final[dict[bytes, Callable[[ZrtpSession, bytes, float], list[bytes]]]] = {
    b"Hello   ": ZrtpSession._on_hello,
    b"HelloACK": ZrtpSession._on_hello_ack,
    b"Commit  ": ZrtpSession._on_commit,
    b"DHPart1 ": ZrtpSession._on_dhpart1,
    b"DHPart2 ": ZrtpSession._on_dhpart2,
    b"Confirm1": ZrtpSession._on_confirm1,
    b"Confirm2": ZrtpSession._on_confirm2,
    b"Conf2ACK": ZrtpSession._on_conf2ack,
    b"Error   ": ZrtpSession._on_error,
    b"ErrorACK": ZrtpSession._on_other,
    b"Ping    ": ZrtpSession._on_ping,
    b"GoClear ": ZrtpSession._on_other,
    b"SASrelay": ZrtpSession._on_other,
}


def supported_names(values: Sequence[bytes]) -> str:
    """``b"DH3k", b"X255"`` → ``"DH3k X255"`` for logs and docs."""
    return " ".join(v.decode(errors="replace").strip() for v in values)


class ZrtpCache(Protocol):
    """Where our ZID and the peers' retained secrets live (§4.9): the engine's store, or
    :class:`MemoryZrtpCache` for a process that keeps nothing."""

    def zrtp_zid(self) -> bytes:
        """Our ZID: made once, then always the same."""
        ...

    def zrtp_secrets(self, peer_zid: bytes) -> RetainedSecrets | None:
        """What we retained for ``peer_zid``, if anything."""
        ...

    def save_zrtp_secrets(self, peer_zid: bytes, retained: RetainedSecrets) -> None:
        """Keep ``retained`` for ``peer_zid`` (after a completed exchange, §4.6.1)."""
        ...


class MemoryZrtpCache:
    """A :class:`ZrtpCache` in memory: continuity lasts as long as the object (tests, the
    ``callxml call`` softphone). Bounded: the oldest peer goes first past ``max_peers``."""

    def __init__(self, zid: bytes | None = None, *, max_peers: int = 1000) -> None:
        self._zid = zid or new_zid()
        self._peers: dict[bytes, RetainedSecrets] = {}
        self._max = max_peers

    def zrtp_zid(self) -> bytes:
        return self._zid

    def zrtp_secrets(self, peer_zid: bytes) -> RetainedSecrets | None:
        return self._peers.get(peer_zid)

    def save_zrtp_secrets(self, peer_zid: bytes, retained: RetainedSecrets) -> None:
        self._peers.pop(peer_zid, None)
        while len(self._peers) >= self._max:
            self._peers.pop(next(iter(self._peers)))
        self._peers[peer_zid] = retained

    def set_verified(self, peer_zid: bytes, verified: bool = True) -> None:
        """A person compared the SAS with the peer's (§7.1)."""
        entry = self._peers.get(peer_zid)
        if entry is not None:
            self._peers[peer_zid] = RetainedSecrets(entry.rs1, entry.rs2, verified)
