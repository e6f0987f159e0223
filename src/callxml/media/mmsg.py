"""Batched UDP socket I/O on Linux: recvmmsg(2) and sendmmsg(2) through cffi.

asyncio's datagram transports (uvloop's libuv too) read a UDP socket with one recvmsg per
datagram and keep reading until EAGAIN, so at call rates (50 packets/s, one per wakeup) every
packet costs two receive system calls and the callback gets a fresh bytes object and address
tuple. recvmmsg(2) reads everything queued, up to :data:`BATCH` datagrams, in one call, into
preallocated slots where SRTP can be unprotected and re-protected in place; the packets bound for
another socket then leave in one sendmmsg(2). Nothing waits to fill a batch: each wakeup handles
what the kernel already holds, so latency is that of the per-packet path.

Owns the libc binding (cffi in ABI mode, pylibsrtp's own dependency: nothing to compile), its
one-time self-test (:func:`mmsg_api`; ``None`` where it is missing or fails), the per-thread
receive slots (:class:`Batch`), the socket that sends from them (:class:`BatchedSocket`) and the
struct sockaddr conversions both need. It knows sockets and buffers only: what a datagram is,
and what to do with it, is the endpoint's (:mod:`callxml.media.stream`); the slot size is
the SRTP layer's in-place buffer, so a packet can grow by its tag where it lies.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from callxml.errors import MediaError
from callxml.media.poller import MediaPoller, media_poller
from callxml.media.srtp import IN_PLACE_BUFFER_OCTETS, MAX_PACKET_OCTETS

__all__ = [
    "BATCH",
    "NAME_OCTETS",
    "ROUNDS",
    "SINGLE_READS",
    "SLOT",
    "Address",
    "Batch",
    "BatchedSocket",
    "MmsgApi",
    "build_sockaddr",
    "mmsg_api",
    "parse_sockaddr",
    "self_test",
    "source_key",
    "thread_batch",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]

BATCH = 32  # datagrams per recvmmsg: libuv's own per-wakeup read limit
ROUNDS = 4  # full batches per wakeup before yielding to the other sockets
SINGLE_READS = 15  # wakeups read with one recvfrom after a recvmmsg found at most one datagram
SLOT = IN_PLACE_BUFFER_OCTETS  # room for a maximal packet re-protected in place
NAME_OCTETS = 128  # sizeof(struct sockaddr_storage)
_MSG_DONTWAIT = 0x40  # Linux <bits/socket.h>
_MMSG_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr { void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov;
                size_t msg_iovlen; void *msg_control; size_t msg_controllen; int msg_flags; };
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int recvmmsg(int, struct mmsghdr *, unsigned int, int, void *);
int sendmmsg(int, struct mmsghdr *, unsigned int, int);
"""


class MmsgApi:
    """The cffi handle on libc's recvmmsg/sendmmsg (ABI mode: nothing to compile)."""

    def __init__(self) -> None:
        cffi: Any = importlib.import_module("cffi")  # pylibsrtp's dependency; loaded on use
        self.ffi: Any = cffi.FFI()
        self.ffi.cdef(_MMSG_CDEF)
        self.libc: Any = self.ffi.dlopen(None)
        # The hot loop reads and writes header fields through memoryviews (far cheaper per item
        # than cffi attribute access); they assume this layout, checked here.
        ffi = self.ffi
        word = ffi.sizeof("size_t")
        if (
            ffi.sizeof("void *") != word
            or ffi.sizeof("struct iovec") != 2 * word
            or ffi.offsetof("struct iovec", "iov_len") != word
            or ffi.sizeof("struct mmsghdr") % 4
            or ffi.offsetof("struct mmsghdr", "msg_len") % 4
        ):
            raise MediaError("unexpected struct iovec/mmsghdr layout")


