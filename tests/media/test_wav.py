"""WAV helpers: framing, recording with a bound, round trip through a file, resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from callxml.errors import MediaError
from callxml.media.dtmf import DtmfDigit
from callxml.media.tone import goertzel_power, sine
from callxml.media.wav import PcmRecorder, pcm_frames, read_audio, write_wav


def test_frames_pad_the_last_one() -> None:
    frames = list(pcm_frames(bytes(range(200)) * 2, frame_samples=160))
    assert [len(f) for f in frames] == [320, 320]
    assert frames[1].endswith(bytes(240))


def test_recorder_bounds_and_saves(tmp_path: Path) -> None:
    rec = PcmRecorder(max_seconds=0.05)  # 400 samples
    for _ in range(4):
        rec.audio_received(sine(1000, 20), 0)
    rec.dtmf_received(DtmfDigit("5", 1))
    assert len(rec.pcm) == 800 and rec.truncated and rec.digits == ["5"]
    path = tmp_path / "out.wav"
    rec.save(path)
    assert read_audio(path) == rec.pcm


def test_read_audio_resamples_and_mixes_down(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, axis=1) * 0.5
    path = tmp_path / "wide.wav"
    soundfile.write(path, stereo, 16000)
    pcm = read_audio(path)
    assert abs(len(pcm) - 16000) <= 4  # one second at 8 kHz, 2 octets per sample
    assert goertzel_power(pcm, 1000) > 0.95


def test_unreadable_file_is_a_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(MediaError):
        read_audio(bad)
    write_wav(tmp_path / "ok.wav", bytes(320))
    assert read_audio(tmp_path / "ok.wav") == bytes(320)
