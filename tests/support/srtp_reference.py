"""A slow, obvious SRTP/SRTCP implementation on ``cryptography``, used only as a test oracle.

Written from RFC 3711 alone (§4.1.1 AES-CM, §4.2 HMAC-SHA1, §4.3 key derivation, §3.3.1 packet
index estimation, §3.4 SRTCP), so that libsrtp and this code agreeing byte for byte means the
wrapper configures libsrtp the way the RFC (and the other end of a call) expects.
Key derivation rate 0, no MKI.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT = 0, 1, 2
LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT = 3, 4, 5


def aes_cm(key: bytes, iv: int, data: bytes) -> bytes:
    """AES in counter mode (RFC 3711 §4.1.1): the 128-bit IV is the initial counter block."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def derive(
    master_key: bytes, master_salt: bytes, label: int, length: int, index: int = 0, kdr: int = 0
) -> bytes:
    """RFC 3711 §4.3.1-4.3.3: x = key_id XOR master_salt, key_id = label || (index DIV kdr)."""
    r = index // kdr if kdr else 0
    key_id = (label << 48) | r
    x = int.from_bytes(master_salt, "big") ^ key_id
    return aes_cm(master_key, x << 16, bytes(length))


class SessionKeys:
    def __init__(self, master: bytes, *, rtcp: bool, key_octets: int = 16) -> None:
        # RFC 6188 §3: the AES-192/256 suites derive a session key as long as the master key.
        key, salt = master[:key_octets], master[key_octets : key_octets + 14]
        base = 3 if rtcp else 0
        self.cipher_key = derive(key, salt, base + 0, key_octets)
        self.auth_key = derive(key, salt, base + 1, 20)
        self.salt = int.from_bytes(derive(key, salt, base + 2, 14), "big")

    def iv(self, ssrc: int, index: int) -> int:
        # §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        return (self.salt << 16) ^ (ssrc << 64) ^ (index << 16)


def _header_length(packet: bytes) -> int:
    cc = packet[0] & 0x0F
    length = 12 + 4 * cc
    if packet[0] & 0x10:
        (words,) = struct.unpack_from("!H", packet, length + 2)
        length += 4 + 4 * words
    return length


class ReferenceSrtp:
    """One direction of SRTP + SRTCP for a single SSRC, sender or receiver side."""

    def __init__(
        self, master: bytes, *, rtp_tag: int = 10, rtcp_tag: int = 10, key_octets: int = 16
    ) -> None:
        self.rtp = SessionKeys(master, rtcp=False, key_octets=key_octets)
        self.rtcp = SessionKeys(master, rtcp=True, key_octets=key_octets)
        self.rtp_tag = rtp_tag
        self.rtcp_tag = rtcp_tag
        self.roc = 0
        self.s_l: int | None = None  # highest sequence number seen (§3.3.1)
        self.srtcp_index = 0

    # -- RTP -------------------------------------------------------------------------------

    def _estimate_index(self, seq: int) -> tuple[int, int]:
        """§3.3.1 / Appendix A: guess ROC for ``seq``; returns (v, index)."""
        if self.s_l is None:
            return self.roc, (self.roc << 16) | seq
        roc, s_l = self.roc, self.s_l
        if s_l < 32768:
            v = roc - 1 if seq - s_l > 32768 else roc
        else:
            v = roc + 1 if s_l - 32768 > seq else roc
        v &= 0xFFFFFFFF
        return v, (v << 16) | seq

    def _update(self, seq: int, v: int) -> None:
        if self.s_l is None:
            self.s_l, self.roc = seq, v
        elif v == self.roc and seq > self.s_l:
            self.s_l = seq
        elif v == (self.roc + 1) & 0xFFFFFFFF:
            self.s_l, self.roc = seq, v

    def _auth(self, key: bytes, data: bytes, length: int) -> bytes:
        return hmac.new(key, data, hashlib.sha1).digest()[:length]

    def protect(self, packet: bytes) -> bytes:
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        v, index = self._estimate_index(seq)
        self._update(seq, v)
        head = _header_length(packet)
        body = aes_cm(self.rtp.cipher_key, self.rtp.iv(ssrc, index), packet[head:])
        out = packet[:head] + body
        return out + self._auth(self.rtp.auth_key, out + struct.pack("!I", v), self.rtp_tag)

    def unprotect(self, packet: bytes) -> bytes | None:
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        v, index = self._estimate_index(seq)
        data, tag = packet[: -self.rtp_tag], packet[-self.rtp_tag :]
        expected = self._auth(self.rtp.auth_key, data + struct.pack("!I", v), self.rtp_tag)
        if not hmac.compare_digest(tag, expected):
            return None
        self._update(seq, v)
        head = _header_length(data)
        return data[:head] + aes_cm(self.rtp.cipher_key, self.rtp.iv(ssrc, index), data[head:])

    # -- RTCP (§3.4) -----------------------------------------------------------------------

    def protect_rtcp(self, packet: bytes) -> bytes:
        self.srtcp_index = (self.srtcp_index + 1) & 0x7FFFFFFF
        index = self.srtcp_index
        ssrc = struct.unpack_from("!I", packet, 4)[0]
        body = aes_cm(self.rtcp.cipher_key, self.rtcp.iv(ssrc, index), packet[8:])
        out = packet[:8] + body + struct.pack("!I", 0x80000000 | index)
        return out + self._auth(self.rtcp.auth_key, out, self.rtcp_tag)

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        data, tag = packet[: -self.rtcp_tag], packet[-self.rtcp_tag :]
        if not hmac.compare_digest(tag, self._auth(self.rtcp.auth_key, data, self.rtcp_tag)):
            return None
        (e_index,) = struct.unpack_from("!I", data, len(data) - 4)
        data = data[:-4]
        if not e_index & 0x80000000:
            return data
        ssrc = struct.unpack_from("!I", data, 4)[0]
        iv = self.rtcp.iv(ssrc, e_index & 0x7FFFFFFF)
        return data[:8] + aes_cm(self.rtcp.cipher_key, iv, data[8:])


