"""G.711 μ-law (PCMU) and A-law (PCMA) codecs, in-house, by table lookup.

Owns the conversion between 16-bit signed little-endian linear PCM and 8-bit G.711 code words
(ITU-T G.711; RTP payload formats in RFC 3551 §4.5.14). The tables are computed once at import
from the segment/quantisation rules of the recommendation; encoding looks every sample up in a
65,536-entry table, decoding in a 256-entry one, both vectorised with numpy. The results equal
those of the standard library's (deprecated) ``audioop`` for every input value.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz (RFC 3551 §4.5: default packetisation)

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # in 14-bit units
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _all_samples() -> npt.NDArray[np.int64]:
    # Every 16-bit sample, indexed by its bit pattern read as unsigned (0x8000 is -32768).
    u = np.arange(0x10000, dtype=np.int64)
    return np.where(u >= 0x8000, u - 0x10000, u)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """G.711 μ-law for every sample: 14-bit magnitude, biased, segment + 4-bit step, inverted."""
    value = _all_samples() >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(np.array(_ULAW_SEG_END), value)  # first segment whose end >= value
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((value >> (seg + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    """G.711 A-law for every sample: 13-bit magnitude (one's complement for negatives)."""
    value = _all_samples() >> 3
    mask = np.where(value >= 0, 0xD5, 0x55)
    value = np.where(value >= 0, value, -value - 1)
    seg = np.searchsorted(np.array(_ALAW_SEG_END), value)
    quant = np.where(seg < 2, value >> 1, value >> np.maximum(seg, 1))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | (quant & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int64) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype("<i2")


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int64) ^ 0x55
    step = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    magnitude = np.where(seg == 0, step + 8, (step + 0x108) << np.maximum(seg - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype("<i2")


_ULAW_ENCODE: Final = _ulaw_encode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()
_ULAW_DECODE: Final = _ulaw_decode_table()
_ALAW_DECODE: Final = _alaw_decode_table()

# The code word for silence, used to fill gaps.
ULAW_SILENCE: Final = int(_ULAW_ENCODE[0])
ALAW_SILENCE: Final = int(_ALAW_ENCODE[0])


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of octets")


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian linear PCM → μ-law, one octet per sample."""
    _check_pcm(pcm)
    out: bytes = _ULAW_ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes()
    return out


def ulaw_decode(data: bytes) -> bytes:
    """μ-law → 16-bit signed little-endian linear PCM."""
    out: bytes = _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()
    return out


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian linear PCM → A-law, one octet per sample."""
    _check_pcm(pcm)
    out: bytes = _ALAW_ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes()
    return out


def alaw_decode(data: bytes) -> bytes:
    """A-law → 16-bit signed little-endian linear PCM."""
    out: bytes = _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()
    return out


class G711Codec:
    """A codec object the streams can hold: payload type, name, encode/decode functions."""

    __slots__ = ("decode", "encode", "name", "payload_type", "silence")

    def __init__(self, name: str) -> None:
        upper = name.upper()
        if upper == "PCMU":
            self.payload_type, self.encode, self.decode = 0, ulaw_encode, ulaw_decode
            self.silence = ULAW_SILENCE
        elif upper == "PCMA":
            self.payload_type, self.encode, self.decode = 8, alaw_encode, alaw_decode
            self.silence = ALAW_SILENCE
        else:
            raise ValueError(f"unsupported codec {name!r} (PCMU or PCMA)")
        self.name = upper

    def __repr__(self) -> str:
        return f"G711Codec({self.name!r})"


CODECS_BY_PT: Final = {0: "PCMU", 8: "PCMA"}
