"""Negotiate and the HTTP transports at the byte level (signalr-protocol.md §1, §2, §6)."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from conduit_core.signalr import HubProtocolConnection, Invocation, Role
from tests.server.raw_client import auth, negotiate
from tests.support.simulator import TEST_KEY

HUB = "/hubs/image-generation"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{22}$")


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_negotiate_version_0_has_no_token(sim, session):
    body = await negotiate(session, sim.url + HUB, TEST_KEY, version=None)
    assert body["negotiateVersion"] == 0
    assert "connectionToken" not in body and "ProtocolVersion" not in body
    assert URL_SAFE.match(body["connectionId"])
    assert [t["transport"] for t in body["availableTransports"]] == [
        "WebSockets", "ServerSentEvents", "LongPolling"]
    assert body["availableTransports"][0]["transferFormats"] == ["Text", "Binary"]
    assert body["useStatefulReconnect"] is False


async def test_negotiate_version_1_has_separate_url_safe_token(sim, session):
    body = await negotiate(session, sim.url + HUB, TEST_KEY, version=1)
    assert body["negotiateVersion"] == 1
    assert URL_SAFE.match(body["connectionToken"])
    assert body["connectionToken"] != body["connectionId"]
    higher = await negotiate(session, sim.url + HUB, TEST_KEY, version=7)
    assert higher["negotiateVersion"] == 1


async def test_negotiate_ignores_a_stray_id(sim, session):
    async with session.post(sim.url + HUB + "/negotiate?id=old", headers=auth(TEST_KEY)) as r:
        assert r.status == 200


async def test_cors_preflight_echoes_origin(make_simulator, session):
    sim = make_simulator(cors_origins=["http://localhost:3000"])  # CORS is for configured origins only
    headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,x-requested-with"}
    async with session.options(sim.url + HUB + "/negotiate", headers=headers) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert r.headers["Access-Control-Allow-Headers"] == "authorization,x-requested-with"
    async with session.post(sim.url + HUB + "/negotiate", headers={
            "Origin": "http://localhost:3000", **auth(TEST_KEY)}) as r:
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


async def test_long_polling_lifecycle(sim, session):
    url = sim.url + HUB
    token = (await negotiate(session, url, TEST_KEY))["connectionToken"]
    conn_url = f"{url}?id={token}"
    async with session.get(conn_url, headers=auth(TEST_KEY)) as r:  # first poll: at once, empty
        assert r.status == 200 and await r.read() == b""
        assert r.headers["Content-Type"] == "application/octet-stream"
    protocol = HubProtocolConnection(Role.CLIENT)
    async with session.post(conn_url, headers=auth(TEST_KEY),
                            data=protocol.initiate_handshake("json", 1)) as r:
        assert r.status == 200 and await r.read() == b""
    async with session.get(conn_url, headers=auth(TEST_KEY)) as r:
        assert protocol.receive_data(await r.read())[0].error is None
    # A poll waits for data; a server event ends it with 200.
    async with session.post(conn_url, headers=auth(TEST_KEY), data=protocol.send(
            Invocation("SubscribeToTask", ["task_lp"], invocation_id="1"))) as r:
        assert r.status == 200
    async with session.get(conn_url, headers=auth(TEST_KEY)) as r:
        assert protocol.receive_data(await r.read())[0].invocation_id == "1"
    hub = sim.simulator.hub(HUB)

    async def poll():
        async with session.get(conn_url, headers=auth(TEST_KEY)) as r:
            return r.status, await r.read()

    pending = asyncio.create_task(poll())
    await asyncio.sleep(0.2)
    sim.call(hub.send_group, "image-task_lp", "TaskProgress", ["task_lp", 5])
    status, body = await pending
    assert status == 200
    assert protocol.receive_data(body)[0].arguments == ["task_lp", 5]
    # A newer poll replaces an older one (204); DELETE ends the connection (202, poll 204).
    older = asyncio.create_task(poll())
    await asyncio.sleep(0.2)
    newer = asyncio.create_task(poll())
    assert (await older)[0] == 204
    await asyncio.sleep(0.1)
    async with session.delete(conn_url, headers=auth(TEST_KEY)) as r:
        assert r.status == 202
    assert (await newer)[0] == 204


async def test_idle_negotiated_connection_is_removed(sim, session):
    await negotiate(session, sim.url + HUB, TEST_KEY)
    hub = sim.simulator.hub(HUB)
    assert sim.call(lambda: len(hub.connections())) == 1
    await asyncio.sleep(2.6)  # fixture's disconnect timeout is 2 s, checked every 0.1 s
    assert sim.call(lambda: len(hub.connections())) == 0
    assert sim.simulator.recorder.records("disconnect")[0].get("reason").startswith("inactive")


async def test_sse_stream_format(sim, session):
    url = sim.url + HUB
    token = (await negotiate(session, url, TEST_KEY))["connectionToken"]
    conn_url = f"{url}?id={token}&access_token={TEST_KEY}"
    async with session.get(conn_url, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readexactly(3) == b":\r\n"
        protocol = HubProtocolConnection(Role.CLIENT)
        async with session.post(conn_url, data=protocol.initiate_handshake("json", 1)) as r:
            assert r.status == 200
        line = await asyncio.wait_for(stream.content.readuntil(b"\r\n\r\n"), 5)
        assert line == b"data: {}\x1e\r\n\r\n"
        # A second transport on the same connection is a conflict.
        async with session.get(conn_url, headers={"Accept": "text/event-stream"}) as again:
            assert again.status == 409
        # MessagePack cannot ride SSE.
    token2 = (await negotiate(session, url, TEST_KEY))["connectionToken"]
    conn2 = f"{url}?id={token2}&access_token={TEST_KEY}"
    async with session.get(conn2, headers={"Accept": "text/event-stream"}) as stream:
        await stream.content.readexactly(3)
        mp = HubProtocolConnection(Role.CLIENT)
        async with session.post(conn2, data=mp.initiate_handshake("messagepack", 1)) as r:
            assert r.status == 200
        line = await asyncio.wait_for(stream.content.readuntil(b"\r\n\r\n"), 5)
        assert b"does not support 'Binary'" in line
        assert json.loads(line[len(b"data: "):].split(b"\x1e")[0])["error"]
