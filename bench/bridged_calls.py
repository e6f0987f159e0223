"""Bridged SRTP calls at call rates: relay CPU per packet, loss and added latency.

N calls are bridged in this process, each as an engine bridges them: two
:class:`~callxml.media.stream.RtpEndpoint` legs (the engine's media settings: RTCP on its own
port every 5 s, continuous media on, SRTP with its own keys on each side) joined by
:class:`~callxml.media.relay.MediaRelay`. Two other processes play the far ends over real UDP
sockets on loopback, so their CPU time is not the relay's:

* the **generator** sends every call's two directions, 50 packets/s each (one 172-octet SRTP
  packet per direction every 20 ms, the calls' phases spread evenly over the 20 ms), from the
  sockets the legs were told about (so symmetric RTP latches where the SDP said);
* the **sink** reads the relayed packets on those same sockets (it looks every millisecond
  rather than sleeping on them: on loopback, waking a waiting reader is charged to the sender,
  here the relay, which no far end on a network would cost it), unprotects them with the keys
  the legs send with, and reads the send time the generator put in the payload
  (``CLOCK_MONOTONIC`` is system-wide): latency = arrival after decryption - send. The sink's
  own polling adds up to a millisecond to both subjects alike.

The reference, measured in the same run with the same N, sockets, generator and sink (rounds
interleaved), is a bare relay: an ``asyncio.DatagramProtocol`` per leg doing pylibsrtp
unprotect + protect + ``sendto`` to the latched peer and nothing else.

Printed per subject, over a window after a warm-up: the relay process's CPU microseconds per
relayed packet (``time.process_time``), what that makes per core (a call is 100 relayed
packets/s), the packet loss (sent in the window, never read by the sink) and the p50/p99
one-way latency; then medians and the goals (issue 15): <= 10 µs per relayed packet (>= 1,000
bridged calls per core), loss < 0.1 %, p99 added latency (callxml's p99 - the reference's p99)
< 2 ms.

    python bench/bridged_calls.py [--calls 200] [--seconds 4] [--rounds 3] [--uvloop]

The engine runs on the default asyncio loop (``callxml serve``); ``--uvloop`` measures both
subjects on uvloop instead.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import resource
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp

SUITE = "AES_CM_128_HMAC_SHA1_80"
PTIME_NS = 20_000_000
PAYLOAD_OCTETS = 160
GOAL_US = 10.0
GOAL_LOSS = 0.001
GOAL_ADDED_P99_MS = 2.0
_HEADER = struct.Struct("!BBHII")
_STAMP = struct.Struct("!qI")  # send time (ns, CLOCK_MONOTONIC), stream number


def _session(key: bytes, *, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind))


# -- the far ends (other processes) ---------------------------------------------------------


def run_generator() -> None:
    """stdin: one JSON object: t_start, t_stop (ns), window [t0, t1) (ns), and per stream
    (fd, destination port, key hex). Sends each stream one packet every 20 ms from t_start,
    streams spread evenly over the 20 ms; prints how many were sent with a send time in the
    window."""
    plan = json.loads(sys.stdin.readline())
    streams = []
    for number, (fd, port, key_hex) in enumerate(plan["streams"]):
        sock = socket.socket(fileno=fd)
        session = _session(bytes.fromhex(key_hex), outbound=True)
        ssrc = int.from_bytes(os.urandom(4), "big")
        streams.append((sock, ("127.0.0.1", port), session, ssrc, number))
    count = len(streams)
    t_start, t_stop, t0, t1 = plan["t_start"], plan["t_stop"], plan["t0"], plan["t1"]
    in_window = 0
    seq = 0
    padding = bytes(PAYLOAD_OCTETS - _STAMP.size)
    index = 0
    while True:
        # stream ``index`` of round ``seq`` is due at t_start + seq * 20 ms + its phase
        due = t_start + seq * PTIME_NS + index * PTIME_NS // count
        if due >= t_stop:
            break
        now = time.monotonic_ns()
        if due > now:
            time.sleep((due - now) / 1e9)
            continue
        sock, target, session, ssrc, number = streams[index]
        stamp = time.monotonic_ns()
        header = _HEADER.pack(0x80, 0, seq & 0xFFFF, (160 * seq) & 0xFFFFFFFF, ssrc)
        packet = session.protect(header + _STAMP.pack(stamp, number) + padding)
        try:
            sock.sendto(packet, target)
        except OSError:
            pass
        if t0 <= stamp < t1:
            in_window += 1
        index += 1
        if index == count:
            index = 0
            seq += 1
    cpu = time.process_time()
    print(json.dumps({"sent": in_window, "cpu": cpu}), flush=True)


def run_sink() -> None:
    """stdin: one JSON object: window [t0, t1), t_end (ns), and per stream (fd, key hex).
    Reads every socket until t_end; prints the packets from the window that arrived and
    authenticated, and latency percentiles of those (ms)."""
    plan = json.loads(sys.stdin.readline())
    poller = select.epoll()
    sockets: dict[int, tuple[socket.socket, pylibsrtp.Session]] = {}
    for fd, key_hex in plan["streams"]:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sockets[fd] = (sock, _session(bytes.fromhex(key_hex), outbound=False))
        poller.register(fd, select.EPOLLIN)
    t0, t1, t_end = plan["t0"], plan["t1"], plan["t_end"]
    latencies = array.array("q")
    failed = 0
    unpack = _STAMP.unpack_from
    while True:
        now = time.monotonic_ns()
        if now >= t_end:
            break
        # Look every millisecond rather than wait on the sockets: a waiting sink would be
        # woken by each packet, and on loopback that wakeup is charged to the relay's sendto
        # (several µs a packet that no real far end costs the relay).
        time.sleep(0.001)
        for fd, _ in poller.poll(0):
            sock, session = sockets[fd]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                arrived = time.monotonic_ns()
                try:
                    plain = session.unprotect(data)
                except pylibsrtp.Error:
                    failed += 1
                    continue
                stamp, _ = unpack(plain, 12)
                if t0 <= stamp < t1:
                    latencies.append(arrived - stamp)
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1e6 if ordered else 0.0

    report = {
        "received": len(ordered),
        "failed": failed,
        "p50": percentile(0.50),
        "p99": percentile(0.99),
        "max": ordered[-1] / 1e6 if ordered else 0.0,
        "cpu": time.process_time(),
    }
    print(json.dumps(report), flush=True)


# -- the relays (this process) --------------------------------------------------------------


@dataclass
class Keys:
    """One call's four SRTP keys: what each far end sends with and what each leg sends with."""

    a_in: bytes
    a_out: bytes
    b_in: bytes
    b_out: bytes


