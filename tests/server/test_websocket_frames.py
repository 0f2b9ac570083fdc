"""The WebSocket transport's own framing: the bytes aiohttp's writer would send, framed once per
broadcast, and the right frame type for each protocol when one broadcast reaches both."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter

from conduit_core.signalr import Invocation
from simulator.transports.websocket import _BINARY, _TEXT, _frame
from tests.server.raw_client import RawHubSocket
from tests.support.simulator import TEST_KEY

HUB = "/hubs/image-generation"


class _Capture(asyncio.Transport):
    """A transport that keeps what is written (the writer under test is aiohttp's real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


class _Protocol:
    _paused = False


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize(("opcode", "kind"), [(_TEXT, WSMsgType.TEXT), (_BINARY, WSMsgType.BINARY)])
async def test_frame_matches_aiohttps_writer(size: int, opcode: int, kind: WSMsgType) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    transport = _Capture()
    await WebSocketWriter(_Protocol(), transport).send_frame(payload, kind)  # type: ignore[arg-type]
    assert _frame(opcode, payload) == bytes(transport.data)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def test_one_broadcast_reaches_json_and_messagepack_in_their_frame_types(sim, session) -> None:
    clients = [RawHubSocket(session, sim.url + HUB, TEST_KEY) for _ in range(4)]
    for client, protocol in zip(clients, ["json", "messagepack", "json", "messagepack"], strict=True):
        await client.open(protocol)
    hub = sim.simulator.hub(HUB)
    for progress in (1, 2):
        assert sim.call(hub.send_all, "TaskProgress", ["task_x", progress]) == len(clients)
    for client in clients:
        assert client.ws is not None
        for progress in (1, 2):
            msg = await client.ws.receive(timeout=5)
            assert msg.type is (WSMsgType.BINARY if client.protocol.is_binary else WSMsgType.TEXT)
            [event] = client.protocol.receive_data(msg.data)
            assert isinstance(event, Invocation)
            assert (event.target, event.arguments) == ("TaskProgress", ["task_x", progress])
