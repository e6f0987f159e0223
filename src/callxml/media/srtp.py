"""SRTP/SRTCP sessions (RFC 3711) on libsrtp through pylibsrtp.

Owns the suite table (RFC 4568 §6.2: key, salt and tag sizes), a session that protects what we
send with *our* key and unprotects what we receive with *their* key, and the drop counters for
packets that fail authentication or the replay check (RFC 3711 §3.3.2). Keys arrive as the
30-octet master key ‖ master salt that the SDES layer put in ``a=crypto`` (RFC 4568 §6.1); this
module never generates, logs or prints them: ``repr`` shows the suite and counters only.

It must not know about SDP or sockets. Key derivation rate is 0 and MKI is never used (our SDES
policy refuses both), so a packet carrying an MKI fails authentication here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pylibsrtp

from callxml.errors import MediaError


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """Wire sizes of one SDES crypto suite (RFC 4568 §6.2.1-6.2.2)."""

    name: str
    profile: int
    key_octets: int
    salt_octets: int
    rtp_tag_octets: int
    rtcp_tag_octets: int

    @property
    def key_salt_octets(self) -> int:
        return self.key_octets + self.salt_octets


# RFC 4568 §6.2.2: AES_CM_128_HMAC_SHA1_32 truncates the SRTP tag only; SRTCP keeps 80 bits.
SUITES: dict[str, SrtpSuite] = {
    s.name: s
    for s in (
        SrtpSuite(
            "AES_CM_128_HMAC_SHA1_80",
            pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            16,
            14,
            10,
            10,
        ),
        SrtpSuite(
            "AES_CM_128_HMAC_SHA1_32",
            pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
            16,
            14,
            4,
            10,
        ),
    )
}

DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"
REPLAY_WINDOW = 128  # RFC 3711 §3.3.2 asks for at least 64

_AUTH_FAIL = "authentication failure"
_REPLAY_FAILS = frozenset(
    {"replay check failed (bad index)", "replay check failed (index too old)"}
)


def get_suite(name: str) -> SrtpSuite:
    """Look a suite up by its RFC 4568 name; unknown names are a :class:`MediaError`."""
    try:
        return SUITES[name]
    except KeyError:
        raise MediaError(f"unsupported SRTP crypto suite {name!r}") from None


def generate_key_salt(suite: str = DEFAULT_SUITE) -> bytes:
    """Fresh random master key ‖ salt for ``suite`` (one per call and direction)."""
    return secrets.token_bytes(get_suite(suite).key_salt_octets)


def _policy(suite: SrtpSuite, key_salt: bytes, ssrc_type: int) -> pylibsrtp.Policy:
    if not isinstance(key_salt, bytes | bytearray) or len(key_salt) != suite.key_salt_octets:
        raise MediaError(
            f"{suite.name} needs {suite.key_salt_octets} octets of master key and salt"
        )
    policy = pylibsrtp.Policy(key=bytes(key_salt), ssrc_type=ssrc_type, srtp_profile=suite.profile)
    policy.window_size = REPLAY_WINDOW
    policy.allow_repeat_tx = False
    return policy


class SrtpSession:
    """Both directions of one SRTP leg: protect with ``our_key``, unprotect with ``their_key``.

    Either key may be ``None`` for a send-only or receive-only use (the benchmark, tests).
    ``unprotect``/``unprotect_rtcp`` return ``None`` for a packet that must be dropped and count
    why; they never raise for peer input, so the receive hot path stays exception-free.
    """

    __slots__ = (
        "_rx",
        "_tx",
        "auth_failures",
        "other_failures",
        "replays",
        "suite",
    )

    def __init__(
        self, suite: str | SrtpSuite, *, our_key: bytes | None, their_key: bytes | None
    ) -> None:
        self.suite = suite if isinstance(suite, SrtpSuite) else get_suite(suite)
        self._tx = (
            pylibsrtp.Session(_policy(self.suite, our_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
            if our_key is not None
            else None
        )
        self._rx = (
            pylibsrtp.Session(_policy(self.suite, their_key, pylibsrtp.Policy.SSRC_ANY_INBOUND))
            if their_key is not None
            else None
        )
        self.auth_failures = 0
        self.replays = 0
        self.other_failures = 0

    def __repr__(self) -> str:  # never show key material
        return (
            f"SrtpSession(suite={self.suite.name}, keys=<hidden>, "
            f"auth_failures={self.auth_failures}, replays={self.replays})"
        )

    # -- sending -------------------------------------------------------------------------------

    def protect(self, rtp: bytes) -> bytes:
        """RTP → SRTP (RFC 3711 §3.3). A packet libsrtp refuses is our bug: :class:`MediaError`."""
        if self._tx is None:
            raise MediaError("this SRTP session has no sending key")
        try:
            return self._tx.protect(rtp)  # type: ignore[no-any-return]
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise MediaError(f"SRTP protect failed: {exc}") from None

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """RTCP → SRTCP (RFC 3711 §3.4), encrypted, with the E flag and SRTCP index."""
        if self._tx is None:
            raise MediaError("this SRTP session has no sending key")
        try:
            return self._tx.protect_rtcp(rtcp)  # type: ignore[no-any-return]
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise MediaError(f"SRTCP protect failed: {exc}") from None

    # -- receiving -----------------------------------------------------------------------------

    def unprotect(self, srtp: bytes) -> bytes | None:
        """SRTP → RTP, or ``None`` (counted) when authentication or the replay check fails."""
        rx = self._rx
        if rx is None:
            raise MediaError("this SRTP session has no receiving key")
        try:
            return rx.unprotect(srtp)  # type: ignore[no-any-return]
        except pylibsrtp.Error as exc:
            self._count(str(exc))
        except (ValueError, TypeError):
            self.other_failures += 1
        return None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes | None:
        """SRTCP → RTCP, or ``None`` (counted) when authentication or the replay check fails."""
        rx = self._rx
        if rx is None:
            raise MediaError("this SRTP session has no receiving key")
        try:
            return rx.unprotect_rtcp(srtcp)  # type: ignore[no-any-return]
        except pylibsrtp.Error as exc:
            self._count(str(exc))
        except (ValueError, TypeError):
            self.other_failures += 1
        return None

    def _count(self, reason: str) -> None:
        if reason == _AUTH_FAIL:
            self.auth_failures += 1
        elif reason in _REPLAY_FAILS:
            self.replays += 1
        else:
            self.other_failures += 1

    @property
    def dropped(self) -> int:
        """All packets refused so far."""
        return self.auth_failures + self.replays + self.other_failures