class Subject:
    """A relay under test: N bridged calls on sockets of its own."""

    name = ""

    async def open(self, calls: list[tuple[Keys, tuple[int, int]]]) -> list[tuple[int, int]]:
        """Bridge each call (keys, the far ends' ports A and B); return the legs' ports."""
        raise NotImplementedError

    def relayed(self) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class CallxmlRelay(Subject):
    """The engine's way: RtpEndpoint legs with its media settings, continuous media on,
    bridged by MediaRelay (pass-through, SRTP to SRTP)."""

    name = "callxml"

    def __init__(self) -> None:
        self.legs: list[Any] = []
        self.relays: list[Any] = []

    async def open(self, calls: list[tuple[Keys, tuple[int, int]]]) -> list[tuple[int, int]]:
        from callxml.media.relay import MediaRelay
        from callxml.media.stream import RtpEndpoint, SrtpKeys
        from callxml.runtime.leg import MediaSettings

        config = MediaSettings(address="127.0.0.1").rtp_config()
        ports = []
        for keys, (far_a, far_b) in calls:
            a = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, keys.a_out, keys.a_in))
            b = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, keys.b_out, keys.b_in))
            for leg, far in ((a, far_a), (b, far_b)):
                leg.set_remote(("127.0.0.1", far))
                leg.keep_sending()  # answered legs never fall silent (the engine does this)
                self.legs.append(leg)
            relay = MediaRelay(a, b)
            relay.start()
            self.relays.append(relay)
            ports.append((a.local_address[1], b.local_address[1]))
        return ports

    def relayed(self) -> int:
        return sum(leg.stats.packets_sent for leg in self.legs)

    async def close(self) -> None:
        for relay in self.relays:
            relay.stop()
        for leg in self.legs:
            await leg.close()


