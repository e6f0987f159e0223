"""``callxml call``: place one call from the command line — a test softphone for SIP endpoints.

Owns the command's options, choosing local addresses and TLS settings for a one-off call, the
audio it sends (a file, or a 1 kHz test tone), the report it prints (signalling outcome,
transport, SRTP suite, packet counters) and its exit status. The call itself is a
:class:`callxml.runtime.phone.Phone` dial: the same code path as ``<Dial><Sip>`` in the engine, so
``;secure=true`` means SIP over TLS (5061 unless the URI names a port) and SRTP, with the
secure-media policy of ``docs/sdp.md``. TLS certificates are verified unless ``--insecure``.

Exit status: 0 call answered and media flowed; 1 the call was not answered (busy, no answer,
refused, TLS or transport failure); 3 the media negotiation failed (a secure offer refused, or
an answer that breaks the secure-media policy); 4 answered but no RTP arrived; 2 usage error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from callxml.engine.devcert import ensure_dev_certificate
from callxml.errors import CallXmlError, RemoteProtocolError, TransportError
from callxml.media.tone import sine
from callxml.media.wav import read_audio, write_wav
from callxml.runtime.phone import Phone
from callxml.sip.aio.resolver import DnsResolver, SystemResolver, locate
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.target import Target
from callxml.sip.uri import parse_uri

EXIT_OK = 0
EXIT_NOT_ANSWERED = 1
EXIT_MEDIA_FAILED = 3
EXIT_NO_MEDIA = 4
#: Bounds: at most this many digits, this long a call.
MAX_DIGITS = 64
MAX_DURATION = 3600.0
TEST_TONE_HZ = 1000.0
MAX_PLAY_BYTES = 200 * 1024 * 1024


@dataclass
class CallReport:
    """What ``callxml call`` found out; printed as text or as JSON (``--json``)."""

    uri: str
    status: str = "failed"
    sip_response_code: int | None = None
    reason: str = ""
    transport: str | None = None
    secure: bool = False
    suite: str | None = None
    encryption: str | None = None  # sdes, zrtp or None
    zrtp_sas: str | None = None
    zrtp_sas_verified: bool | None = None
    zrtp_algorithms: str | None = None
    zrtp_cache: str | None = None  # match, mismatch or new
    codec: str | None = None
    sip_call_id: str | None = None
    end_reason: str | None = None
    duration: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    digits_received: str = ""
    warnings: list[str] = field(default_factory=list)
    exit_code: int = EXIT_NOT_ANSWERED
    audio: bytearray = field(default_factory=bytearray, repr=False)  # what the peer sent

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "audio"}

    def lines(self) -> list[str]:
        code = f" ({self.sip_response_code})" if self.sip_response_code is not None else ""
        out = [f"Call to {self.uri}: {self.status}{code}"]
        if self.reason:
            out.append(f"  reason:    {self.reason}")
        for warning in self.warnings:
            out.append(f"  warning:   {warning}")
        if self.transport:
            out.append(f"  transport: {self.transport}")
        if self.codec:
            media = f"SRTP {self.suite}" if self.secure else "RTP (not encrypted)"
            if self.encryption == "zrtp":
                media += " keyed by ZRTP"
            out.append(f"  media:     {media}, {self.codec}")
        if self.zrtp_sas:
            verified = "verified" if self.zrtp_sas_verified else "compare it with the peer's"
            out.append(
                f"  zrtp:      SAS {self.zrtp_sas} ({verified}); {self.zrtp_algorithms}; "
                f"cache {self.zrtp_cache}"
            )
        if self.stats:
            s = self.stats
            dropped = s["dropped_auth"] + s["dropped_replay"] + s["dropped_invalid"]
            out.append(
                f"  packets:   sent {s['packets_sent']}, received {s['packets_received']}, "
                f"dropped {dropped} (auth {s['dropped_auth']}, replay {s['dropped_replay']}, "
                f"invalid {s['dropped_invalid']}), lost {s['lost']}"
            )
        if self.digits_received:
            out.append(f"  digits:    received {self.digits_received}")
        if self.end_reason:
            out.append(f"  ended:     {self.end_reason} after {self.duration:.1f} s")
        return out


def _route_source(host: str, port: int) -> str:
    """The local address the kernel would use to reach ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
        return str(probe.getsockname()[0])


