"""S-WEBHOOK ordering and isolation: per-task order, independent tasks and receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulator.tasks.model import EventKind
from tests.support.webhooks import SCALE, TOLERANCE, Harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.close()


async def test_one_tasks_deliveries_go_out_in_event_order_even_across_retries(h: Harness) -> None:
    # The first delivery fails twice and the second answers slowly: nothing may overtake either.
    receiver = await h.receiver([500, 500, 200, 200], delay=lambda index: 0.1 if index == 3 else 0.0)
    dispatcher = await h.dispatcher()
    task = h.task(receiver.url)
    for progress in (10, 30, 60, 90):
        h.publish(dispatcher, task, progress=progress)
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    assert [r.seq for r in receiver.received] == [1, 1, 1, 2, 3, 4, 5]
    by_index = receiver.received
    assert by_index[3].at - by_index[2].at >= 0  # event 2 only after event 1 was accepted
    assert by_index[4].at - by_index[3].at >= 0.1 - TOLERANCE  # event 3 waited for event 2's slow answer
    assert [r.json()["result"]["progress"] for r in by_index[3:6]] == [30, 60, 90]
    deliveries = h.kinds("webhook_delivery")
    assert [(d.get("event_seq"), d.get("outcome")) for d in deliveries] == [
        (1, "delivered"), (2, "delivered"), (3, "delivered"), (4, "delivered"), (5, "delivered")]


async def test_a_retrying_task_does_not_hold_up_other_tasks(h: Harness) -> None:
    receiver = await h.receiver({"/a": [500, 500, 500]})
    dispatcher = await h.dispatcher()
    slow_task, other = h.task(receiver.url_for("/a")), h.task(receiver.url_for("/b"))
    h.publish(dispatcher, slow_task, progress=10)
    h.publish(dispatcher, slow_task, EventKind.COMPLETED)
    for progress in (20, 40, 80):
        h.publish(dispatcher, other, progress=progress)
    h.publish(dispatcher, other, EventKind.COMPLETED)
    await dispatcher.drain(5)

    paths = [(r.path, r.seq) for r in receiver.received]
    assert [s for p, s in paths if p == "/a"] == [1, 1, 1, 1, 2]
    assert [s for p, s in paths if p == "/b"] == [1, 2, 3, 4]
    last_b = max(r.at for r in receiver.received if r.path == "/b")
    a_retries = [r.at for r in receiver.received if r.path == "/a"][1:]
    assert last_b < a_retries[0]  # all of /b went out before /a's first retry (after 2 s × scale)
    assert a_retries[-1] - a_retries[0] >= (4 + 8) * SCALE - TOLERANCE


async def test_a_slow_receiver_never_delays_a_fast_one(h: Harness) -> None:
    slow = await h.receiver(delay=3.0)
    fast = await h.receiver()
    dispatcher = await h.dispatcher(per_receiver_limit=8)
    slow_tasks = [h.task(slow.url) for _ in range(10)]  # more than the slow origin's 8 slots
    fast_tasks = [h.task(fast.url) for _ in range(5)]
    for task in slow_tasks:
        h.publish(dispatcher, task, progress=50)
    for task in fast_tasks:
        h.publish(dispatcher, task, progress=50)
    for task in slow_tasks + fast_tasks:
        h.publish(dispatcher, task, EventKind.COMPLETED)

    delivered = await h.wait_for(
        lambda: len(fast.received) == 10 and len(h.kinds("webhook_delivery", outcome="delivered")) == 10,
        timeout=2.0)
    assert delivered
    # Everything for the fast receiver is done while the slow one has not answered even once.
    assert slow.completed == 0
    assert {r.task_id for r in fast.received} == {t.task_id for t in fast_tasks}
    await h.wait_for(lambda: slow.in_flight == 8, timeout=1.0)
    assert slow.max_in_flight == 8  # bounded per origin

    await dispatcher.stop()
    cancelled = h.kinds("webhook_delivery", outcome="cancelled")
    assert len(cancelled) == 20  # 10 slow tasks × 2 events, none left behind
    assert dispatcher.pending == 0


async def test_a_slow_path_never_delays_another_path_on_the_same_receiver(h: Harness) -> None:
    receiver = await h.receiver()
    # The request just read is the last one received: slow on /slow, immediate elsewhere.
    receiver.delay = lambda _index: 3.0 if receiver.received[-1].path == "/slow" else 0.0
    dispatcher = await h.dispatcher(per_receiver_limit=8)
    slow_tasks = [h.task(receiver.url_for("/slow")) for _ in range(10)]  # more than its 8 slots
    fast_tasks = [h.task(receiver.url_for("/fast")) for _ in range(5)]
    for task in slow_tasks + fast_tasks:
        h.publish(dispatcher, task, EventKind.COMPLETED)

    delivered = await h.wait_for(
        lambda: len(h.kinds("webhook_delivery", outcome="delivered")) == 5, timeout=2.0)
    assert delivered  # same host and port, other path: not queued behind /slow's full slots
    assert {r.task_id for r in receiver.received if r.path == "/fast"} == {t.task_id for t in fast_tasks}
    assert receiver.max_in_flight >= 8
    await dispatcher.stop()
    assert dispatcher.pending == 0
    assert len(dispatcher._receivers) == 0  # no slot table left for receivers with nothing pending
