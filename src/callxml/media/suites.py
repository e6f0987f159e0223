"""SRTP crypto suites: the wire facts of each, in one table.

Owns what a suite name means on the wire -- master key and salt lengths, the SRTP and SRTCP
authentication tag lengths, the DTLS-SRTP protection profile number where IANA assigned one, the
RFC that defines it, and the other spellings stacks print -- and the suite name constants the
rest of the code uses. Everything that needs a suite's sizes reads them here: the SDES parser
checks ``inline:`` key lengths against them, the SRTP layer sizes its keys from them, and the
tests check them against libsrtp.

It must not know which suites this build can run (that is :mod:`callxml.media.srtp`, the only
module that imports pylibsrtp) nor how SDP writes them (:mod:`callxml.sdp.crypto`: SDES merely
names these suites), so both can import it without pulling in the other. Pure data: no I/O, no
imports beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "SUITES",
    "SUITE_ALIASES",
    "SrtpSuite",
    "lookup",
]


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """One SRTP crypto suite (RFC 3711 transforms as RFC 4568, RFC 6188 and RFC 7714 name them).

    Lengths are in octets. ``dtls_srtp_profile`` is the number IANA's "DTLS-SRTP Protection
    Profiles" registry gives the same transform (RFC 5764 §4.1.2, RFC 7714 §14.2), ``None``
    where it has none; libsrtp numbers its ``srtp_profile_t`` the same way, so it is also what
    ``pylibsrtp.Policy(srtp_profile=...)`` takes. SDES itself numbers nothing: it names suites.
    """

    name: str
    key_octets: int
    salt_octets: int
    srtp_tag_octets: int
    srtcp_tag_octets: int
    dtls_srtp_profile: int | None
    rfc: str
    aliases: tuple[str, ...] = ()

    @property
    def key_salt_octets(self) -> int:
        """Master key ‖ master salt, as SDES ``inline:`` carries it and libsrtp takes it."""
        return self.key_octets + self.salt_octets


AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
AES_256_CM_HMAC_SHA1_80 = "AES_256_CM_HMAC_SHA1_80"
AES_256_CM_HMAC_SHA1_32 = "AES_256_CM_HMAC_SHA1_32"
AEAD_AES_128_GCM = "AEAD_AES_128_GCM"
AEAD_AES_256_GCM = "AEAD_AES_256_GCM"

# The wire format as a table, so each size is written once, next to the RFC it comes from, and
# read by the parser, the SRTP layer and the tests alike. The _32 suites shorten only the SRTP
# tag; SRTCP keeps 80 bits (RFC 4568 §6.2.2, and RFC 6188's AES-192/256 variants likewise).
# FreeSWITCH prints the RFC 6188 names as AES_CM_192_.../AES_CM_256_...: the aliases column.
# fmt: off
SUITES: dict[str, SrtpSuite] = {
    s.name: s
    for s in (
        # name, key, salt, SRTP tag, SRTCP tag (octets), DTLS-SRTP profile, RFC[, aliases]
        SrtpSuite(AES_CM_128_HMAC_SHA1_80,   16, 14, 10, 10, 1,    "RFC 4568 §6.2.1"),
        SrtpSuite(AES_CM_128_HMAC_SHA1_32,   16, 14, 4,  10, 2,    "RFC 4568 §6.2.2"),
        SrtpSuite("F8_128_HMAC_SHA1_80",     16, 14, 10, 10, None, "RFC 4568 §6.2.3"),
        SrtpSuite("AES_192_CM_HMAC_SHA1_80", 24, 14, 10, 10, None, "RFC 6188 §3",
                  ("AES_CM_192_HMAC_SHA1_80",)),
        SrtpSuite("AES_192_CM_HMAC_SHA1_32", 24, 14, 4,  10, None, "RFC 6188 §3",
                  ("AES_CM_192_HMAC_SHA1_32",)),
        SrtpSuite(AES_256_CM_HMAC_SHA1_80,   32, 14, 10, 10, None, "RFC 6188 §3",
                  ("AES_CM_256_HMAC_SHA1_80",)),
        SrtpSuite(AES_256_CM_HMAC_SHA1_32,   32, 14, 4,  10, None, "RFC 6188 §3",
                  ("AES_CM_256_HMAC_SHA1_32",)),
        SrtpSuite(AEAD_AES_128_GCM,          16, 12, 16, 16, 7,    "RFC 7714 §14.2"),
        SrtpSuite(AEAD_AES_256_GCM,          32, 12, 16, 16, 8,    "RFC 7714 §14.2"),
        SrtpSuite("AEAD_AES_128_GCM_8",      16, 12, 8,  8,  None, "RFC 7714 §14.2"),
        SrtpSuite("AEAD_AES_256_GCM_8",      32, 12, 8,  8,  None, "RFC 7714 §14.2"),
        # Not IANA-registered: the libsrtp/FreeSWITCH/Asterisk name for AES-CM without
        # authentication.
        SrtpSuite("AES_CM_128_NULL_AUTH",    16, 14, 0,  0,  None, "non-standard (libsrtp)"),
    )
}
# fmt: on

#: Every other spelling in the table → the RFC name.
SUITE_ALIASES: dict[str, str] = {
    alias: suite.name for suite in SUITES.values() for alias in suite.aliases
}

_BY_SPELLING: dict[str, SrtpSuite] = {
    **{alias: SUITES[name] for alias, name in SUITE_ALIASES.items()},
    **SUITES,
}


def lookup(name: str) -> SrtpSuite | None:
    """The suite spelled exactly ``name`` (its RFC name or an alias), or ``None``.

    Case is the caller's business: SDES matches names case-insensitively
    (:func:`callxml.sdp.crypto.find_suite`), the SRTP layer takes only our own constants.
    """
    return _BY_SPELLING.get(name)
