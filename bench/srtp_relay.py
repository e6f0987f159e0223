"""SRTP→SRTP relay throughput: packets relayed per CPU-second of the relaying process.

A sender subprocess protects RTP packets (160-octet G.711 payloads) with key K1 and sends them as
fast as it can to leg A of a relay on loopback; the relay unprotects each packet with K1,
protects it with K2 and sends it from leg B to a sink socket. The relay process's CPU time
(``time.process_time``) over the sending window gives packets per CPU-second. Three figures, in
the same run and on the same event loop:

* ``callxml``: two :class:`callxml.media.stream.RtpEndpoint` legs joined by
  :class:`callxml.media.relay.MediaRelay` — the project's own media code, SRTP included, with
  its default socket path (recvmmsg/sendmmsg on Linux);
* ``callxml transport``: the same with ``RtpConfig(batched_io=False)``, the asyncio datagram
  transport path the product falls back to where recvmmsg is unavailable;
* ``raw relay``: a bare ``asyncio.DatagramProtocol`` calling pylibsrtp unprotect + protect +
  ``sendto`` — the same sockets and loop with nothing else;
* ``raw crypto``: pylibsrtp unprotect + protect in a plain loop, no sockets at all;
* ``UDP only``: the bare protocol without any crypto — the ceiling the event loop and the
  two system calls per packet (recvfrom, sendto) allow.

Run with and without uvloop; each measurement is repeated (``--rounds``, default 3, interleaved)
and the medians printed, with the lowest and highest per-round ratio of ``callxml`` to ``raw
crypto``. Each window is bounded (``--seconds``, default 0.6 s), so the whole run takes about
half a minute. Usage: ``python bench/srtp_relay.py [--seconds S] [--rounds N]
[--no-uvloop]``.

``--calls N`` measures N bridged calls at 50 packets/s instead, and ``--in-process`` the receive
code alone: nanoseconds per packet of the batched relay loop and of ``datagram_received`` with
the sends stubbed out, far steadier than the end-to-end figures on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp

from callxml.media.relay import MediaRelay
from callxml.media.srtp import SrtpSession, generate_key_salt
from callxml.media.stream import RtpConfig, RtpEndpoint, SrtpKeys
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80

SUITE = AES_CM_128_HMAC_SHA1_80
PAYLOAD = bytes(160)


def _rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (160 * seq) & 0xFFFFFFFF, ssrc) + PAYLOAD


# -- the sender (a subprocess, so its CPU time is not the relay's) ---------------------------


def run_sender(port: int, key_hex: str, seconds: float) -> None:
    """Wait for a line on stdin, then blast SRTP at 127.0.0.1:port for ``seconds``."""
    session = SrtpSession(SUITE, our_key=bytes.fromhex(key_hex), their_key=None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ssrc = int.from_bytes(os.urandom(4), "big")
    print("ready", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + seconds
    seq = 0
    target = ("127.0.0.1", port)
    while True:
        for _ in range(64):
            sock.sendto(session.protect(_rtp(seq, ssrc)), target)
            seq += 1
        if time.monotonic() >= deadline:
            break
    print(seq, flush=True)


def run_call_sender(seconds: float) -> None:
    """Read "PORT KEY" lines until "go", then send each call one packet every 20 ms."""
    calls = []
    for line in sys.stdin:
        if line.strip() == "go":
            break
        port, key_hex = line.split()
        session = SrtpSession(SUITE, our_key=bytes.fromhex(key_hex), their_key=None)
        calls.append((("127.0.0.1", int(port)), session, int.from_bytes(os.urandom(4), "big")))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < seconds:
        for target, session, ssrc in calls:
            sock.sendto(session.protect(_rtp(seq, ssrc)), target)
        seq += 1
        time.sleep(max(0.0, start + seq * 0.02 - time.monotonic()))
    print(seq * len(calls), flush=True)


# -- the relays ----------------------------------------------------------------------------


class RawRelay(asyncio.DatagramProtocol):
    """The baseline: pylibsrtp and sendto, nothing else (``crypto=False``: sendto only)."""

    def __init__(
        self, key_in: bytes, key_out: bytes, sink: tuple[str, int], *, crypto: bool = True
    ) -> None:
        self.crypto = crypto
        self.rx = pylibsrtp.Session(
            pylibsrtp.Policy(key=key_in, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
        )
        self.tx = pylibsrtp.Session(
            pylibsrtp.Policy(key=key_out, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        self.sink = sink
        self.out: Any = None
        self.relayed = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.crypto:
            try:
                data = self.tx.protect(self.rx.unprotect(data))
            except pylibsrtp.Error:
                return
        self.out.sendto(data, self.sink)
        self.relayed += 1


async def _window(port: int, key_in: bytes, seconds: float, relayed: Callable[[], int]) -> float:
    """Run one sender against ``port``; return relayed packets per CPU-second."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--sender",
        str(port),
        key_in.hex(),
        str(seconds),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    await proc.stdout.readline()  # ready
    start_count, start_cpu = relayed(), time.process_time()
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    await proc.stdout.readline()  # number sent
    await proc.wait()
    await asyncio.sleep(0.05)  # drain what is still queued on the socket
    cpu = time.process_time() - start_cpu
    return (relayed() - start_count) / cpu if cpu > 0 else 0.0


