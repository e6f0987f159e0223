"""RFC 4733 DTMF: payload format, the sender's packet schedule, the receiver's de-duplication."""

from __future__ import annotations

import pytest

from callxml.errors import LocalProtocolError
from callxml.media.dtmf import (
    DtmfDigit,
    DtmfReceiver,
    TelephoneEvent,
    digit_to_event,
    dtmf_duration_samples,
    dtmf_packets,
)


def test_event_codes() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert digit_to_event("a") == 12
    for bad in ("", "E", "12", " "):
        with pytest.raises(LocalProtocolError):
            digit_to_event(bad)


def test_payload_round_trip_and_bytes() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert bytes(event) == bytes.fromhex("0b8a0320")  # §2.3: event, E|R|volume, duration
    assert TelephoneEvent.parse(bytes(event)) == event
    assert event.digit == "#"


def test_sender_schedule() -> None:
    packets = dtmf_packets("7", duration_ms=100, volume=10)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    # §2.5.1: 5 updates every 20 ms, then the final duration three times with E set.
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert [p.marker for p in packets] == [True] + [False] * 7  # §2.5.1.1 marker on the first
    assert {e.event for e in events} == {7} and {e.volume for e in events} == {10}
    assert dtmf_duration_samples(packets) == 800


def test_sender_rounds_up_to_whole_packets_and_bounds_input() -> None:
    assert len(dtmf_packets("1", duration_ms=50)) == 3 + 3
    with pytest.raises(LocalProtocolError):
        dtmf_packets("1", duration_ms=10)
    with pytest.raises(LocalProtocolError):
        dtmf_packets("1", duration_ms=60_000)
    with pytest.raises(LocalProtocolError):
        dtmf_packets("1", volume=64)


def test_receiver_reports_each_event_once() -> None:
    rx = DtmfReceiver()
    packets = dtmf_packets("5", duration_ms=60)
    reported = [rx.receive(1000, p.payload) for p in packets]
    assert reported == [DtmfDigit("5", 1000)] + [None] * (len(packets) - 1)
    # The same digit again is a new event: a new timestamp.
    assert rx.receive(2000, packets[0].payload) == DtmfDigit("5", 2000)


def test_receiver_survives_lost_start_and_lost_end_packets() -> None:
    rx = DtmfReceiver()
    first = dtmf_packets("9", duration_ms=100)
    # Only the end packets arrive: still reported, once.
    assert [rx.receive(500, p.payload) for p in first[-3:]] == [DtmfDigit("9", 500), None, None]
    # No end packets at all: reported on the first packet that arrives.
    second = dtmf_packets("0", duration_ms=100)
    assert rx.receive(900, second[1].payload) == DtmfDigit("0", 900)
    assert rx.receive(900, second[2].payload) is None


def test_receiver_ignores_garbage_and_non_dtmf_events() -> None:
    rx = DtmfReceiver()
    assert rx.receive(1, b"\x05") is None
    assert rx.receive(1, bytes(TelephoneEvent(16, False, 10, 160))) is None  # flash
    assert rx.receive(1, bytes(TelephoneEvent(4, False, 10, 160))) == DtmfDigit("4", 1)


def test_receiver_memory_is_bounded() -> None:
    rx = DtmfReceiver()
    payload = dtmf_packets("1", duration_ms=20)[0].payload
    for ts in range(1000):
        assert rx.receive(ts, payload) is not None
    assert len(rx._recent) <= 8
