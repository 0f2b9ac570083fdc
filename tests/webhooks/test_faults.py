"""S-FAULT for webhooks: every corruption and timing fault happens on the wire and on the timeline."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest

from simulator.channels.webhooks import sign
from simulator.faults import EventFate, FaultController, WebhookFault
from simulator.tasks.model import EventKind, TaskEvent
from tests.support.webhooks import SCALE, SECRET, TOLERANCE, Harness, body_of, encode

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.close()


def assert_hit(h: Harness, mode: str) -> None:
    hits = h.kinds("fault_hit", fault="webhook", mode=mode)
    assert len(hits) == 1, h.kinds("fault_hit")


async def test_bad_signature(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="bad_signature")
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)
    h.publish(dispatcher, task, EventKind.COMPLETED)  # count=1: only the first is corrupted
    await dispatcher.drain(5)

    bad, good = receiver.received
    assert HEX64.fullmatch(bad.signature) and bad.signature != sign(bad.body, SECRET)
    assert good.signature == sign(good.body, SECRET)
    attempts = h.kinds("webhook_attempt")
    assert [a.get("fault") for a in attempts] == ["bad_signature", None]
    assert attempts[0].get("signature") == bad.signature
    assert_hit(h, "bad_signature")


async def test_bad_signature_is_the_same_on_every_retry(h: Harness) -> None:
    receiver = await h.receiver([401, 401, 200])
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="bad_signature")
    h.publish(dispatcher, h.task(receiver.url))
    await dispatcher.drain(5)
    assert len({(r.body, r.signature) for r in receiver.received}) == 1
    assert len(receiver.received) == 3


async def test_wrong_secret(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="wrong_secret")
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    [got] = receiver.received
    assert dispatcher.wrong_secret != SECRET
    assert got.signature == sign(got.body, dispatcher.wrong_secret) != sign(got.body, SECRET)
    assert h.kinds("webhook_attempt")[0].get("fault") == "wrong_secret"
    assert_hit(h, "wrong_secret")


async def test_truncated_body_keeps_the_full_bodys_signature(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="truncated_body")
    task = h.task(receiver.url)
    event = h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    full = encode(body_of(task, event))
    [got] = receiver.received
    assert got.body == full[: len(full) // 2]
    assert got.signature == sign(full, SECRET) != sign(got.body, SECRET)
    [attempt] = h.kinds("webhook_attempt")
    assert (attempt.get("fault"), attempt.get("body_bytes")) == ("truncated_body", len(full) // 2)
    assert_hit(h, "truncated_body")


async def test_duplicate_sends_the_same_bytes_and_signature_twice(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="duplicate")
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, second = receiver.received
    assert (first.body, first.signature) == (second.body, second.signature)
    assert first.signature == sign(first.body, SECRET)
    assert first.headers["X-Webhook-Timestamp"] == second.headers["X-Webhook-Timestamp"]
    attempts = h.kinds("webhook_attempt")
    assert [(a.get("duplicate"), a.get("fault")) for a in attempts] == [
        (False, "duplicate"), (True, "duplicate")]
    deliveries = h.kinds("webhook_delivery")
    assert [(d.get("duplicate"), d.get("outcome")) for d in deliveries] == [
        (False, "delivered"), (True, "delivered")]
    assert_hit(h, "duplicate")


async def test_out_of_order_goes_right_after_the_tasks_next_delivery(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="out_of_order")
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=25)
    h.publish(dispatcher, task, progress=75)
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    assert [r.seq for r in receiver.received] == [2, 1, 3]
    assert [a.get("fault") for a in h.kinds("webhook_attempt")] == [None, "out_of_order", None]
    [held] = h.kinds("webhook_held")
    [released] = h.kinds("webhook_released")
    assert (held.get("event_seq"), released.get("event_seq")) == (1, 1)
    assert (released.get("reason"), released.get("after_event_seq")) == ("next_delivery", 2)
    assert_hit(h, "out_of_order")


async def test_out_of_order_without_a_next_delivery_goes_after_the_delay(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="out_of_order", delay=20)  # 20 s × SCALE = 0.2 s
    started = time.monotonic()
    h.publish(dispatcher, h.task(receiver.url), EventKind.FAILED)
    await dispatcher.drain(5)

    [got] = receiver.received
    assert got.at - started >= 20 * SCALE - TOLERANCE
    [released] = h.kinds("webhook_released")
    assert released.get("reason") == "timeout"


async def test_slow_waits_before_sending_without_holding_up_other_tasks(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="slow", delay=20)  # 0.2 s
    started = time.monotonic()
    slowed, other = h.task(receiver.url), h.task(receiver.url)
    h.publish(dispatcher, slowed, EventKind.COMPLETED)
    h.publish(dispatcher, other, EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, second = receiver.received
    assert first.task_id == other.task_id
    assert second.task_id == slowed.task_id and second.at - started >= 20 * SCALE - TOLERANCE
    slow_attempt = h.kinds("webhook_attempt", task_id=slowed.task_id)[0]
    assert slow_attempt.get("fault") == "slow"
    assert_hit(h, "slow")


async def test_drop_event_on_the_webhook_channel(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("drop_event", nth=2, channel="webhook")
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)
    h.publish(dispatcher, task, progress=50)
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    assert [r.seq for r in receiver.received] == [1, 3]
    [dropped] = h.kinds("event_dropped")
    assert (dropped.get("channel"), dropped.get("task_id")) == ("webhook", task.task_id)
    assert dropped.get("event_seq") == 2
    assert h.kinds("fault_hit", fault="drop_event", channel="webhook")
    assert not h.kinds("webhook_attempt", event_seq=2)


async def test_delay_event_on_the_webhook_channel_keeps_the_tasks_order(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("delay_event", nth=1, channel="webhook", delay=20)  # 0.2 s
    started = time.monotonic()
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, second = receiver.received
    assert (first.seq, second.seq) == (1, 2)
    assert first.at - started >= 20 * SCALE - TOLERANCE
    [delayed] = h.kinds("event_delayed")
    assert (delayed.get("channel"), delayed.get("event_seq"), delayed.get("delay_s")) == (
        "webhook", 1, 20 * SCALE)


async def test_event_faults_for_signalr_leave_webhooks_alone(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    h.arm("drop_event", nth=1)  # channel defaults to "signalr"
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)
    assert len(receiver.received) == 1
    assert not h.kinds("event_dropped")


async def test_a_webhook_fault_hits_the_nth_delivery_and_counts_deliveries_not_retries(h: Harness) -> None:
    receiver = await h.receiver([500, 200])
    dispatcher = await h.dispatcher()
    h.arm("webhook", mode="bad_signature", nth=2)
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)  # retried once: still one delivery
    h.publish(dispatcher, task, EventKind.COMPLETED)
    await dispatcher.drain(5)

    attempts = h.kinds("webhook_attempt")
    assert [(a.get("event_seq"), a.get("attempt"), a.get("fault")) for a in attempts] == [
        (1, 1, None), (1, 2, None), (2, 1, "bad_signature")]


class BrokenFaults(FaultController):
    """A fault controller whose questions raise, as a bad fault spec can make them."""

    def event_fate(self, channel: str, event: TaskEvent) -> EventFate:
        raise KeyError("delay")

    def webhook_fault(self) -> WebhookFault | None:
        raise TypeError("float() argument must be a string or a real number, not 'NoneType'")


async def test_a_broken_fault_controller_costs_no_delivery(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher(faults=BrokenFaults(recorder=h.recorder))
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)  # must not raise
    await dispatcher.drain(5)

    [got] = receiver.received
    assert got.signature == sign(got.body, SECRET)
    assert [e.get("stage") for e in h.kinds("webhook_error")] == ["event_fate", "webhook_fault"]
    assert [d.get("outcome") for d in h.kinds("webhook_delivery")] == ["delivered"]