class _BareLeg(asyncio.DatagramProtocol):
    def __init__(self, rx: pylibsrtp.Session, tx: pylibsrtp.Session, peer: Any) -> None:
        self.rx, self.tx, self.peer = rx, tx, peer
        self.other: _BareLeg | None = None
        self.transport: Any = None
        self.sent = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        other = self.other
        assert other is not None
        try:
            packet = other.tx.protect(self.rx.unprotect(data))
        except pylibsrtp.Error:
            return
        self.peer = addr  # symmetric RTP, the bare minimum
        other.transport.sendto(packet, other.peer)
        other.sent += 1


class BareRelay(Subject):
    """The reference: pylibsrtp unprotect + protect + sendto, nothing else."""

    name = "reference"

    def __init__(self) -> None:
        self.legs: list[_BareLeg] = []

    async def open(self, calls: list[tuple[Keys, tuple[int, int]]]) -> list[tuple[int, int]]:
        loop = asyncio.get_running_loop()
        ports = []
        for keys, (far_a, far_b) in calls:
            a = _BareLeg(
                _session(keys.a_in, outbound=False),
                _session(keys.a_out, outbound=True),
                ("127.0.0.1", far_a),
            )
            b = _BareLeg(
                _session(keys.b_in, outbound=False),
                _session(keys.b_out, outbound=True),
                ("127.0.0.1", far_b),
            )
            a.other, b.other = b, a
            pair = []
            for leg in (a, b):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda leg=leg: leg, local_addr=("127.0.0.1", 0)
                )
                leg.transport = transport
                pair.append(transport.get_extra_info("sockname")[1])
                self.legs.append(leg)
            ports.append((pair[0], pair[1]))
        return ports

    def relayed(self) -> int:
        return sum(leg.sent for leg in self.legs)

    async def close(self) -> None:
        for leg in self.legs:
            leg.transport.close()


@dataclass
class Figures:
    us_per_packet: float
    relayed: int
    sent: int
    received: int
    p50: float
    p99: float

    @property
    def loss(self) -> float:
        return max(0, self.sent - self.received) / self.sent if self.sent else 1.0


def _key() -> bytes:
    return os.urandom(30)  # AES-128 key + 112-bit salt


async def measure(subject: Subject, calls: int, seconds: float, warmup: float) -> Figures:
    """One run of ``calls`` bridged calls through ``subject``."""
    far = []
    for _ in range(2 * calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind(("127.0.0.1", 0))
        far.append(sock)
    keys = [Keys(_key(), _key(), _key(), _key()) for _ in range(calls)]
    plan = [
        (k, (far[2 * i].getsockname()[1], far[2 * i + 1].getsockname()[1]))
        for i, k in enumerate(keys)
    ]
    try:
        ports = await subject.open(plan)
        now = time.monotonic_ns()
        t_start = now + 300_000_000  # the far ends start in 0.3 s
        t0 = t_start + int(warmup * 1e9)
        t1 = t0 + int(seconds * 1e9)
        t_stop, t_end = t1 + 100_000_000, t1 + 600_000_000
        generator_streams, sink_streams = [], []
        for i, k in enumerate(keys):
            port_a, port_b = ports[i]
            generator_streams += [
                (far[2 * i].fileno(), port_a, k.a_in.hex()),
                (far[2 * i + 1].fileno(), port_b, k.b_in.hex()),
            ]
            sink_streams += [
                (far[2 * i].fileno(), k.a_out.hex()),
                (far[2 * i + 1].fileno(), k.b_out.hex()),
            ]
        fds = [sock.fileno() for sock in far]
        window = {"t0": t0, "t1": t1}
        generator = await _spawn(
            "--generator",
            fds,
            {**window, "t_start": t_start, "t_stop": t_stop, "streams": generator_streams},
        )
        sink = await _spawn("--sink", fds, {**window, "t_end": t_end, "streams": sink_streams})
        for sock in far:  # the far ends own them now
            sock.close()
        far = []
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, (t0 - time.monotonic_ns()) / 1e9))
        cpu0, relayed0 = time.process_time(), subject.relayed()
        await asyncio.sleep(max(0.0, (t1 - time.monotonic_ns()) / 1e9))
        cpu1, relayed1 = time.process_time(), subject.relayed()
        generated = json.loads(await _result(generator))
        sent = generated["sent"]
        received = json.loads(await _result(sink))
        if os.environ.get("CALLXML_BENCH_VERBOSE"):
            print(f"      generator CPU {generated['cpu']:.2f} s, sink CPU {received['cpu']:.2f} s")
        del loop
        relayed = relayed1 - relayed0
        return Figures(
            us_per_packet=(cpu1 - cpu0) / relayed * 1e6 if relayed else float("inf"),
            relayed=relayed,
            sent=sent,
            received=received["received"],
            p50=received["p50"],
            p99=received["p99"],
        )
    finally:
        for sock in far:
            sock.close()
        await subject.close()