class Batch:
    """One thread's receive buffers: BATCH slots of SLOT octets, their source-address areas
    and recvmmsg headers.

    Shared by every endpoint read on this thread: a batch is filled and fully handled (relayed
    packets leave from the slots) inside one synchronous reader callback, so two endpoints never
    hold it at once.
    """

    def __init__(self, api: MmsgApi) -> None:
        ffi = api.ffi
        self.api = api
        self._recvmmsg, self._null = api.libc.recvmmsg, ffi.NULL
        self.data = ffi.new("char[]", BATCH * SLOT)
        self.names = ffi.new("char[]", BATCH * NAME_OCTETS)
        self.rx_iov = ffi.new("struct iovec[]", BATCH)
        self.rx = ffi.new("struct mmsghdr[]", BATCH)
        self.slots = [self.data + i * SLOT for i in range(BATCH)]
        self.name_views = [
            ffi.buffer(self.names + i * NAME_OCTETS, NAME_OCTETS) for i in range(BATCH)
        ]
        self.headers = [self.rx + i for i in range(BATCH)]
        # Per-batch views for the relay loop: ``view[0:count].tolist()`` reads one field of
        # every header in a single C call instead of one cffi access per packet.
        rx_words = memoryview(ffi.buffer(self.rx)).cast("I")
        step = ffi.sizeof("struct mmsghdr") // 4
        self.sizes = rx_words[ffi.offsetof("struct mmsghdr", "msg_len") // 4 :: step]
        # Each slot as octets, to classify a datagram where it lies (no copy, no allocation).
        octets = memoryview(ffi.buffer(self.data))
        self.slot_views = [octets[i * SLOT : (i + 1) * SLOT] for i in range(BATCH)]
        # The first 8 octets of each source sockaddr_in: family, port and IPv4 address.
        self.source_words = memoryview(ffi.buffer(self.names)).cast("Q")[0 :: NAME_OCTETS // 8]
        for i in range(BATCH):
            iov = self.rx_iov[i]
            iov.iov_base = self.slots[i]
            iov.iov_len = MAX_PACKET_OCTETS + 1  # one more: a longer datagram shows as too long
            header = self.rx[i].msg_hdr
            header.msg_iov = self.rx_iov + i
            header.msg_iovlen = 1
            header.msg_name = self.names + i * NAME_OCTETS
        self._family = -1  # the kernel set msg_namelen to this family's sockaddr size

    def receive(self, fd: int, family: int) -> int:
        """recvmmsg without blocking: the number of datagrams now in the slots (0: none)."""
        if family != self._family:  # the kernel shrinks msg_namelen to what it wrote
            for i in range(BATCH):
                self.rx[i].msg_hdr.msg_namelen = NAME_OCTETS
            self._family = family
        count: int = self._recvmmsg(fd, self.rx, BATCH, _MSG_DONTWAIT, self._null)
        if count < 0:
            error = self.api.ffi.errno
            if error not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                log.debug("RTP recvmmsg failed: %s", os.strerror(error))
            return 0
        return count

    def datagram(self, index: int, size: int) -> tuple[bytes, Address]:
        """Copy datagram ``index`` out of its slot, with its source address."""
        data: bytes = self.api.ffi.buffer(self.slots[index], size)[:]
        return data, parse_sockaddr(self.name_views[index][0:NAME_OCTETS])


def parse_sockaddr(raw: bytes) -> Address:
    """A (host, port) from a struct sockaddr_in/_in6 as the kernel wrote it."""
    family = int.from_bytes(raw[0:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return socket.inet_ntop(socket.AF_INET, raw[4:8]), port


def source_key(raw: bytes | None) -> int | bytes | None:
    """What the relay loop compares a datagram's source with: for a sockaddr_in, its first 8
    octets (family, port, address) as one native integer, as :attr:`Batch.source_words` reads
    them; any other sockaddr as it is."""
    if raw is not None and len(raw) == 16:
        return int.from_bytes(raw[0:8], sys.byteorder)
    return raw


def build_sockaddr(address: Address, family: int) -> bytes | None:
    """The struct sockaddr for a numeric (host, port) on a ``family`` socket, else ``None``."""
    host, port = address[0], address[1]
    if not 0 <= port <= 65535:
        return None
    head = family.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big")
    try:
        if family == socket.AF_INET6:
            return head + bytes(4) + socket.inet_pton(family, host) + bytes(4)
        return head + socket.inet_pton(family, host) + bytes(8)
    except (OSError, ValueError, TypeError):
        return None


_api: MmsgApi | None = None
_api_checked = False
_local = threading.local()


def mmsg_api() -> MmsgApi | None:
    """The recvmmsg/sendmmsg binding, loaded and self-tested on first use; ``None`` when this
    platform lacks it (then endpoints use the asyncio datagram transport). Once per process:
    the answer cannot change while it runs."""
    global _api, _api_checked
    if not _api_checked:
        _api_checked = True
        if sys.platform.startswith("linux"):
            try:
                api = MmsgApi()
                if self_test(api):
                    _api = api
            except Exception as exc:  # no cffi, no libc symbol, odd ABI: the portable path
                log.debug("batched RTP I/O unavailable: %s", exc)
    return _api


def self_test(api: MmsgApi) -> bool:
    """Send two datagrams to ourselves with sendmmsg and read them back with recvmmsg."""
    batch = Batch(api)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    io = BatchedSocket(sock, batch)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        address = sock.getsockname()
        io.set_peer(address)
        for i, text in enumerate((b"callxml", b"batch")):
            batch.slots[i][0 : len(text)] = text
            io.tx_sizes[i] = len(text)
        if io.send_prepared(2) != 2 or batch.receive(io.fd, io.family) != 2:
            return False
        sizes = batch.sizes[0:2].tolist()
        if sizes != [batch.headers[i].msg_len for i in range(2)]:
            return False
        return [batch.datagram(i, sizes[i]) for i in range(2)] == [
            (b"callxml", address),
            (b"batch", address),
        ]
    finally:
        io.close()


def thread_batch(api: MmsgApi) -> Batch:
    """This thread's :class:`Batch`, made on first use: one set of slots serves every socket
    that this thread's event loop reads (see :class:`Batch`)."""
    batch: Batch | None = getattr(_local, "batch", None)
    if batch is None:
        batch = _local.batch = Batch(api)
    return batch


class BatchedSocket:
    """The RTP socket read with recvmmsg from a loop reader (:meth:`start`). Relayed packets
    leave from the batch's slots through this socket's own sendmmsg headers, which hold the peer
    address (:meth:`set_peer`); other packets go out one sendto each."""

    def __init__(self, sock: socket.socket, batch: Batch) -> None:
        ffi = batch.api.ffi
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.name_size = 28 if sock.family == socket.AF_INET6 else 16  # sockaddr_in6 / _in
        self.batch = batch  # this thread's: the loop that reads the socket runs here
        self._sendmmsg = batch.api.libc.sendmmsg
        self.tx_iov = ffi.new("struct iovec[]", BATCH)
        self.tx = ffi.new("struct mmsghdr[]", BATCH)
        self.tx_iovs = [self.tx_iov + i for i in range(BATCH)]
        self.tx_sizes = memoryview(ffi.buffer(self.tx_iov)).cast("P")[
            1::2
        ]  # iov_len (size_t: as wide as a pointer)
        for i in range(BATCH):
            self.tx_iov[i].iov_base = batch.slots[i]
            self.tx[i].msg_hdr.msg_iov = self.tx_iov + i
            self.tx[i].msg_hdr.msg_iovlen = 1
        self.peer_raw: bytes | None = None  # the peer as a struct sockaddr, when numeric
        self._peer_name: Any = None
        self._poller: MediaPoller | None = None
        self._closing = False
        self.single_reads = 0  # see RtpEndpoint._readable

    def start(self, loop: asyncio.AbstractEventLoop, readable: Callable[[], None]) -> None:
        """Call ``readable`` when the socket has datagrams: from the loop's media poller, one
        reader for every batched socket of the loop (see :mod:`callxml.media.poller`).
        NotImplementedError on loops without readers."""
        poller = media_poller(loop)
        poller.add(self.fd, readable)
        self._poller = poller

    def set_peer(self, address: Address | None) -> None:
        """Point the sendmmsg headers at ``address`` (``None`` or a host name: they cannot)."""
        raw = build_sockaddr(address, self.family) if address is not None else None
        self.peer_raw = raw
        if raw is not None:
            name = self._peer_name = self.batch.api.ffi.new("char[]", raw)
            for i in range(BATCH):
                header = self.tx[i].msg_hdr
                header.msg_name = name
                header.msg_namelen = len(raw)

    def send_prepared(self, count: int) -> int:
        """sendmmsg the first ``count`` send slots to the peer; how many went (0 on error)."""
        sent: int = self._sendmmsg(self.fd, self.tx, count, 0)
        if sent < 0:
            log.debug("RTP sendmmsg failed: %s", os.strerror(self.batch.api.ffi.errno))
            return 0
        return sent

    def sendto(self, data: bytes | memoryview, addr: Address) -> None:
        if self._closing:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # full send buffer (dropped, as the network would) or ICMP
            log.debug("RTP send on %s failed: %s", self.local_name(), exc)

    def local_name(self) -> object:
        try:
            return self.sock.getsockname()
        except OSError:
            return "?"

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            if self._poller is not None:
                self._poller.remove(self.fd)
            self.sock.close()
