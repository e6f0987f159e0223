"""SRTP/SRTCP sessions (RFC 3711) on libsrtp through pylibsrtp.

Owns which suites we run (:data:`PROFILES`: name → libsrtp profile; their sizes are the one
table in :mod:`callxml.media.suites`), a session that protects what we send with *our* key and
unprotects what we receive with *their* key, and the drop counters for packets that fail
authentication or the replay check (RFC 3711 §3.3.2). Keys arrive as the
30-octet master key ‖ master salt that the SDES layer put in ``a=crypto`` (RFC 4568 §6.1); this
module never generates, logs or prints them: ``repr`` shows the suite and counters only.

It must not know about SDP or sockets. Key derivation rate is 0 and MKI is never used (our SDES
policy refuses both), so a packet carrying an MKI fails authentication here.

Speed: pylibsrtp allocates a length cell and copies the result out on every call. When its cffi
binding is there (checked once at import against the public API), sessions call libsrtp directly
on one preallocated buffer, and :meth:`SrtpSession.relay_to` unprotects with one session and
re-protects with another in that same buffer — the relay's whole per-packet crypto in one copy
in and one copy out; :meth:`SrtpSession.relay_in_place` and :meth:`SrtpSession.protect_in_place`
do the same on a buffer the caller owns (the batched socket reader's slots: no copy at all),
and :meth:`SrtpSession.in_place_calls` hands out those same libsrtp calls, bound once, for a loop
over a whole batch.
Otherwise the public pylibsrtp API is used; behaviour is identical.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

import pylibsrtp

from callxml.errors import MediaError
from callxml.media.rtp import MAX_PACKET_SIZE
from callxml.media.suites import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AES_256_CM_HMAC_SHA1_32,
    AES_256_CM_HMAC_SHA1_80,
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    SUITES,
    SrtpSuite,
)

#: The suites this module runs, by name → the ``pylibsrtp.Policy`` profile that runs them. Their
#: sizes are in :data:`callxml.media.suites.SUITES`; the tests check that libsrtp agrees. libsrtp
#: numbers no profile for the RFC 6188 AES-256 counter-mode suites: they start from the AES-128
#: profile of the same tag length and get their transform from :data:`_TRANSFORMS`.
PROFILES: dict[str, int] = {
    AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    AES_256_CM_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    AES_256_CM_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    AEAD_AES_256_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


class _Transform(NamedTuple):
    """libsrtp's ``srtp_crypto_policy_t`` (srtp.h): six ints, in this order."""

    cipher_type: int
    cipher_key_len: int  # key ‖ salt
    auth_type: int
    auth_key_len: int
    auth_tag_len: int
    sec_serv: int


# libsrtp's cipher and auth type ids (crypto_types.h) and sec_serv_conf_and_auth.
_AES_ICM_128, _AES_ICM_256, _HMAC_SHA1, _CONF_AND_AUTH = 1, 5, 3, 3
#: RTP and RTCP transforms of the suites libsrtp has no profile for (RFC 6188 §3: AES-256 counter
#: mode with HMAC-SHA1; SRTCP keeps the 80-bit tag even for the _32 suite, RFC 6188 §3 / §7.1).
_TRANSFORMS: dict[str, tuple[_Transform, _Transform]] = {
    AES_256_CM_HMAC_SHA1_80: (
        _Transform(_AES_ICM_256, 46, _HMAC_SHA1, 20, 10, _CONF_AND_AUTH),
        _Transform(_AES_ICM_256, 46, _HMAC_SHA1, 20, 10, _CONF_AND_AUTH),
    ),
    AES_256_CM_HMAC_SHA1_32: (
        _Transform(_AES_ICM_256, 46, _HMAC_SHA1, 20, 4, _CONF_AND_AUTH),
        _Transform(_AES_ICM_256, 46, _HMAC_SHA1, 20, 10, _CONF_AND_AUTH),
    ),
}
#: What libsrtp fills in for the AES-128 _80 profile: the layout check before any override.
_AES128_80 = _Transform(_AES_ICM_128, 30, _HMAC_SHA1, 20, 10, _CONF_AND_AUTH)

DEFAULT_SUITE = AES_CM_128_HMAC_SHA1_80
REPLAY_WINDOW = 128  # RFC 3711 §3.3.2 asks for at least 64

