"""The client's negotiate machine (redirects, tokens, URLs) and the reconnect schedule."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit_core.signalr import negotiate
from conduit_core.signalr.errors import LocalProtocolError, NegotiateError
from conduit_core.signalr.negotiate_client import (
    MAX_REDIRECTS,
    Negotiation,
    connection_url,
    negotiate_url,
)
from conduit_core.signalr.retry import (
    DelayListPolicy,
    ExponentialBackoffPolicy,
    RetryContext,
    RetrySchedule,
    as_retry_policy,
)

HUB = "http://127.0.0.1:8080/hubs/image"


def connection_body(version: int = 1) -> bytes:
    body = negotiate.build_response(version, "cid", "tok" if version else None)
    return json.dumps(body).encode()


def redirect_body(n: int, token: str | None = None) -> bytes:
    body: dict[str, str] = {"url": f"http://127.0.0.1:8080/hop{n}"}
    if token:
        body["accessToken"] = token
    return json.dumps(body).encode()


def test_urls() -> None:
    assert negotiate_url(HUB) == HUB + "/negotiate?negotiateVersion=1"
    assert negotiate_url(HUB + "/?a=1") == HUB + "/negotiate?a=1&negotiateVersion=1"
    assert negotiate_url(HUB + "?negotiateVersion=0") == HUB + "/negotiate?negotiateVersion=0"
    v1 = negotiate.parse_response(json.loads(connection_body(1)))
    v0 = negotiate.parse_response(json.loads(connection_body(0)))
    assert connection_url(HUB, v1) == HUB + "?id=tok"
    assert connection_url(HUB + "?a=1", v0, websocket=True) == "ws://127.0.0.1:8080/hubs/image?a=1&id=cid"
    assert connection_url("https://h/x", v1, websocket=True) == "wss://h/x?id=tok"


@given(hops=st.integers(0, 130), limit=st.sampled_from([1, 3, 10, MAX_REDIRECTS]))
def test_redirects_are_followed_up_to_the_one_limit(hops: int, limit: int) -> None:
    negotiation = Negotiation(HUB, "key", max_requests=limit)
    outcome: object = None
    for n in range(hops):
        request = negotiation.request()
        assert request.headers == {"Authorization": f"Bearer {'key' if n == 0 else f'tok{n - 1}'}"}
        try:
            outcome = negotiation.receive_response(200, redirect_body(n, f"tok{n}"))
        except NegotiateError as exc:
            assert str(exc) == "Negotiate redirection limit exceeded."
            assert n + 1 == limit  # the limit-th answer was one more redirect
            return
        assert outcome is None
        assert negotiation.hub_url == f"http://127.0.0.1:8080/hop{n}"
    assert hops < limit
    result = negotiation.receive_response(200, connection_body())
    assert result is not None and result.connection_token == "tok"
    assert negotiation.requests == hops + 1
    assert negotiation.connection_url(websocket=True).endswith("?id=tok")
    with pytest.raises(LocalProtocolError):
        negotiation.request()


def test_the_limit_is_the_ts_clients() -> None:
    assert MAX_REDIRECTS == 100
    assert Negotiation(HUB).max_requests == MAX_REDIRECTS


@pytest.mark.parametrize(
    ("status", "body", "fragment"),
    [
        (401, b"no key", "HTTP 401: no key"),
        (200, b"<html>", "not JSON"),
        (200, b'{"error":"Negotiate failed"}', "Negotiate failed"),
        (200, b"[]", "JSON object"),
    ],
)
def test_one_error_type_for_every_negotiate_failure(status: int, body: bytes, fragment: str) -> None:
    with pytest.raises(NegotiateError, match=fragment) as caught:
        Negotiation(HUB).receive_response(status, body)
    assert caught.value.status == (status if status != 200 else None)


def test_negotiate_error_is_one_class() -> None:
    assert negotiate.NegotiateError is NegotiateError


# -- retry schedule -------------------------------------------------------------------------------
@given(st.lists(st.floats(0, 60), max_size=6), st.integers(0, 8))
def test_a_delay_list_gives_each_delay_once_then_gives_up(delays: list[float], failures: int) -> None:
    schedule = RetrySchedule(DelayListPolicy(delays), started=0.0, reason="lost")
    handed: list[float] = []
    delay = schedule.next_delay(0.0)
    while delay is not None:
        handed.append(delay)
        if len(handed) > failures:
            break  # this attempt succeeds
        delay = schedule.next_delay(1.0, f"attempt {len(handed)} failed")
    assert handed == delays[: failures + 1]
    assert schedule.attempts == len(handed)
    assert schedule.exhausted == (len(delays) <= failures)


def test_schedule_tells_the_policy_what_happened() -> None:
    seen = []

    def policy(context: RetryContext) -> float | None:
        seen.append((context.previous_retry_count, context.elapsed, context.retry_reason))
        return None if context.previous_retry_count >= 2 else -1.0

    schedule = RetrySchedule(as_retry_policy(policy), started=10.0, reason="lost")
    assert schedule.next_delay(10.5) == 0.0  # a negative delay is no wait
    assert schedule.next_delay(12.0, "refused") == 0.0
    assert schedule.next_delay(13.0, "refused again") is None
    assert seen == [(0, 0.5, "lost"), (1, 2.0, "refused"), (2, 3.0, "refused again")]
    assert schedule.last_error == "refused again"


def test_no_policy_and_a_broken_policy_both_give_up() -> None:
    assert RetrySchedule(None, 0.0, "lost").next_delay(0.0) is None

    class Broken:
        def next_retry_delay(self, context: object) -> float | None:
            raise ValueError("bug")

    assert RetrySchedule(Broken(), 0.0, "lost").next_delay(0.0) is None


def test_exponential_backoff_is_capped_and_bounded() -> None:
    schedule = RetrySchedule(ExponentialBackoffPolicy(1, 5, max_attempts=5), 0.0, None)
    delays = []
    while (delay := schedule.next_delay(0.0, "x")) is not None:
        delays.append(delay)
    assert delays == [1, 2, 4, 5, 5]
