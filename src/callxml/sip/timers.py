"""SIP timer values (RFC 3261 §17 and Table 4 in §A, RFC 6026 §8.4/§8.7 for timers L and M).

This module owns the three base intervals (T1, T2, T4) and how every named timer derives from
them, per transport. It knows nothing about state machines: the transactions ask it for a
duration by RFC name. All values are seconds as floats; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callxml.errors import ConfigError

__all__ = ["DEFAULT_TIMERS", "Timer", "TimerConfig"]


class Timer(StrEnum):
    """The timers of RFC 3261 Table 4 plus RFC 6026's L and M, by their RFC letter."""

    A = "A"  # INVITE request retransmit, client, UDP only
    B = "B"  # INVITE transaction timeout, client
    D = "D"  # wait time for response retransmits, INVITE client
    E = "E"  # non-INVITE request retransmit, client, UDP only
    F = "F"  # non-INVITE transaction timeout, client
    G = "G"  # INVITE final response retransmit, server, UDP only
    H = "H"  # wait time for ACK receipt, INVITE server
    I = "I"  # noqa: E741  wait time for ACK retransmits, INVITE server
    J = "J"  # wait time for non-INVITE request retransmits, server
    K = "K"  # wait time for response retransmits, non-INVITE client
    L = "L"  # RFC 6026: wait time for accepted INVITE request retransmits, server
    M = "M"  # RFC 6026: wait time for retransmission of 2xx to INVITE, client


@dataclass(frozen=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max message lifetime).

    RFC 3261 §17.1.1.1: T1 defaults to 500 ms, T2 to 4 s, T4 to 5 s; they may be changed, e.g.
    shortened on a private network or for tests.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0:
            raise ConfigError("sip timers: need 0 < T1 <= T2 and T4 > 0")

    def duration(self, timer: Timer, *, reliable: bool) -> float:
        """The initial value of ``timer`` (RFC 3261 §A, Table 4).

        Retransmission timers (A, E, G) start at T1 and are never set on reliable transports
        (the caller checks :meth:`retransmits`); the wait timers D, I, J, K are zero there.
        """
        t1, t4 = self.t1, self.t4
        if timer in (Timer.A, Timer.E, Timer.G):
            return t1
        if timer in (Timer.B, Timer.F, Timer.H, Timer.L, Timer.M):
            return 64 * t1
        if timer is Timer.D:
            return 0.0 if reliable else max(32.0, 64 * t1)
        if timer is Timer.J:
            return 0.0 if reliable else 64 * t1
        # I and K
        return 0.0 if reliable else t4

    @staticmethod
    def retransmits(timer: Timer, *, reliable: bool) -> bool:
        """Whether ``timer`` runs at all: A, E and G only over unreliable transports."""
        return not (reliable and timer in (Timer.A, Timer.E, Timer.G))


DEFAULT_TIMERS = TimerConfig()