async def bench_callxml(seconds: float, sink: tuple[str, int], *, batched: bool = True) -> float:
    k1, k2 = generate_key_salt(SUITE), generate_key_salt(SUITE)
    config = RtpConfig(rtcp=False, batched_io=batched)
    leg_a = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, generate_key_salt(SUITE), k1))
    leg_b = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, k2, generate_key_salt(SUITE)))
    leg_a.set_remote(("127.0.0.1", 9))
    leg_b.set_remote(sink)
    leg_b._latched = True  # nothing will arrive on leg B; keep the sink as its peer
    try:
        with MediaRelay(leg_a, leg_b):
            return await _window(
                leg_a.local_address[1], k1, seconds, lambda: leg_b.stats.packets_sent
            )
    finally:
        await leg_a.close()
        await leg_b.close()


async def bench_raw_relay(seconds: float, sink: tuple[str, int], *, crypto: bool = True) -> float:
    k1, k2 = generate_key_salt(SUITE), generate_key_salt(SUITE)
    loop = asyncio.get_running_loop()
    relay = RawRelay(k1, k2, sink, crypto=crypto)
    transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
    relay.out = transport
    try:
        port = transport.get_extra_info("sockname")[1]
        return await _window(port, k1, seconds, lambda: relay.relayed)
    finally:
        transport.close()


