"""S-WEBHOOK: body bytes, signature, headers, retries, timeouts and network errors."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from simulator.channels.webhooks import sign
from simulator.tasks.model import EventKind
from tests.support.webhooks import KEY, SCALE, SECRET, TOLERANCE, Harness, closed_port, encode

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.close()


def assert_gaps_at_least(times: list[float], delays: list[float]) -> None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, delay in zip(gaps, delays, strict=False):
        assert gap >= delay * SCALE - TOLERANCE, (gaps, delays)


BODIES: dict[str, Any] = {
    "unicode": {"event_type": "task.completed", "task_id": "t1",
                "result": {"prompt": "café ☕ 日本語 🎨 ñ", "caption": "Zürich – «naïve»"}},
    "escapes": {"text": "quote \" backslash \\ slash / nl \n tab \t nul \u0000 ls \u2028 </script> & '+<>"},
    "nested": {"z": 1, "a": {"deep": [1, 2.5, -0.0, 1e300, {"b": None, "c": [True, False, [], {}]}]},
               "m": [[["x"]]], "é": "key order and non-ASCII keys survive"},
}


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_signature_verifies_over_the_exact_received_bytes(h: Harness, name: str) -> None:
    body = BODIES[name]
    receiver = await h.receiver()
    dispatcher = await h.dispatcher(body_for=lambda task, event: body)
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    [got] = receiver.received
    assert got.body == encode(body)  # serialised once: compact, non-ASCII as UTF-8, key order kept
    assert got.json() == body
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.signature == expected == sign(got.body, SECRET)
    assert HEX64.fullmatch(got.signature)
    [attempt] = h.kinds("webhook_attempt")
    assert attempt.get("signature") == expected
    assert attempt.get("body_bytes") == len(got.body)


async def test_documented_headers_are_sent(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher()
    before = int(time.time())
    task = h.task(receiver.url)
    h.publish(dispatcher, task, progress=10)
    await dispatcher.drain(5)
    after = int(time.time())

    [got] = receiver.received
    assert got.headers.getall("Content-Type") == ["application/json"]
    assert got.headers["User-Agent"] == "Conduit-LLM/1.0"
    assert before <= int(got.headers["X-Webhook-Timestamp"]) <= after
    assert got.headers["X-Webhook-Timestamp"].isdigit()
    assert got.signature == sign(got.body, SECRET)
    assert got.json()["event_type"] == "task.progress"
    [attempt] = h.kinds("webhook_attempt")
    fields = attempt.fields
    assert fields["task_id"] == task.task_id and fields["key"] == KEY
    assert fields["event_type"] == "task.progress" and fields["event_seq"] == 1
    assert fields["url"] == receiver.url and fields["attempt"] == 1 and fields["status"] == 200
    assert fields["error"] is None and fields["fault"] is None and fields["duplicate"] is False
    assert fields["latency_ms"] >= 0
    [delivery] = h.kinds("webhook_delivery")
    outcome = (delivery.get("outcome"), delivery.get("attempts"), delivery.get("event_seq"))
    assert outcome == ("delivered", 1, 1)


async def test_webhook_headers_pass_through_but_cannot_override_content_type_or_signature(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher(user_agent="Conduit-LLM/9.9")
    headers = {
        "Authorization": "Bearer receiver-token", "X-Tenant": "tenant-1",
        "content-type": "text/plain", "X-CONDUIT-SIGNATURE": "forged", "Content-Length": "1",
        "X-Evil": "a\r\nInjected: yes",
    }
    h.publish(dispatcher, h.task(receiver.url, webhook_headers=headers), progress=50)
    await dispatcher.drain(5)

    [got] = receiver.received
    assert got.headers["Authorization"] == "Bearer receiver-token"
    assert got.headers["X-Tenant"] == "tenant-1"
    assert got.headers.getall("Content-Type") == ["application/json"]
    assert got.headers.getall("X-Conduit-Signature") == [sign(got.body, SECRET)]
    assert got.headers["User-Agent"] == "Conduit-LLM/9.9"
    assert "X-Evil" not in got.headers and "Injected" not in got.headers
    [delivery] = h.kinds("webhook_delivery")
    assert set(delivery.get("ignored_headers")) == {"content-type", "X-CONDUIT-SIGNATURE", "Content-Length",
                                                     "X-Evil"}


async def test_without_a_secret_nothing_is_signed(h: Harness) -> None:
    receiver = await h.receiver()
    dispatcher = await h.dispatcher(secret=None)
    h.publish(dispatcher, h.task(receiver.url))
    await dispatcher.drain(5)
    [got] = receiver.received
    assert "X-Conduit-Signature" not in got.headers


async def test_500_500_200_is_three_attempts_of_the_same_bytes_after_2_and_4_s(h: Harness) -> None:
    receiver = await h.receiver([500, 500, 200])
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    assert len(receiver.received) == 3
    assert len({r.body for r in receiver.received}) == 1
    assert len({r.signature for r in receiver.received}) == 1
    assert len({r.headers["X-Webhook-Timestamp"] for r in receiver.received}) == 1
    assert_gaps_at_least([r.at for r in receiver.received], [2, 4])
    attempts = h.kinds("webhook_attempt")
    assert [(a.get("attempt"), a.get("status")) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert_gaps_at_least([a.mono for a in attempts], [2, 4])
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts")) == ("delivered", 3)


async def test_400_is_final(h: Harness) -> None:
    receiver = await h.receiver(default=400)
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(receiver.url))
    await dispatcher.drain(5)
    await asyncio.sleep(2 * SCALE + 0.02)  # a retry, were there one, would have come by now

    assert len(receiver.received) == 1
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts"), delivery.get("status")) == ("rejected", 1, 400)


@pytest.mark.parametrize("status", [500, 503, 408, 429, 404, 401, 302])
async def test_other_non_2xx_is_retried_four_times_then_given_up(h: Harness, status: int) -> None:
    receiver = await h.receiver(default=status)
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(receiver.url))
    await dispatcher.drain(5)

    assert len(receiver.received) == 4
    assert {r.path for r in receiver.received} == {"/hook"}  # a 302 is not followed
    assert_gaps_at_least([r.at for r in receiver.received], [2, 4, 8])
    assert [a.get("status") for a in h.kinds("webhook_attempt")] == [status] * 4
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts")) == ("gave_up", 4)


async def test_network_errors_are_retried(h: Harness) -> None:
    dispatcher = await h.dispatcher()
    url = f"http://127.0.0.1:{closed_port()}/hook"
    h.publish(dispatcher, h.task(url))
    await dispatcher.drain(5)

    attempts = h.kinds("webhook_attempt")
    assert [a.get("attempt") for a in attempts] == [1, 2, 3, 4]
    assert all(a.get("status") is None and a.get("error") for a in attempts)
    assert_gaps_at_least([a.mono for a in attempts], [2, 4, 8])
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts")) == ("gave_up", 4)


async def test_a_receiver_that_hangs_past_the_timeout_is_retried(h: Harness) -> None:
    receiver = await h.receiver(delay=lambda index: 5.0 if index == 0 else 0.0)
    dispatcher = await h.dispatcher(timeout=0.3)
    h.publish(dispatcher, h.task(receiver.url), EventKind.COMPLETED)
    await dispatcher.drain(5)

    first, second = h.kinds("webhook_attempt")
    assert first.get("status") is None and "timeout" in first.get("error")
    assert first.get("latency_ms") >= 300 - 10
    assert (second.get("attempt"), second.get("status"), second.get("error")) == (2, 200, None)
    assert second.mono - first.mono >= 2 * SCALE - TOLERANCE
    assert [r.body for r in receiver.received] == [receiver.received[0].body] * 2
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts")) == ("delivered", 2)


async def test_events_without_a_url_or_a_body_send_nothing_and_use_no_fault(h: Harness) -> None:
    receiver = await h.receiver()
    h.arm("webhook", mode="duplicate")
    silent = await h.dispatcher(body_for=lambda task, event: None)
    h.publish(silent, h.task(receiver.url))
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(None))
    assert dispatcher.pending == silent.pending == 0
    assert not h.kinds("fault_hit")

    h.publish(dispatcher, h.task(receiver.url))  # the fault is still armed for this one
    await dispatcher.drain(5)
    assert [a.get("fault") for a in h.kinds("webhook_attempt")] == ["duplicate", "duplicate"]


async def test_broken_payload_builders_are_recorded_not_raised(h: Harness) -> None:
    receiver = await h.receiver()

    def explode(task: Any, event: Any) -> dict[str, Any]:
        raise RuntimeError("profile bug")

    raising = await h.dispatcher(body_for=explode)
    h.publish(raising, h.task(receiver.url))  # must not raise
    unserialisable = await h.dispatcher(body_for=lambda task, event: {"x": object()})
    h.publish(unserialisable, h.task(receiver.url))
    await asyncio.sleep(0.02)

    assert [(e.get("stage"), "profile bug" in e.get("error")) for e in h.kinds("webhook_error")] == [
        ("body_for", True), ("serialise", False)]
    assert receiver.received == []


@pytest.mark.parametrize("url", ["http://192.0.2.10/hook", "ftp://127.0.0.1/hook", "http:///nohost"])
async def test_urls_outside_the_policy_are_refused_at_delivery_time(h: Harness, url: str) -> None:
    dispatcher = await h.dispatcher()
    h.publish(dispatcher, h.task(url))
    assert dispatcher.pending == 0
    [refused] = h.kinds("webhook_refused")
    assert refused.get("url") == url and refused.get("error")
    assert not h.kinds("webhook_attempt")


async def test_stop_cancels_pending_retries(h: Harness) -> None:
    receiver = await h.receiver(default=500)
    dispatcher = await h.dispatcher(time_scale=1.0)  # the first retry would wait 2 s
    h.publish(dispatcher, h.task(receiver.url))
    await h.wait_for(lambda: h.kinds("webhook_attempt"))
    started = time.monotonic()
    await dispatcher.stop()

    assert time.monotonic() - started < 1.0
    assert dispatcher.pending == 0
    [delivery] = h.kinds("webhook_delivery")
    assert (delivery.get("outcome"), delivery.get("attempts")) == ("cancelled", 1)
    assert len(receiver.received) == 1
