"""G.711 against the standard library's audioop, over every 16-bit input and every code word."""

from __future__ import annotations

import struct
import warnings

import pytest

from callxml.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop is deprecated in 3.11+
    import audioop

EVERY_SAMPLE = struct.pack("<65536h", *range(-32768, 32768))
EVERY_CODE = bytes(range(256))


def test_ulaw_encode_matches_audioop_for_every_sample() -> None:
    assert g711.ulaw_encode(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE, 2)


def test_alaw_encode_matches_audioop_for_every_sample() -> None:
    assert g711.alaw_encode(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)


def test_decoders_match_audioop_for_every_code_word() -> None:
    assert g711.ulaw_decode(EVERY_CODE) == audioop.ulaw2lin(EVERY_CODE, 2)
    assert g711.alaw_decode(EVERY_CODE) == audioop.alaw2lin(EVERY_CODE, 2)


def test_known_code_words() -> None:
    # G.711: silence is 0xFF in mu-law and 0xD5 in A-law; full-scale positive 0x80 / 0xAA.
    assert g711.ulaw_encode(struct.pack("<h", 0)) == b"\xff"
    assert g711.alaw_encode(struct.pack("<h", 0)) == b"\xd5"
    assert g711.ulaw_encode(struct.pack("<h", 32767)) == b"\x80"
    assert g711.alaw_encode(struct.pack("<h", 32767)) == b"\xaa"
    assert (g711.ULAW_SILENCE, g711.ALAW_SILENCE) == (0xFF, 0xD5)


def test_round_trip_is_close() -> None:
    samples = struct.unpack("<65536h", g711.ulaw_decode(g711.ulaw_encode(EVERY_SAMPLE)))
    assert max(abs(a - b) for a, b in zip(samples, range(-32768, 32768), strict=True)) < 1100


def test_codec_objects_and_bad_input() -> None:
    pcmu, pcma = g711.G711Codec("pcmu"), g711.G711Codec("PCMA")
    assert (pcmu.payload_type, pcma.payload_type) == (0, 8)
    assert pcmu.decode(pcmu.encode(bytes(320))) == bytes(320)
    with pytest.raises(ValueError):
        g711.G711Codec("G722")
    with pytest.raises(ValueError):
        g711.ulaw_encode(b"\x00")