async def place_call(
    uri: str,
    *,
    pcm: bytes,
    record: Path | None = None,
    duration: float = 5.0,
    digits: str = "",
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    from_uri: str | None = None,
    verify: bool = True,
    timeout: float = 30.0,
    bind: str | None = None,
    proxy: str | None = None,
    dns: Sequence[str] = (),
    zrtp: bool = False,
) -> CallReport:
    """Dial ``uri``, send ``pcm`` (8 kHz PCM16) and ``digits``, stay ``duration`` seconds,
    hang up, and report. Raises :class:`click.ClickException` for local setup problems.

    The server is located as the engine locates it (RFC 3263: NAPTR, SRV, A/AAAA; ``dns``
    servers, else the system's), and a listener is opened for every transport DNS may choose.
    """

    report = CallReport(uri)
    try:
        target = Target.parse(uri)
    except (RemoteProtocolError, CallXmlError) as exc:
        raise click.UsageError(f"URI: {exc}") from None
    if proxy is not None:
        try:
            target = target.via(proxy)
        except (RemoteProtocolError, CallXmlError) as exc:
            raise click.UsageError(f"--proxy: {exc}") from None
    if zrtp:
        target = target.with_media_encryption("zrtp")
    try:
        resolver = DnsResolver(dns) if dns else SystemResolver()
        candidates = await locate(target.hop, resolver)
    except TransportError as exc:
        raise click.ClickException(str(exc)) from None
    local = bind or _route_source(candidates[0].host, candidates[0].port)
    transports = sorted({c.transport for c in candidates})
    with tempfile.TemporaryDirectory(prefix="callxml-call-") as scratch:
        if "tls" in transports and cert is None:
            # A TLS listener needs a certificate even when we only call out (our Contact is a
            # TLS address the peer may connect back to); make a throw-away one.
            made = ensure_dev_certificate(Path(scratch), (local,))
            cert, key = str(made.cert), str(made.key)
        tls = TlsConfig(ca_file=ca, cert_file=cert, key_file=key, verify=verify)
        try:
            phone = await Phone.start(
                listeners=[ListenerConfig(transport, local, 0) for transport in transports],
                tls=tls,
                media_address=local,
                resolver=resolver,
            )
        except CallXmlError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            await _run(phone, target, report, pcm, duration, digits, from_uri, timeout)
        finally:
            await phone.close()
        if record is not None and report.codec is not None:
            write_wav(record, bytes(report.audio))
    return report


async def _run(
    phone: Phone,
    target: Target,
    report: CallReport,
    pcm: bytes,
    duration: float,
    digits: str,
    from_uri: str | None,
    timeout: float,
) -> None:
    result = await phone.dial(target, from_uri=from_uri, timeout=timeout)
    report.status = result.status
    report.sip_response_code = result.sip_response_code
    report.reason = result.reason
    report.transport = result.transport
    report.sip_call_id = result.sip_call_id
    report.warnings = list(result.warnings)
    leg = result.leg
    if leg is None:
        media_failed = result.status == "failed" and (
            result.sip_response_code in (488, 606)
            or (result.sip_response_code is not None and 200 <= result.sip_response_code < 300)
        )
        report.exit_code = EXIT_MEDIA_FAILED if media_failed else EXIT_NOT_ANSWERED
        return
    report.secure = leg.secure
    report.suite = leg.suite
    report.codec = leg.codec
    report.encryption = leg.encryption
    zrtp = leg.zrtp_result
    if zrtp is not None:
        report.zrtp_sas = zrtp.sas
        report.zrtp_sas_verified = zrtp.verified
        report.zrtp_algorithms = zrtp.algorithms
        report.zrtp_cache = (
            "match" if zrtp.cache_match else ("mismatch" if zrtp.cache_mismatch else "new")
        )
    received: list[str] = []
    leg.set_consumer(report.audio.extend, received.append)
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = [asyncio.ensure_future(leg.play(pcm))]
    if digits:
        tasks.append(asyncio.ensure_future(leg.send_digits(digits)))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leg.ended.wait(), duration)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await leg.hangup("local hangup (duration reached)")
    report.status = "completed"
    report.duration = loop.time() - started
    report.end_reason = leg.end_reason
    report.digits_received = "".join(received)
    stats = leg.stats
    report.stats = {
        name: int(getattr(stats, name))
        for name in (
            "packets_sent",
            "packets_received",
            "dropped_auth",
            "dropped_replay",
            "dropped_invalid",
            "lost",
            "octets_sent",
            "octets_received",
        )
    }
    report.exit_code = EXIT_OK if stats.packets_received else EXIT_NO_MEDIA
    if not stats.packets_received:
        report.reason = "no RTP arrived from the peer"


