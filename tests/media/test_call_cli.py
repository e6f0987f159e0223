"""``callxml call`` against a real baresip: secure call with tones both ways, refusals, TLS
verification on by default, the report (text and JSON) and exit statuses; usage errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from callxml.cli import main
from callxml.engine.devcert import DevCertificate
from callxml.media.tone import goertzel_power, sine
from callxml.media.wav import read_audio, write_wav
from support.baresip import THEIR_TONE, BaresipFactory, BaresipOptions
from support.ports import free_port


async def _call(*args: str) -> Result:
    """Run the command in a thread (it runs its own event loop), bounded."""
    runner = CliRunner()
    return await asyncio.wait_for(
        asyncio.to_thread(runner.invoke, main, ["call", *args], catch_exceptions=False), 60
    )


@pytest.mark.peer
async def test_secure_call_to_baresip_reports_srtp_and_carries_tones_both_ways(
    baresip: BaresipFactory, dev_cert: DevCertificate, their_tone: Path, tmp_path: Path
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", play=their_tone, cert=dev_cert))
    recorded = tmp_path / "heard.wav"
    result = await _call(
        peer.uri(secure=True),
        "--ca",
        str(dev_cert.ca),
        "--duration",
        "1.5",
        "--record",
        str(recorded),
    )
    assert result.exit_code == 0, result.output
    assert "completed (200)" in result.output
    assert "transport: tls" in result.output
    assert "media:     SRTP AES_CM_128_HMAC_SHA1_80, PCMU" in result.output
    # No SRTP packet failed authentication. (An SRTCP packet baresip sends before its 200 OK
    # reaches us arrives before we have its key, and is counted as invalid.)
    assert "(auth 0, replay 0," in result.output
    await peer.wait_event("CALL_CLOSED")
    # We sent the default 1 kHz test tone; baresip decoded it from SRTP.
    theirs = peer.received_audio()
    assert goertzel_power(theirs[4000:], 1000) > 0.8
    # baresip's 440 Hz tone reached our recording.
    ours = read_audio(recorded)
    assert len(ours) > 16000
    assert goertzel_power(ours[4000:], THEIR_TONE) > 0.8


@pytest.mark.peer
async def test_json_report_with_play_file_and_digits(
    baresip: BaresipFactory, dev_cert: DevCertificate, tmp_path: Path
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", cert=dev_cert))
    ours = tmp_path / "ours.wav"
    write_wav(ours, sine(2000, 3000, amplitude=0.4))
    result = await _call(
        peer.uri(secure=True),
        "--ca",
        str(dev_cert.ca),
        "--play",
        str(ours),
        "--digits",
        "12#",
        "--duration",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "completed" and report["secure"] is True
    assert report["suite"] == "AES_CM_128_HMAC_SHA1_80" and report["transport"] == "tls"
    assert report["stats"]["packets_received"] > 20
    # Every packet we sent carried the SRTP auth tag: 12 + 160 + 10 octets (RFC 3711 §4.2);
    # digit packets are 12 + 4 + 10.
    stats = report["stats"]
    assert stats["octets_sent"] > stats["packets_sent"] * 26
    assert stats["octets_sent"] <= stats["packets_sent"] * 182
    await peer.wait_event("CALL_CLOSED")
    assert goertzel_power(peer.received_audio()[4000:], 2000) > 0.5


@pytest.mark.peer
async def test_plain_rtp_peer_makes_the_secure_call_fail(
    baresip: BaresipFactory, dev_cert: DevCertificate
) -> None:
    peer = await baresip(BaresipOptions(mediaenc=None, cert=dev_cert))
    result = await _call(peer.uri(secure=True), "--ca", str(dev_cert.ca), "--duration", "1")
    assert result.exit_code == 3, result.output
    assert "failed (488)" in result.output
    assert "refused our secure media offer" in result.output


@pytest.mark.peer
async def test_tls_certificate_is_verified_by_default(
    baresip: BaresipFactory, dev_cert: DevCertificate
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", cert=dev_cert))
    refused = await _call(peer.uri(secure=True), "--duration", "0.5")
    assert refused.exit_code == 1, refused.output
    assert "not trusted" in refused.output
    assert not [e for e in peer.events if e.get("type") == "CALL_INCOMING"]
    allowed = await _call(peer.uri(secure=True), "--insecure", "--duration", "0.5")
    assert allowed.exit_code == 0, allowed.output


async def test_nobody_listening_is_a_failed_call() -> None:
    port = free_port("tcp")
    result = await _call(f"sip:bob@127.0.0.1:{port};transport=tcp", "--timeout", "2")
    assert result.exit_code == 1, result.output
    assert "failed (503)" in result.output and "cannot connect" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tel:+15551234567"], "URI"),
        (["sip:bob@127.0.0.1", "--digits", "12x"], "--digits"),
        (["sip:bob@127.0.0.1", "--cert", __file__], "--cert and --key go together"),
        (["sip:bob@127.0.0.1", "--bind", "example.com"], "--bind"),
        (["sip:bob@127.0.0.1", "--duration", "0"], "--duration"),
        (["sip:bob@127.0.0.1", "--from", "not a uri"], "--from"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["call", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
