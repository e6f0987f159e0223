"""The media poller: every batched RTP socket of a loop behind one loop reader.

What must hold whatever the load: every datagram is handed to its socket's callback, in both
modes (readiness when quiet, ticking when wakeups come close together), a removed socket is never
called again, and the poller gives the loop its reader back (or closes) when it is done.
Nothing here asserts on time: the mode switch is driven by making :data:`HOLD` long enough that
two bursts always fall inside it.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator

import pytest

from callxml.media import poller as poller_module
from callxml.media.poller import MediaPoller, media_poller
from support.waiting import until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll")


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made = []
    for _ in range(4):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        made.append(sock)
    yield made
    for sock in made:
        sock.close()


def _reader(sock: socket.socket, seen: list[tuple[int, bytes]], index: int) -> None:
    """Read one datagram per call, like the endpoint's single reads: the rest must come back
    at the next look because the set is level-triggered."""
    try:
        data = sock.recv(2048)
    except BlockingIOError:
        return
    seen.append((index, data))


async def test_every_datagram_reaches_its_socket_and_the_poller_goes_idle(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller_module, "HOLD", 0.05)
    loop = asyncio.get_running_loop()
    poller = media_poller(loop)
    assert media_poller(loop) is poller  # one per loop
    seen: list[tuple[int, bytes]] = []
    for index, sock in enumerate(sockets):
        poller.add(sock.fileno(), lambda s=sock, i=index: _reader(s, seen, i))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        expected = []
        for burst in range(3):  # close bursts: readiness, then ticking
            for index, sock in enumerate(sockets):
                for n in range(3):  # several per socket, read one per callback
                    payload = bytes([burst, index, n])
                    sender.sendto(payload, sock.getsockname())
                    expected.append((index, payload))
            await asyncio.sleep(0.001)
        await until(lambda: len(seen) == len(expected), what="every datagram")
        assert sorted(seen) == sorted(expected)
        for index in range(len(sockets)):  # per socket, in the order sent
            ours = [data for i, data in seen if i == index]
            assert ours == sorted(ours)
        # quiet again: back to waiting on the loop for readiness, not ticking
        await until(lambda: poller._reading and poller._timer is None, what="readiness mode")
        assert poller.wakeups >= 2
    finally:
        sender.close()
        for sock in sockets:
            poller.remove(sock.fileno())
    assert poller.closed  # the last socket closed it, and the loop's reader with it
    assert media_poller(loop) is not poller


async def test_a_socket_removed_by_an_earlier_callback_is_not_called(
    sockets: list[socket.socket],
) -> None:
    """Both ready in one pass, each callback removes the other: whichever runs first, the
    other must not run after its removal (a closed leg's reader must never run)."""
    loop = asyncio.get_running_loop()
    poller = MediaPoller(loop)
    first, second = sockets[0], sockets[1]
    called: list[int] = []

    def callback(mine: socket.socket, other: socket.socket, index: int) -> None:
        mine.recv(2048)
        called.append(index)
        poller.remove(other.fileno())

    poller.add(first.fileno(), lambda: callback(first, second, 0))
    poller.add(second.fileno(), lambda: callback(second, first, 1))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"x", first.getsockname())
        sender.sendto(b"y", second.getsockname())
        # loopback delivers at once; no await, so the loop has not run the poller yet
        assert poller.dispatch() == 2
        assert len(called) == 1
        assert list(poller._callbacks) == [(first, second)[called[0]].fileno()]
    finally:
        sender.close()
        poller.close()


async def test_a_failing_callback_is_reported_and_the_others_still_run(
    sockets: list[socket.socket],
) -> None:
    loop = asyncio.get_running_loop()
    poller = MediaPoller(loop)
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    seen: list[tuple[int, bytes]] = []

    def broken() -> None:
        sockets[0].recv(2048)
        raise RuntimeError("boom")

    poller.add(sockets[0].fileno(), broken)
    poller.add(sockets[1].fileno(), lambda: _reader(sockets[1], seen, 1))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"a", sockets[0].getsockname())
        sender.sendto(b"b", sockets[1].getsockname())
        await until(lambda: seen and reported, what="both callbacks")
        assert seen == [(1, b"b")]
        assert isinstance(reported[0]["exception"], RuntimeError)
    finally:
        loop.set_exception_handler(None)
        sender.close()
        poller.close()