def _check_from(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(parse_uri(value))
    except RemoteProtocolError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_dns(servers: tuple[str, ...]) -> tuple[str, ...]:
    if servers:
        try:
            DnsResolver(servers)
        except TransportError as exc:
            raise click.BadParameter(str(exc), param_hint="--dns") from None
    return servers


def _check_digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if not value:
        return ""
    if len(value) > MAX_DIGITS or any(c not in "0123456789*#ABCDabcd" for c in value):
        raise click.BadParameter(f"up to {MAX_DIGITS} of 0-9 * # A-D")
    return value.upper()


@click.command("call")
@click.argument("uri")
@click.option(
    "--play",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Audio file to send (any format libsndfile reads). Default: a 1 kHz test tone.",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what the far end sent to this WAV file (8 kHz mono).",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.1, MAX_DURATION),
    default=5.0,
    show_default=True,
    help="Seconds to stay connected after the answer.",
)
@click.option("--digits", callback=_check_digits, help="DTMF to send after the answer (RFC 4733).")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle (PEM) to verify the peer's TLS certificate. Default: the system store.",
)
@click.option(
    "--cert", type=click.Path(exists=True, dir_okay=False), help="Our TLS certificate chain."
)
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Its private key.")
@click.option(
    "--from",
    "from_uri",
    callback=_check_from,
    help="From URI (default sip:callxml@<local address>).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify the peer's TLS certificate (self-signed lab peers only).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for an answer before cancelling.",
)
@click.option("--bind", help="Local IP address for SIP and RTP (default: the route to the peer).")
@click.option(
    "--tone",
    type=click.FloatRange(50, 3900),
    default=TEST_TONE_HZ,
    show_default=True,
    help="Frequency of the test tone sent when --play is not given.",
)
@click.option(
    "--proxy",
    help="Send the INVITE to this SIP URI (outbound proxy, e.g. 'sip:127.0.0.1:5060') "
    "instead of the target's host; the Request-URI stays URI.",
)
@click.option(
    "--dns",
    multiple=True,
    callback=lambda ctx, param, value: _check_dns(value),
    help="DNS server for locating the target (RFC 3263 NAPTR/SRV/A), e.g. 192.0.2.53 or "
    "127.0.0.1:5353; repeat for several. Default: the system resolver.",
)
@click.option(
    "--zrtp",
    is_flag=True,
    help="Key the media with ZRTP (RFC 6189) instead of SDES; the report shows the SAS to "
    "compare with the peer's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def call_command(
    uri: str,
    play: Path | None,
    record: Path | None,
    duration: float,
    digits: str,
    ca: str | None,
    cert: str | None,
    key: str | None,
    from_uri: str | None,
    insecure: bool,
    timeout: float,
    bind: str | None,
    tone: float,
    proxy: str | None,
    dns: tuple[str, ...],
    zrtp: bool,
    as_json: bool,
) -> None:
    """Place one call to URI and report how it went.

    \b
    Examples:
      callxml call 'sip:alice@192.0.2.10'
      callxml call 'sip:jack@pbx.example.com;secure=true' --ca ca.pem --record heard.wav
      callxml call 'sip:ivr@demo.callxml.localhost' --proxy sip:127.0.0.1:5060
      callxml call 'sip:alice@192.0.2.10' --zrtp

    ;secure=true (or sips:) uses SIP over TLS on port 5061 unless the URI names a port,
    and SRTP (AES_CM_128_HMAC_SHA1_80). Exit status: 0 answered with media, 1 not answered,
    3 media negotiation failed (e.g. the peer refused SRTP), 4 answered but no RTP received.
    --zrtp keys the media with ZRTP in band (RTP/AVP with a=zrtp-hash); the report shows the
    SAS, and a ZRTP failure is exit status 3.
    """
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    if bind is not None:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise click.BadParameter("an IP address", param_hint="--bind") from None
    if play is not None:
        if play.stat().st_size > MAX_PLAY_BYTES:
            raise click.BadParameter(f"larger than {MAX_PLAY_BYTES} bytes", param_hint="--play")
        try:
            pcm = read_audio(play)[: int(duration * 8000) * 2]
        except CallXmlError as exc:
            raise click.BadParameter(str(exc), param_hint="--play") from None
    else:
        pcm = sine(tone, int(duration * 1000), amplitude=0.4)
    report = asyncio.run(
        place_call(
            uri,
            pcm=pcm,
            record=record,
            duration=duration,
            digits=digits,
            ca=ca,
            cert=cert,
            key=key,
            from_uri=from_uri,
            verify=not insecure,
            timeout=timeout,
            bind=bind,
            proxy=proxy,
            dns=dns,
            zrtp=zrtp,
        )
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(report.exit_code)
