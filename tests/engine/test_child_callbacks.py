"""A ``<Dial>`` noun's ``statusCallback``: the engine's CallBook sends the child call's own
status callbacks (through the account's StatusCallbacks queue, so they are signed and retried)
for the events the noun asked for, each once, with ``ParentCallSid``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callxml.engine.calls import CallBook, new_call_record
from callxml.engine.store import CallRecord, SqliteStore
from callxml.runtime.dial import ChildCallback


class Notices:
    """Stands in for StatusCallbacks.notify (delivery is tested in test_callbacks.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, CallRecord]] = []

    def notify(self, target: Any, record: CallRecord) -> bool:
        self.sent.append((target, record))
        return True


async def test_child_status_callbacks(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "calls.db")
    parent = new_call_record(
        account_sid="AC" + "a" * 32, direction="inbound", from_="a", to="b", status="in-progress"
    )
    store.create_call(parent)
    notices = Notices()
    book = CallBook(store, notices, None, parent, lambda sid: sid)  # type: ignore[arg-type]
    callback = ChildCallback(
        "https://app.test/child", "GET", ("initiated", "answered", "completed")
    )
    child = "CA" + "c" * 32
    await book.child_started(child, "sip:bob@x.test", "sip:alice@x.test", callback=callback)
    await book.child_status(child, "ringing")
    await book.child_status(child, "in-progress", start_time=1.0)
    await book.child_status(child, "in-progress", sip_call_id="x")  # no new status: no callback
    await book.child_status(child, "completed", duration=3)
    statuses = [record.status for _, record in notices.sent]
    # notify() itself filters by the events asked for; the book calls it once per change
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    target, record = notices.sent[-1]
    assert target.url == "https://app.test/child" and target.method == "GET"
    assert target.events == ("initiated", "answered", "completed")
    assert record.parent_call_sid == parent.sid and record.duration == 3
    await book.child_started("CA" + "d" * 32, "sip:carol@x.test", "sip:alice@x.test")
    await book.child_status("CA" + "d" * 32, "completed")
    assert len(notices.sent) == 4  # a noun without statusCallback sends none
    store.close()