class ReferenceGcm:
    """RFC 7714 AEAD_AES_128_GCM / AEAD_AES_256_GCM, sender side, one SSRC, ROC 0.

    §11: session keys from the RFC 3711 KDF with the 96-bit master salt (zero-padded to the
    112 bits the KDF takes); §8.1: IV = (00 00 ‖ SSRC ‖ ROC ‖ SEQ) XOR the 96-bit session salt,
    AAD = the RTP header; §9.1: SRTCP IV = (00 00 ‖ SSRC ‖ 00 00 ‖ 0 ‖ index) XOR salt, AAD = the
    first 8 octets ‖ E ‖ index, trailer E ‖ index after the tag.
    """

    def __init__(self, master: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key_octets = len(master) - 12
        key, salt = master[:key_octets], master[key_octets:] + bytes(2)
        self.rtp = AESGCM(derive(key, salt, LABEL_RTP_ENCRYPTION, key_octets))
        self.rtp_salt = derive(key, salt, LABEL_RTP_SALT, 12)
        self.rtcp = AESGCM(derive(key, salt, LABEL_RTCP_ENCRYPTION, key_octets))
        self.rtcp_salt = derive(key, salt, LABEL_RTCP_SALT, 12)
        self.srtcp_index = 0

    @staticmethod
    def _xor(a: bytes, b: bytes) -> bytes:
        return bytes(x ^ y for x, y in zip(a, b, strict=True))

    def protect(self, packet: bytes) -> bytes:
        seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
        iv = self._xor(struct.pack("!HIIH", 0, ssrc, 0, seq), self.rtp_salt)
        head = _header_length(packet)
        return packet[:head] + self.rtp.encrypt(iv, packet[head:], packet[:head])

    def protect_rtcp(self, packet: bytes) -> bytes:
        self.srtcp_index = (self.srtcp_index + 1) & 0x7FFFFFFF
        ssrc = struct.unpack_from("!I", packet, 4)[0]
        iv = self._xor(struct.pack("!HIHI", 0, ssrc, 0, self.srtcp_index), self.rtcp_salt)
        e_index = struct.pack("!I", 0x80000000 | self.srtcp_index)
        return packet[:8] + self.rtcp.encrypt(iv, packet[8:], packet[:8] + e_index) + e_index
