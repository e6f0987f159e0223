"""examples/machine_detection.py runs as documented: the engine calls a voicemail with
``MachineDetection=DetectMessageEnd``, the webhook gets ``AnsweredBy=machine_end_beep`` once the
greeting's beep has ended, and the message lands on the voicemail after it."""

from __future__ import annotations

import pytest

from support.examples import load_example

pytestmark = pytest.mark.peer


async def test_the_machine_detection_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("machine_detection.py", "example_machine_detection")
    assert await example.main() == 0
    out = capsys.readouterr().out
    assert "AnsweredBy=machine_end_beep" in out and "call ended: completed" in out
