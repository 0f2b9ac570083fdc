"""S-AUTH realtime tokens: ``GET /api/auth/realtime-token`` (and the real ephemeral-key route)
issue short-lived tokens that the hubs accept in place of the key, and only the hubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from simulator.auth import REALTIME_TOKEN_TTL
from simulator.background import BackgroundSimulator
from tests.support.rest import FAST, Http, open_http
from tests.support.simulator import TEST_KEY

NEGOTIATE = "/hubs/image-generation/negotiate?negotiateVersion=1"


@pytest.fixture
def fast(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(scenario=FAST, seed=7)


@pytest.fixture
async def http(fast: BackgroundSimulator) -> AsyncIterator[Http]:
    async with open_http(fast.url) as client:
        yield client


async def test_realtime_token_is_a_hub_credential(fast: BackgroundSimulator, http: Http) -> None:
    reply = await http("GET", "/api/auth/realtime-token")
    assert reply.status == 200
    body = reply.json()
    assert set(body) == {"token", "expires_at"}
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert (expires - datetime.now(UTC)).total_seconds() == pytest.approx(REALTIME_TOKEN_TTL, abs=5)
    token = body["token"]

    # As the SignalR clients send it: access_token in the query (browsers), or Bearer.
    by_query = await http("POST", f"{NEGOTIATE}&access_token={token}", key=None)
    assert by_query.status == 200 and by_query.json()["connectionToken"]
    assert (await http("POST", NEGOTIATE, key=token)).status == 200
    # The token belongs to the key that asked for it.
    [conn] = [c for hub in fast.simulator.hubs.values() for c in hub.connections()][:1]
    assert conn.key == TEST_KEY

    # A token is not a REST credential.
    assert (await http("GET", "/api/auth/realtime-token", key=token)).status == 401
    assert (await http("POST", "/v1/videos/generations/async", key=token,
                       json_body={"prompt": "p", "model": "m"})).status == 401
    [issued] = fast.simulator.recorder.records("token_issued")
    assert issued.get("key") == TEST_KEY


async def test_unknown_token_is_401_on_negotiate(http: Http) -> None:
    reply = await http("POST", f"{NEGOTIATE}&access_token=rt_madeup", key=None)
    assert (reply.status, reply.body) == (401, b"")
    assert (await http("POST", NEGOTIATE, key="rt_madeup")).status == 401


async def test_ephemeral_key_route(http: Http) -> None:
    reply = await http("POST", "/v1/auth/ephemeral-key")
    assert reply.status == 200
    body = reply.json()
    assert set(body) == {"ephemeralKey", "expiresAt", "expiresInSeconds"}
    assert body["expiresInSeconds"] == 300
    ephemeral = body["ephemeralKey"]
    # Image routes take it in X-Ephemeral-Key (as built); video routes do not.
    image = await http("POST", "/v1/images/generations/async", key=None,
                       headers={"X-Ephemeral-Key": ephemeral}, json_body={"prompt": "p", "model": "m"})
    assert image.status == 202
    video = await http("POST", "/v1/videos/generations/async", key=None,
                       headers={"X-Ephemeral-Key": ephemeral}, json_body={"prompt": "p", "model": "m"})
    assert video.status == 401
    assert (await http("POST", f"{NEGOTIATE}&access_token={ephemeral}", key=None)).status == 200
