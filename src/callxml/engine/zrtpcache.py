"""The engine's ZRTP cache: our ZID and the peers' retained secrets, kept in the store.

Owns turning the store's plain :class:`~callxml.engine.store.ZrtpPeerRecord` into the
:class:`~callxml.media.zrtp.RetainedSecrets` the ZRTP engine reads, and back, so that a second
call from the same phone is keyed with continuity (RFC 6189 §4.3, §4.6.1) across restarts and
the SAS-verified flag a person set is kept. The store stays ignorant of media; the media layer of
the store.
"""

from __future__ import annotations

import time

from callxml.engine.store import Store, ZrtpPeerRecord
from callxml.media.zrtp import RetainedSecrets


class StoreZrtpCache:
    """A :class:`~callxml.media.zrtp.ZrtpCache` on a :class:`~callxml.engine.store.Store`. Our
    ZID is read once (and made on first use); the calls are synchronous and short, like the
    store's own."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._zid: bytes | None = None

    def zrtp_zid(self) -> bytes:
        if self._zid is None:
            self._zid = self._store.zrtp_zid()
        return self._zid

    def zrtp_secrets(self, peer_zid: bytes) -> RetainedSecrets | None:
        record = self._store.get_zrtp_peer(peer_zid)
        if record is None:
            return None
        return RetainedSecrets(record.rs1, record.rs2, record.verified)

    def save_zrtp_secrets(self, peer_zid: bytes, retained: RetainedSecrets) -> None:
        self._store.put_zrtp_peer(
            ZrtpPeerRecord(peer_zid, retained.rs1, retained.rs2, retained.verified, time.time())
        )

    def set_verified(self, peer_zid: bytes, verified: bool = True) -> bool:
        """Record that a person compared the SAS with this peer (§7.1); False for an unknown
        peer."""
        record = self._store.get_zrtp_peer(peer_zid)
        if record is None:
            return False
        self._store.put_zrtp_peer(
            ZrtpPeerRecord(peer_zid, record.rs1, record.rs2, verified, time.time())
        )
        return True
