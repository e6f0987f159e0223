"""Temporary re-export of support.srtp_reference, until test_srtp.py imports it from there."""

from support.srtp_reference import ReferenceSrtp, SessionKeys, aes_cm, derive

__all__ = ["ReferenceSrtp", "SessionKeys", "aes_cm", "derive"]
