"""Bad input gets the protocol's answer, and other connections keep working.

Each case sends one kind of garbage on its own connection while a healthy connection stays open
beside it; at the end the healthy one still receives an event.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from conduit_core.signalr import Close, Completion, Invocation, Ping
from conduit_core.signalr import handshake as handshake_codec
from tests.server.raw_client import RawHubSocket, auth
from tests.support.simulator import TEST_KEY

HUB = "/hubs/image-generation"


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def healthy_connection(session, sim) -> RawHubSocket:
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open()
    await client.send(Invocation("SubscribeToTask", ["task_healthy"], invocation_id="1"))
    await client.receive_until(lambda m: isinstance(m, Completion))
    return client


async def assert_still_healthy(sim, client: RawHubSocket) -> None:
    hub = sim.simulator.hub(HUB)
    sim.call(hub.send_group, "image-task_healthy", "TaskProgress", ["task_healthy", 77])
    event = await client.receive_until(lambda m: isinstance(m, Invocation))
    assert event.arguments == ["task_healthy", 77]


async def raw_socket(session, sim) -> tuple[RawHubSocket, aiohttp.ClientWebSocketResponse]:
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    return client, await client.connect()


async def read_handshake_error(ws) -> str:
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    data = msg.data.encode() if isinstance(msg.data, str) else msg.data
    response = handshake_codec.parse_response(data.rstrip(b"\x1e"))
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    assert response.error
    return response.error


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("this is not json\x1e", "handshake"),
        ('{"protocol":"json"}\x1e', "version"),
        ('{"protocol":"xml","version":1}\x1e', "not supported"),
        ('{"protocol":"json","version":3}\x1e', "version 3"),
        ("[1,2,3]\x1e", "handshake"),
    ],
    ids=["not-json", "no-version", "unknown-protocol", "version-too-new", "not-an-object"],
)
async def test_garbage_handshake_gets_handshake_error(sim, session, frame, expected):
    healthy = await healthy_connection(session, sim)
    _, ws = await raw_socket(session, sim)
    await ws.send_str(frame)
    error = await read_handshake_error(ws)
    assert expected.lower() in error.lower()
    assert sim.simulator.recorder.records("protocol_error")
    await assert_still_healthy(sim, healthy)


async def test_handshake_timeout_cancels(sim, session):
    _, ws = await raw_socket(session, sim)
    error = await read_handshake_error(ws)  # the fixture's handshake timeout is 2 s
    assert error == "Handshake was canceled."


async def test_oversized_handshake_is_canceled(sim, session):
    _, ws = await raw_socket(session, sim)
    await ws.send_str("{" + " " * (40 * 1024))
    assert await read_handshake_error(ws) == "Handshake was canceled."


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json\x1e", "json"),
        ('{"type":42}\x1e', "unknown message type"),
        ('{"type":1,"target":"","arguments":[]}\x1e', "target"),
        ('{"type":1,"target":"SubscribeToTask","arguments":"x"}\x1e', "arguments"),
        ('{"target":"SubscribeToTask","arguments":[]}\x1e', "type"),
        ('{"type":1,"target":"SubscribeToTask","arguments":["' + "x" * 33_000 + '"]}\x1e',
         "maximum message size"),
    ],
    ids=["invalid-json", "unknown-type", "empty-target", "arguments-not-array", "no-type",
         "oversized"],
)
async def test_bad_message_gets_close_with_error(sim, session, payload, expected):
    healthy = await healthy_connection(session, sim)
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open()
    await client.ws.send_str(payload)
    close = await client.receive_until(lambda m: isinstance(m, Close))
    assert close.error and expected in close.error.lower()
    assert close.allow_reconnect in (None, False)
    msg = await client.ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await assert_still_healthy(sim, healthy)


async def test_binary_frame_on_json_connection_gets_close_with_error(sim, session):
    healthy = await healthy_connection(session, sim)
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open()
    await client.ws.send_bytes(b'{"type":6}\x1e')
    close = await client.receive_until(lambda m: isinstance(m, Close))
    assert "Binary frame" in close.error
    await assert_still_healthy(sim, healthy)


async def test_text_frame_on_messagepack_connection_gets_close_with_error(sim, session):
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open("messagepack")
    await client.ws.send_str('{"type":6}\x1e')
    close = await client.receive_until(lambda m: isinstance(m, Close))
    assert "Text frame" in close.error


async def test_messagepack_garbage_gets_close_with_error(sim, session):
    healthy = await healthy_connection(session, sim)
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open("messagepack")
    await client.ws.send_bytes(b"\x03\xc1\xc1\xc1")  # a length prefix, then bytes msgpack never uses
    close = await client.receive_until(lambda m: isinstance(m, Close))
    assert close.error
    await assert_still_healthy(sim, healthy)


async def test_unknown_method_and_wrong_arity_get_error_completions(sim, session):
    client = RawHubSocket(session, sim.url + HUB, TEST_KEY)
    await client.open()
    await client.send(Invocation("Nope", [], invocation_id="a"))
    unknown = await client.receive_until(lambda m: isinstance(m, Completion))
    assert unknown.error == "Unknown hub method 'Nope'"
    await client.send(Invocation("SubscribeToTask", ["a", "b"], invocation_id="b"))
    arity = await client.receive_until(lambda m: isinstance(m, Completion))
    assert "provides 2 argument(s) but target expects 1" in arity.error
    # Non-blocking invocations get no reply at all, even when unknown.
    await client.send(Invocation("Nope", []))
    await client.send(Invocation("SubscribeToTask", ["task_z"], invocation_id="c"))
    ok = await client.receive_until(lambda m: isinstance(m, Completion))
    assert ok.invocation_id == "c" and ok.error is None and not ok.has_result
    # And the connection is still up.
    await client.send(Ping())


async def test_missing_or_unknown_key_gets_401_with_empty_body(sim, session):
    for headers in ({}, auth("vk_unknown"), {"X-API-Key": "vk_unknown"}):
        async with session.post(sim.url + HUB + "/negotiate", headers=headers) as response:
            assert response.status == 401
            assert await response.read() == b""
    ws_url = sim.url.replace("http://", "ws://") + HUB
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(ws_url, headers=auth("vk_unknown"))
    assert info.value.status == 401
    stages = {r.get("stage") for r in sim.simulator.recorder.records("auth_rejected")}
    assert {"negotiate", "WebSockets"} <= stages


async def test_key_from_x_api_key_and_query(sim, session):
    async with session.post(sim.url + HUB + "/negotiate", headers={"X-API-Key": TEST_KEY}) as r:
        assert r.status == 200
    for name in ("access_token", "api_key"):
        async with session.post(sim.url + HUB + f"/negotiate?{name}={TEST_KEY}") as r:
            assert r.status == 200


async def test_unknown_connection_id_is_404_before_upgrade(sim, session):
    ws_url = sim.url.replace("http://", "ws://") + HUB + "?id=doesnotexist"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(ws_url, headers=auth(TEST_KEY))
    assert info.value.status == 404


async def test_http_errors_follow_asp(sim, session):
    url = sim.url + HUB
    async with session.get(url, headers=auth(TEST_KEY)) as r:  # long poll without id
        assert r.status == 400 and await r.text() == "Connection ID required"
    async with session.post(url + "?id=nope", headers=auth(TEST_KEY), data=b"x") as r:
        assert r.status == 404
    client = RawHubSocket(session, url, TEST_KEY)
    await client.open()
    token = client.negotiated["connectionToken"]
    async with session.post(url + f"?id={token}", headers=auth(TEST_KEY), data=b"{}") as r:
        assert r.status == 405  # POST to a WebSocket connection
    async with session.delete(url + f"?id={token}", headers=auth(TEST_KEY)) as r:
        assert r.status == 400  # DELETE only ends long polling
    async with session.get(url + f"?id={token}", headers=auth(TEST_KEY)) as r:
        assert r.status == 400  # changing transport mid-connection
    async with session.post(url + f"?id={token}", headers=auth("vk_otherkey9876543210"),
                            data=b"{}") as r:
        assert r.status == 403  # another key's connection


async def test_bad_negotiate_version_is_error_body_with_200(sim, session):
    async with session.post(sim.url + HUB + "/negotiate?negotiateVersion=abc",
                            headers=auth(TEST_KEY)) as r:
        assert r.status == 200
        assert "error" in json.loads(await r.text())


async def test_non_blocking_garbage_never_crashes_server(sim, session):
    """A burst of assorted garbage frames; afterwards the server still serves new clients."""
    for payload in ["\x1e", "\x00\x01", "{}" * 1000, '{"type":1}\x1e', "\ud800"[:0] + "é\x1e"]:
        _, ws = await raw_socket(session, sim)
        await ws.send_str(payload)
        await ws.close()
    healthy = await healthy_connection(session, sim)
    await assert_still_healthy(sim, healthy)
