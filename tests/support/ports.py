"""Free ports on 127.0.0.1, chosen by the OS, for the servers and peers a test starts.

One place so that every test asks the same way: a port the OS just handed out for the transport
the server will bind, or, for a server that binds both UDP and TCP on one port (the engine's SIP
listeners, baresip), a port free for both. There is always a window between asking and binding;
the port is taken right after, and the OS does not hand the same ephemeral port out again soon.
"""

from __future__ import annotations

import socket
from typing import Literal

Transport = Literal["udp", "tcp"]

__all__ = ["Transport", "free_media_port", "free_port", "is_free"]


def _kind(transport: Transport) -> socket.SocketKind:
    return socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM


def is_free(port: int, transport: Transport) -> bool:
    """Can ``port`` be bound on 127.0.0.1 for ``transport`` right now?"""
    with socket.socket(socket.AF_INET, _kind(transport)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(transport: Literal["udp", "tcp", "both"] = "tcp") -> int:
    """A port free on 127.0.0.1 right now for ``"udp"``, ``"tcp"``, or ``"both"`` (the same
    number free for UDP and for TCP: what a server listening on both with one port needs)."""
    first: Transport = "udp" if transport == "udp" else "tcp"
    for _ in range(50):
        with socket.socket(socket.AF_INET, _kind(first)) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if transport != "both" or is_free(port, "udp"):
            return port
    raise RuntimeError(f"no port free for {transport} on 127.0.0.1")


def free_media_port(host: str = "127.0.0.1") -> int:
    """A port for SIPp's ``-mp``: SIPp binds it and the next three (audio and video, RTP and
    RTCP), so all four must be free."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        if base % 2 or base > 65531:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no four UDP ports free in a row on {host}")