async def _spawn(role: str, fds: list[int], plan: dict[str, Any]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        role,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=fds,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(plan).encode() + b"\n")
    await proc.stdin.drain()
    proc.stdin.close()
    return proc


async def _result(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    await proc.wait()
    return line.decode()


def _raise_file_limit(calls: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8 * calls + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="bridged calls (default 200)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per subject")
    parser.add_argument("--uvloop", action="store_true", help="run both subjects on uvloop")
    parser.add_argument(
        "--only", choices=("callxml", "reference"), help="one subject alone (for profiling)"
    )
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        run_generator()
        return
    if args.sink:
        run_sink()
        return
    calls = max(1, min(args.calls, 2000))
    _raise_file_limit(calls)
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    loop_name = "asyncio"
    if args.uvloop:
        import uvloop

        factory, loop_name = uvloop.new_event_loop, "uvloop"
    print(
        f"{calls} bridged SRTP calls, 50 packets/s each way, {args.seconds:g} s windows, "
        f"{args.rounds} rounds, {loop_name} loop"
    )
    print(
        f"{'round':>5} {'subject':<10} {'µs/packet':>9} {'calls/core':>10} {'relayed':>8} "
        f"{'loss %':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    results: dict[str, list[Figures]] = {"callxml": [], "reference": []}
    with asyncio.Runner(loop_factory=factory) as runner:
        for index in range(max(1, args.rounds)):
            subjects: list[Subject] = [CallxmlRelay(), BareRelay()]
            if index % 2:
                subjects.reverse()
            if args.only:
                subjects = [s for s in subjects if s.name == args.only]
            for subject in subjects:
                figures = runner.run(measure(subject, calls, args.seconds, args.warmup))
                results[subject.name].append(figures)
                per_core = 1e6 / (figures.us_per_packet * 100)
                print(
                    f"{index + 1:>5} {subject.name:<10} {figures.us_per_packet:>9.2f} "
                    f"{per_core:>10,.0f} {figures.relayed:>8,} {100 * figures.loss:>7.3f} "
                    f"{figures.p50:>7.2f} {figures.p99:>7.2f}"
                )
    ours, reference = results["callxml"], results["reference"]
    if not (ours and reference):
        return
    us = statistics.median(f.us_per_packet for f in ours)
    ref_us = statistics.median(f.us_per_packet for f in reference)
    loss = statistics.median(f.loss for f in ours)
    added = statistics.median(o.p99 - r.p99 for o, r in zip(ours, reference, strict=True))
    print(
        f"medians: callxml {us:.2f} µs/packet ({1e6 / (us * 100):,.0f} calls/core), reference "
        f"{ref_us:.2f} ({1e6 / (ref_us * 100):,.0f}); callxml/reference CPU {us / ref_us:.2f}"
    )
    verdicts = [
        (f"<= {GOAL_US:g} µs per relayed packet", us <= GOAL_US, f"{us:.2f}"),
        (f"loss < {100 * GOAL_LOSS:g} %", loss < GOAL_LOSS, f"{100 * loss:.3f} %"),
        (f"p99 added < {GOAL_ADDED_P99_MS:g} ms", added < GOAL_ADDED_P99_MS, f"{added:.2f} ms"),
    ]
    for goal, met, value in verdicts:
        print(f"goal {goal}: {'met' if met else 'NOT met'} ({value})")


if __name__ == "__main__":
    main()
