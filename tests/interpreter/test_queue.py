"""``<Enqueue>``, ``<Leave>`` and ``<Dial><Queue>`` in the interpreter, on a fake clock: the
action with QueueResult, the wait document's own rules, and a dequeue."""

from __future__ import annotations

from callxml.interpreter import CallSession
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from support.interpreter import BASE, CALL, Harness, params


def test_enqueue_waits_then_posts_its_action_with_the_queue_result() -> None:
    h = Harness(
        {
            BASE: "<Enqueue action='/after' waitUrl='wait' waitUrlMethod='GET' "
            "maxQueueSize='7'>support</Enqueue><Say>never</Say>",
            "https://app.test/after": "<Say>after</Say>",
        }
    ).start()
    (enqueue,) = h.of(act.Enqueue)
    assert enqueue.name == "support" and enqueue.max_queue_size == 7
    assert enqueue.wait_url == "https://app.test/wait" and enqueue.wait_url_method == "GET"
    h.advance(300)
    assert h.spoken() == []  # waiting: nothing after <Enqueue> runs
    h.send(ev.QueueLeft("bridged", "QU1", 42))
    after = params(h.requests[-1])
    assert (after["QueueResult"], after["QueueSid"], after["QueueTime"]) == ("bridged", "QU1", "42")
    assert h.spoken() == ["after"]


def test_a_caller_hanging_up_in_a_queue_still_gets_its_action_posted() -> None:
    h = Harness(
        {BASE: "<Enqueue action='/after'>support</Enqueue>", "https://app.test/after": "<Say/>"}
    ).start()
    h.send(ev.CallerHungUp())
    assert h.of(act.LeaveQueue)
    h.send(ev.QueueLeft("hangup", "QU1", 3))
    last = h.of(act.Fetch)[-1]
    assert last.final and params(last.request)["QueueResult"] == "hangup"


def test_enqueue_without_action_runs_the_next_verb_and_task_router_is_warned_about() -> None:
    h = Harness(
        {BASE: "<Enqueue workflowSid='WW1'>support</Enqueue><Say>next</Say>"},
        auto_playback=True,
    ).start()
    assert any("TaskRouter" in a.message for a in h.of(act.Log))
    h.send(ev.QueueLeft("leave"))
    assert h.spoken() == ["next"]


def test_leave_outside_a_queue_is_skipped_with_a_warning() -> None:
    h = Harness({BASE: "<Leave/><Say>still here</Say>"}).start()
    assert any("not waiting in a queue" in a.message for a in h.of(act.Log))
    assert h.spoken() == ["still here"]


def wait_session(body: str) -> tuple[CallSession, Harness]:
    h = Harness({BASE: body})
    h.session = CallSession(url=BASE, call=CALL, answered=True, waiting=True)
    h.start()
    return h.session, h


def test_a_wait_document_leaves_returns_and_keeps_to_its_verbs() -> None:
    session, h = wait_session("<Leave/><Say>never</Say>")
    assert session.finished and session.left and not h.of(act.Hangup)
    session, h = wait_session("<Say>hold on</Say>")
    h.finish_playback()
    assert session.finished and session.returned and not session.left
    assert not h.of(act.Hangup)  # the end of a wait document does not hang up: it loops
    session, h = wait_session("<Record/><Say>ok</Say>")
    assert any("not run in a queue's wait document" in a.message for a in h.of(act.Log))
    assert h.spoken() == ["ok"] and not h.of(act.StartRecording)


def test_a_failing_wait_document_takes_the_caller_out_without_hanging_up() -> None:
    session, h = wait_session("<Redirect>/missing</Redirect>")
    assert session.finished and session.error is not None and not h.of(act.Hangup)


def test_dial_queue_dequeues_with_its_url_resolved() -> None:
    h = Harness(
        {BASE: "<Dial timeout='12' hangupOnStar='true'><Queue url='hello'>support</Queue></Dial>"}
    ).start()
    (dequeue,) = h.of(act.Dequeue)
    assert dequeue.queue.name == "support" and dequeue.queue.url == "https://app.test/hello"
    assert dequeue.timeout == 12 and dequeue.hangup_on_star
    assert not h.of(act.StartDial)