def bench_raw_crypto(seconds: float) -> float:
    """pylibsrtp unprotect + protect on pre-protected packets, no I/O."""
    k1, k2 = generate_key_salt(SUITE), generate_key_salt(SUITE)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=k1, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=k1, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    out = pylibsrtp.Session(pylibsrtp.Policy(key=k2, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    batch = [tx.protect(_rtp(seq, 0x1234)) for seq in range(50_000)]
    done, cpu, start = 0, 0.0, time.process_time()
    while cpu < seconds and done < len(batch):
        for packet in batch[done : done + 5000]:
            out.protect(rx.unprotect(packet))
        done += 5000
        cpu = time.process_time() - start
    return done / cpu


async def bench_calls(calls: int, seconds: float, *, batched: bool) -> float:
    """``calls`` bridged SRTP calls at 50 packets/s each: relay CPU microseconds per packet."""
    config = RtpConfig(rtcp=False, batched_io=batched)
    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_sock.bind(("127.0.0.1", 0))
    sink = sink_sock.getsockname()
    legs: list[RtpEndpoint] = []
    relays: list[MediaRelay] = []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--call-sender",
        str(seconds),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for _ in range(calls):
            key = generate_key_salt(SUITE)
            leg_a = await RtpEndpoint.open(
                config, srtp=SrtpKeys(SUITE, generate_key_salt(SUITE), key)
            )
            leg_b = await RtpEndpoint.open(
                config, srtp=SrtpKeys(SUITE, generate_key_salt(SUITE), generate_key_salt(SUITE))
            )
            legs += (leg_a, leg_b)
            leg_a.set_remote(("127.0.0.1", 9))
            leg_b.set_remote(sink)
            relays.append(MediaRelay(leg_a, leg_b))
            relays[-1].start()
            proc.stdin.write(f"{leg_a.local_address[1]} {key.hex()}\n".encode())
        start_cpu = time.process_time()
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await proc.stdout.readline()  # number sent
        await proc.wait()
        await asyncio.sleep(0.05)
        cpu = time.process_time() - start_cpu
        relayed = sum(leg.stats.packets_sent for leg in legs[1::2])
        return cpu / relayed * 1e6 if relayed else 0.0
    finally:
        for relay in relays:
            relay.stop()
        for leg in legs:
            await leg.close()
        sink_sock.close()


async def run_all(seconds: float, rounds: int) -> tuple[list[float], float, float]:
    """Interleave the five measurements ``rounds`` times; return their medians and the lowest
    and highest per-round ratio of ``callxml`` to ``raw crypto``."""
    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_sock.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    sink = sink_sock.getsockname()
    samples: list[list[float]] = [[], [], [], [], []]
    try:
        for _ in range(rounds):
            samples[0].append(await bench_callxml(seconds, sink))
            samples[1].append(await bench_callxml(seconds, sink, batched=False))
            samples[2].append(await bench_raw_relay(seconds, sink))
            samples[3].append(bench_raw_crypto(seconds / 2))
            samples[4].append(await bench_raw_relay(seconds, sink, crypto=False))
    finally:
        sink_sock.close()
    ratios = [ours / crypto for ours, crypto in zip(samples[0], samples[3], strict=True)]
    return [statistics.median(s) for s in samples], min(ratios), max(ratios)


class _NoSend:
    """A transport that sends nothing: ``--in-process`` times our code, not the kernel's."""

    def sendto(self, data: bytes, addr: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def bench_in_process(batches: int) -> dict[str, list[float]]:
    """Nanoseconds per packet of the relay's own receive code with no system calls: the batched
    loop (``RtpEndpoint._relay_batch``) on BATCH pre-protected packets placed in the slots, and
    ``datagram_received`` one packet at a time (the transport path), SRTP to SRTP, sends
    stubbed. One figure per batch of BATCH packets."""
    from callxml.media.mmsg import BATCH, build_sockaddr

    source = ("127.0.0.1", 40000)
    times: dict[str, list[float]] = {}
    for batched in (True, False):
        k1 = generate_key_salt(SUITE)
        sender = SrtpSession(SUITE, our_key=k1, their_key=None)  # fresh: sequence numbers restart
        config = RtpConfig(rtcp=False, batched_io=batched)
        leg_a = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, generate_key_salt(SUITE), k1))
        leg_b = await RtpEndpoint.open(
            config, srtp=SrtpKeys(SUITE, generate_key_salt(SUITE), generate_key_salt(SUITE))
        )
        leg_a.set_remote(source)
        leg_b.set_remote(("127.0.0.1", 9))
        packets = [sender.protect(_rtp(seq, 0x1234)) for seq in range(batches * BATCH)]
        figures: list[float] = []
        try:
            with MediaRelay(leg_a, leg_b):
                io = leg_a._io
                if batched and io is not None and leg_b._io is not None:
                    leg_b._io.send_prepared = lambda count: count  # type: ignore[method-assign]
                    batch = io.batch
                    raw = build_sockaddr(source, io.family)
                    assert raw is not None
                    for i in range(BATCH):
                        batch.name_views[i][0 : len(raw)] = raw
                    memmove = batch.api.ffi.memmove
                    for n in range(batches):
                        for i, packet in enumerate(packets[n * BATCH : (n + 1) * BATCH]):
                            memmove(batch.slots[i], packet, len(packet))
                            batch.headers[i].msg_len = len(packet)
                        start = time.perf_counter_ns()
                        leg_a._relay_batch(batch, BATCH, leg_b)
                        figures.append((time.perf_counter_ns() - start) / BATCH)
                    times["batched loop"] = figures
                elif not batched:
                    leg_b._transport = _NoSend()
                    received = leg_a.datagram_received
                    for n in range(batches):
                        chunk = packets[n * BATCH : (n + 1) * BATCH]
                        start = time.perf_counter_ns()
                        for packet in chunk:
                            received(packet, source)
                        figures.append((time.perf_counter_ns() - start) / BATCH)
                    times["datagram_received"] = figures
            assert leg_b.stats.packets_sent == len(figures) * BATCH, "not every packet relayed"
        finally:
            await leg_a.close()
            await leg_b.close()
    return times


def in_process_report(rounds: int) -> None:
    print("SRTP->SRTP relay in process, no system calls: ns per packet (best / median batch)")
    for _ in range(rounds):
        times = asyncio.run(bench_in_process(1500))
        print(
            "  ".join(
                f"{name} {min(values):,.0f} / {statistics.median(values):,.0f}"
                for name, values in times.items()
            )
        )


def calls_report(
    calls: int,
    seconds: float,
    rounds: int,
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]],
) -> None:
    print(f"{calls} bridged SRTP calls at 50 packets/s each for {seconds:g} s, {rounds} rounds")
    print("relay CPU microseconds per relayed packet (medians, range); lower is better")
    for name, factory in loops:
        with asyncio.Runner(loop_factory=factory) as runner:
            figures: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(rounds):
                for batched in (True, False):
                    figures[batched].append(
                        runner.run(bench_calls(calls, seconds, batched=batched))
                    )
        line = [f"{name:<8}"]
        for batched, label in ((True, "batched"), (False, "transport")):
            values = figures[batched]
            line.append(
                f"{label} {statistics.median(values):5.1f} ({min(values):.1f}-{max(values):.1f})"
            )
        print("  ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="sending window per case")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (medians are shown)")
    parser.add_argument("--no-uvloop", action="store_true", help="only the default asyncio loop")
    parser.add_argument(
        "--calls",
        type=int,
        default=0,
        help="instead: N bridged calls at 50 packets/s each; relay CPU per packet",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="instead: ns per packet of the receive code alone, no system calls",
    )
    parser.add_argument(
        "--sender", nargs=3, metavar=("PORT", "KEY", "SECONDS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--call-sender", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender(int(args.sender[0]), args.sender[1], float(args.sender[2]))
        return
    if args.call_sender:
        run_call_sender(args.call_sender)
        return
    rounds = max(1, min(args.rounds, 9))
    if args.in_process:
        in_process_report(rounds)
        return
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    if not args.no_uvloop:
        try:
            import uvloop

            loops.append(("uvloop", uvloop.new_event_loop))
        except ImportError:
            print("uvloop not installed: asyncio only", file=sys.stderr)
    seconds = max(0.2, min(args.seconds, 10.0))
    if args.calls:
        calls_report(max(1, min(args.calls, 500)), max(1.0, min(args.seconds, 30.0)), rounds, loops)
        return
    print(f"SRTP->SRTP relay, {SUITE}, 172-octet RTP, packets per CPU-second of the relay")
    print(f"medians of {rounds} rounds of {seconds:g} s; ratio = callxml / baseline")
    head: tuple[str, ...] = ("loop", "callxml", "transport", "raw relay", "ratio")
    head += ("raw crypto", "ratio", "range", "UDP only")
    widths = (-8, 9, 10, 10, 6, 11, 6, 10, 10)
    print(
        " ".join(f"{h:{'<' if w < 0 else '>'}{abs(w)}}" for h, w in zip(head, widths, strict=True))
    )
    for name, factory in loops:
        with asyncio.Runner(loop_factory=factory) as runner:
            medians, low, high = runner.run(run_all(seconds, rounds))
        ours, transport, raw, crypto, floor = medians
        span = f"{low:.2f}-{high:.2f}"
        print(
            f"{name:<8} {ours:>9,.0f} {transport:>10,.0f} {raw:>10,.0f} {ours / raw:>6.2f}"
            f" {crypto:>11,.0f} {ours / crypto:>6.2f} {span:>10} {floor:>10,.0f}"
        )


if __name__ == "__main__":
    main()
