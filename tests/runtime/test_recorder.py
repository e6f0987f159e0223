"""RecordingMeter on a fake clock: silence timeout, maxLength, finishOnKey, hang-up, trimming."""

from __future__ import annotations

import wave
from pathlib import Path

from callxml.runtime.recorder import RecordingMeter, frame_rms, save_recording

SPEECH = (8000).to_bytes(2, "little", signed=True) * 160  # 20 ms, loud
QUIET = bytes(320)  # 20 ms of silence


def feed(meter: RecordingMeter, frame: bytes, count: int, start: float) -> float:
    now = start
    for _ in range(count):
        now += 0.02
        meter.audio(frame, now)
    return now


def test_frame_rms() -> None:
    assert frame_rms(QUIET) == 0
    assert abs(frame_rms(SPEECH) - 8000) < 1
    assert frame_rms(b"") == 0


def test_silence_timeout_ends_and_trims() -> None:
    meter = RecordingMeter(started=0.0, timeout=2, max_length=60, finish_on_key="#")
    now = feed(meter, QUIET, 25, 0.0)  # 0.5 s silence before speech
    now = feed(meter, SPEECH, 50, now)  # 1 s speech, last voice at 1.5
    assert meter.next_timer() == now + 2
    now = feed(meter, QUIET, 99, now)
    assert not meter.done
    feed(meter, QUIET, 1, now)
    assert meter.done and meter.digits == ""
    result = meter.result()
    # 1 s of speech plus the 0.2 s margins kept around it
    assert len(result.pcm) == 2 * int(8000 * 1.4)
    assert result.duration == 1


def test_timer_ends_when_no_frames_arrive() -> None:
    meter = RecordingMeter(started=10.0, timeout=5, max_length=60, finish_on_key="")
    assert meter.next_timer() == 15.0
    meter.handle_timer(14.9)
    assert not meter.done
    meter.handle_timer(15.0)
    assert meter.done and meter.result().pcm == b""


def test_max_length_caps_audio() -> None:
    meter = RecordingMeter(started=0.0, timeout=5, max_length=1, finish_on_key="")
    feed(meter, SPEECH, 80, 0.0)
    assert meter.done
    assert len(meter.result().pcm) == 16000


def test_finish_on_key_and_other_keys() -> None:
    meter = RecordingMeter(started=0.0, timeout=5, max_length=60, finish_on_key="*#")
    feed(meter, SPEECH, 10, 0.0)
    meter.digit("1", 0.3)
    assert not meter.done
    meter.digit("*", 0.4)
    assert meter.done and meter.digits == "*"
    feed(meter, SPEECH, 10, 0.4)  # ignored after the end
    assert len(meter.result().pcm) == 3200


def test_hang_up_and_do_not_trim() -> None:
    meter = RecordingMeter(started=0.0, timeout=5, max_length=60, finish_on_key="", trim=False)
    feed(meter, QUIET, 50, 0.0)
    meter.hang_up()
    assert meter.done and meter.digits == "hangup"
    assert len(meter.result().pcm) == 16000  # silence kept
    assert meter.next_timer() is None


def test_zero_timeout_means_no_silence_limit() -> None:
    meter = RecordingMeter(started=0.0, timeout=0, max_length=3, finish_on_key="")
    assert meter.next_timer() == 3


def test_save_recording(tmp_path: Path) -> None:
    path = save_recording(tmp_path / "rec", "RE1", SPEECH * 50)
    assert path.name == "RE1.wav"
    assert not list((tmp_path / "rec").glob(".*partial"))
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 8000 and wav.getframerate() == 8000


def test_bridge_recorder_aligns_mixes_and_splits() -> None:
    """``<Dial record>``: each side placed on the bridge's clock (a side that sent nothing for
    a while is padded with silence), mixed to mono or kept apart in two channels, or only one
    side for ``recordingTrack``."""
    import numpy as np

    from callxml.runtime.recorder import BridgeRecorder

    frame = (np.full(160, 1000, dtype="<i2")).tobytes()  # 20 ms
    for dual, track in ((False, "both"), (True, "both"), (False, "inbound"), (True, "outbound")):
        recorder = BridgeRecorder(100.0, dual=dual, track=track)
        for i in range(50):  # the caller talks for the first second
            recorder.audio("a", frame, 100.0 + (i + 1) * 0.02)
        for i in range(50):  # the called party only in the second
            recorder.audio("b", frame, 101.0 + (i + 1) * 0.02)
        pcm, channels, seconds = recorder.result(102.0)
        assert seconds == 2 and channels == (2 if dual else 1)
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
        assert len(samples) == 16000
        a_part = samples[:8000, 0]
        b_part = samples[8000:, -1]
        assert (a_part == (0 if track == "outbound" else 1000)).all()
        assert (b_part == (0 if track == "inbound" else 1000)).all()
        if dual:
            assert (samples[8000:, 0] == 0).all() and (samples[:8000, 1] == 0).all()