MAX_PACKET_OCTETS = MAX_PACKET_SIZE  # bigger datagrams are dropped before they reach libsrtp
_BUFFER_OCTETS = 2048  # room for a maximal packet plus any SRTCP index, tag and MKI
IN_PLACE_BUFFER_OCTETS = _BUFFER_OCTETS  # what a buffer handed to the *_in_place methods holds

# libsrtp's srtp_err_status_t values (srtp.h); pylibsrtp maps them to its ERRORS texts.
_ERR_AUTH_FAIL = 7
_ERR_REPLAY_FAIL = 9
_ERR_REPLAY_OLD = 10
_AUTH_FAIL = pylibsrtp.ERRORS[_ERR_AUTH_FAIL]
_REPLAY_FAILS = frozenset({pylibsrtp.ERRORS[_ERR_REPLAY_FAIL], pylibsrtp.ERRORS[_ERR_REPLAY_OLD]})

_ffi: Any = None
_lib: Any = None
try:  # pylibsrtp's cffi module: not public API, so it is only used after the self-test below
    _binding: Any = importlib.import_module("pylibsrtp._binding")
    _ffi, _lib = _binding.ffi, _binding.lib
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed pylibsrtp
    pass


def get_suite(name: str) -> SrtpSuite:
    """The suite called ``name`` if this module runs it (:data:`PROFILES`), else a
    :class:`MediaError`: the SRTP layer takes only the RFC names it was given by the policy."""
    if name not in PROFILES:
        raise MediaError(f"unsupported SRTP crypto suite {name!r}")
    return SUITES[name]


def generate_key_salt(suite: str = DEFAULT_SUITE) -> bytes:
    """Fresh random master key ‖ salt for ``suite`` (one per call and direction)."""
    return secrets.token_bytes(get_suite(suite).key_salt_octets)


def _policy(suite: SrtpSuite, key_salt: bytes, ssrc_type: int) -> pylibsrtp.Policy:
    if not isinstance(key_salt, bytes | bytearray) or len(key_salt) != suite.key_salt_octets:
        raise MediaError(
            f"{suite.name} needs {suite.key_salt_octets} octets of master key and salt"
        )
    policy = pylibsrtp.Policy(
        key=bytes(key_salt), ssrc_type=ssrc_type, srtp_profile=PROFILES[suite.name]
    )
    transforms = _TRANSFORMS.get(suite.name)
    if transforms is not None:
        _set_transform(policy, *transforms)
    policy.window_size = REPLAY_WINDOW
    policy.allow_repeat_tx = False
    return policy


def _transform_cells(policy: pylibsrtp.Policy) -> tuple[Any, Any]:
    """The RTP and RTCP ``srtp_crypto_policy_t`` of a policy as six writable ints each."""
    cdata = policy._policy
    return (
        _ffi.cast("int *", _ffi.addressof(cdata.rtp)),
        _ffi.cast("int *", _ffi.addressof(cdata.rtcp)),
    )


def _set_transform(policy: pylibsrtp.Policy, rtp: _Transform, rtcp: _Transform) -> None:
    """Give a policy a transform libsrtp has no profile for (the AES-256 counter-mode suites).

    pylibsrtp only sets policies from profile numbers, so the six ints are written directly;
    :func:`_transforms_writable` checked the struct layout at import, and without it (or the
    cffi binding) these suites are simply not in :data:`PROFILES`.
    """
    rtp_cells, rtcp_cells = _transform_cells(policy)
    for cells, values in ((rtp_cells, rtp), (rtcp_cells, rtcp)):
        for index, value in enumerate(values):
            cells[index] = value


def _transforms_writable() -> bool:
    """Whether libsrtp's crypto policy has the layout :func:`_set_transform` writes: six ints
    that read back as the AES-128 _80 profile after libsrtp filled them in."""
    if _ffi is None:
        return False
    try:
        if _ffi.sizeof("srtp_crypto_policy_t") != 6 * _ffi.sizeof("int"):
            return False
        policy = pylibsrtp.Policy(srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        rtp_cells, rtcp_cells = _transform_cells(policy)
        return (
            _Transform(*(rtp_cells[i] for i in range(6))) == _AES128_80
            and _Transform(*(rtcp_cells[i] for i in range(6))) == _AES128_80
        )
    except Exception:  # pragma: no cover - depends on the installed pylibsrtp
        return False


if not _transforms_writable():  # pragma: no cover - depends on the installed pylibsrtp
    for _name in _TRANSFORMS:
        PROFILES.pop(_name, None)


class SrtpSession:
    """Both directions of one SRTP leg: protect with ``our_key``, unprotect with ``their_key``.

    Either key may be ``None`` for a send-only or receive-only use (the benchmark, tests).
    ``unprotect``/``unprotect_rtcp`` return ``None`` for a packet that must be dropped and count
    why; they never raise for peer input, so the receive hot path stays exception-free.
    """

    __slots__ = (
        "_buffer",
        "_cdata",
        "_length",
        "_rx",
        "_rx_ctx",
        "_size",
        "_tx",
        "_tx_ctx",
        "_view",
        "auth_failures",
        "other_failures",
        "replays",
        "suite",
    )

    def __init__(
        self, suite: str | SrtpSuite, *, our_key: bytes | None, their_key: bytes | None
    ) -> None:
        self.suite = get_suite(suite if isinstance(suite, str) else suite.name)
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
        self._tx_ctx: Any = None
        self._rx_ctx: Any = None
        if _FAST:
            self._cdata = _ffi.new("char[]", _BUFFER_OCTETS)
            self._buffer = _ffi.buffer(self._cdata)
            self._view = memoryview(self._buffer)  # item access as ints, for header rewrites
            self._length = _ffi.new("int *")
            # The same int seen from Python: a memoryview item is cheaper than a cffi one.
            self._size = memoryview(_ffi.buffer(self._length)).cast("i")
            self._tx_ctx = self._tx._srtp[0] if self._tx is not None else None
            self._rx_ctx = self._rx._srtp[0] if self._rx is not None else None

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
        ctx = self._tx_ctx
        if ctx is not None:
            size = len(rtp)
            if size > MAX_PACKET_OCTETS:
                raise MediaError("SRTP protect failed: packet too long")
            self._buffer[0:size] = rtp
            cell = self._size
            cell[0] = size
            status = _lib.srtp_protect(ctx, self._cdata, self._length)
            if status:
                raise MediaError(f"SRTP protect failed: {pylibsrtp.ERRORS[status]}")
            return self._buffer[0 : cell[0]]  # type: ignore[no-any-return]
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
        ctx = self._rx_ctx
        if ctx is not None:
            size = len(srtp)
            if size > MAX_PACKET_OCTETS:
                self.other_failures += 1
                return None
            buffer = self._buffer
            buffer[0:size] = srtp
            cell = self._size
            cell[0] = size
            status = _lib.srtp_unprotect(ctx, self._cdata, self._length)
            if status:
                self.count_status(status)
                return None
            return buffer[0 : cell[0]]  # type: ignore[no-any-return]
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

    def relay_to(
        self,
        srtp: bytes,
        out: SrtpSession,
        rewrite: Callable[[memoryview | bytearray], None] | None = None,
    ) -> bytes | None:
        """Unprotect with our receiving key and protect with ``out``'s sending key, in one go;
        ``rewrite`` may change the plain RTP header in between (the relay renumbers packets into
        the outgoing leg's stream).

        The relay's hot path (SRTP leg to SRTP leg). ``None`` (counted here) when the packet
        fails authentication or the replay check, or cannot be re-protected; never raises.
        """
        ctx, out_ctx = self._rx_ctx, out._tx_ctx
        if ctx is None or out_ctx is None:  # no fast path: two ordinary steps
            plain = self.unprotect(srtp)
            if plain is None:
                return None
            if rewrite is not None:
                header = bytearray(plain)
                rewrite(header)
                plain = bytes(header)
            try:
                return out.protect(plain)
            except MediaError:
                self.other_failures += 1
                return None
        size = len(srtp)
        if size > MAX_PACKET_OCTETS:
            self.other_failures += 1
            return None
        buffer = self._buffer
        buffer[0:size] = srtp
        cell = self._size
        cell[0] = size
        cdata, length = self._cdata, self._length
        status = _lib.srtp_unprotect(ctx, cdata, length)
        if status:
            self.count_status(status)
            return None
        if rewrite is not None:
            rewrite(self._view)
        if _lib.srtp_protect(out_ctx, cdata, length):  # e.g. far too old for the send window
            self.other_failures += 1
            return None
        return buffer[0 : cell[0]]  # type: ignore[no-any-return]

    def relay_in_place(self, buffer: Any, size: int, out: SrtpSession | None) -> int:
        """Unprotect the ``size``-octet SRTP packet at ``buffer`` and, given ``out``, protect it
        with ``out``'s sending key, in place. The new size, or -1 (counted here); never raises
        for peer input.

        ``buffer`` is a cffi ``char *`` with room for :data:`IN_PLACE_BUFFER_OCTETS` (the
        batched socket reader's slots); only usable when :func:`in_place_available`.
        """
        ctx = self._rx_ctx
        out_ctx = out._tx_ctx if out is not None else None
        if ctx is None or (out is not None and out_ctx is None):
            raise MediaError("in-place SRTP needs the cffi binding and both keys")
        if size > MAX_PACKET_OCTETS:
            self.other_failures += 1
            return -1
        cell, length = self._size, self._length
        cell[0] = size
        status = _lib.srtp_unprotect(ctx, buffer, length)
        if status:
            self.count_status(status)
            return -1
        if out_ctx is not None and _lib.srtp_protect(out_ctx, buffer, length):
            self.other_failures += 1
            return -1
        return cell[0]  # type: ignore[no-any-return]

    def protect_in_place(self, buffer: Any, size: int) -> int:
        """Protect the ``size``-octet RTP packet at ``buffer`` in place (see
        :meth:`relay_in_place`): the new size, or -1 (counted in ``other_failures``)."""
        ctx = self._tx_ctx
        if ctx is None:
            raise MediaError("in-place SRTP needs the cffi binding and a sending key")
        if size > MAX_PACKET_OCTETS:
            self.other_failures += 1
            return -1
        cell = self._size
        cell[0] = size
        if _lib.srtp_protect(ctx, buffer, self._length):
            self.other_failures += 1
            return -1
        return cell[0]  # type: ignore[no-any-return]

    def in_place_calls(self, out: SrtpSession | None) -> InPlaceCalls:
        """What :meth:`relay_in_place` (``out`` given or not) calls, bound once, for a caller
        that runs it over a whole batch of slots in its own loop (the batched socket reader):
        per packet, set ``size[0]``, ``unprotect(rx_ctx, slot, length)``, then if ``tx_ctx`` is
        not ``None`` ``protect(tx_ctx, slot, length)``; the new size is then ``size[0]``. A
        non-zero unprotect status goes to :meth:`count_status`, a non-zero protect status
        counts in ``other_failures`` — exactly what :meth:`relay_in_place` does, minus a
        Python call and its attribute look-ups per packet. The caller checks the size bound.
        """
        ctx = self._rx_ctx
        out_ctx = out._tx_ctx if out is not None else None
        if ctx is None or (out is not None and out_ctx is None):
            raise MediaError("in-place SRTP needs the cffi binding and both keys")
        return InPlaceCalls(
            _lib.srtp_unprotect, ctx, _lib.srtp_protect, out_ctx, self._length, self._size
        )

    def count_status(self, status: int) -> None:
        """Count a non-zero libsrtp unprotect status as the drop it is (RFC 3711 §3.3)."""
        if status == _ERR_AUTH_FAIL:
            self.auth_failures += 1
        elif status in (_ERR_REPLAY_FAIL, _ERR_REPLAY_OLD):
            self.replays += 1
        else:
            self.other_failures += 1

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


class InPlaceCalls(NamedTuple):
    """The libsrtp calls behind one in-place relay step (:meth:`SrtpSession.in_place_calls`)."""

    unprotect: Any  # srtp_unprotect(ctx, char *packet, int *length) -> srtp_err_status_t
    rx_ctx: Any
    protect: Any  # srtp_protect(ctx, char *packet, int *length) -> srtp_err_status_t
    tx_ctx: Any  # None: unprotect only
    length: Any  # the int * both calls read and write the packet size through
    size: memoryview  # the same int as a Python-writable view


def in_place_available() -> bool:
    """Whether the direct libsrtp calls (and so the ``*_in_place`` methods) are in use."""
    return _FAST


def _fast_path_works() -> bool:
    """Check the direct libsrtp calls against the public pylibsrtp API once, at import."""
    if _ffi is None or _lib is None:
        return False
    global _FAST
    key = bytes(range(30))
    packet = bytes.fromhex("800f1234decafbadcafebabe") + bytes(range(40))
    try:
        outbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        suite = get_suite(DEFAULT_SUITE)
        public = pylibsrtp.Session(_policy(suite, key, outbound)).protect(packet)
        _FAST = True
        fast = SrtpSession(DEFAULT_SUITE, our_key=key, their_key=key)
        ok = fast.protect(packet) == public and fast.unprotect(public) == packet
    except Exception:
        ok = False
    _FAST = ok
    return ok


_FAST = False
_fast_path_works()
