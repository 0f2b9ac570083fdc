"""A client that stops reading is cut off within the outbox bound; other clients are unharmed.

The stuck client is a raw WebSocket on a blocking socket with a tiny receive buffer: it upgrades,
handshakes, subscribes and then never reads again, as a hung browser tab or a paused process
would. The server keeps emitting to its group; once the kernel buffers are full the outbox fills,
and the connection must be aborted (ASP.NET Core does the same) instead of pinning messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import time

import aiohttp
import pytest

from conduit_core.signalr import Completion, Invocation
from simulator.recorder import RecordKind
from tests.server.raw_client import RawHubSocket
from tests.support.simulator import TEST_KEY

HUB = "/hubs/image-generation"
GROUP = "image-task_healthy"
OUTBOX_LIMIT = 64 * 1024
EVENT_SIZE = 16 * 1024
# What the flood may send before the stuck client must be gone: the kernel's socket buffers on
# loopback (up to 4 MB for the server's send buffer) plus the outbox, with room to spare.
FLOOD_LIMIT = 48 * 1024 * 1024


def masked_text_frame(payload: bytes) -> bytes:
    """A client-to-server Text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    header = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stuck_client(port: int) -> socket.socket:
    """Upgrade, handshake and subscribe to the healthy task's group; the caller never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET {HUB} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TEST_KEY}\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1024)
    assert response.startswith(b"HTTP/1.1 101"), response
    sock.sendall(masked_text_frame(json.dumps({"protocol": "json", "version": 1}).encode() + b"\x1e"))
    invocation = {"type": 1, "invocationId": "1", "target": "SubscribeToTask", "arguments": ["task_healthy"]}
    sock.sendall(masked_text_frame(json.dumps(invocation).encode() + b"\x1e"))
    return sock


async def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("limit", [{"max_outbox_bytes": OUTBOX_LIMIT},
                                   {"send_timeout": 1.0, "max_outbox_bytes": 64 * 1024 * 1024}],
                         ids=["outbox-bytes", "send-timeout"])
async def test_a_client_that_stops_reading_is_disconnected(make_simulator, limit) -> None:
    sim = make_simulator(hub_options=limit)
    hub = sim.simulator.hub(HUB)
    async with aiohttp.ClientSession() as session:
        healthy = RawHubSocket(session, sim.url + HUB, TEST_KEY)
        await healthy.open()
        await healthy.send(Invocation("SubscribeToTask", ["task_healthy"], invocation_id="1"))
        await healthy.receive_until(lambda m: isinstance(m, Completion))
        healthy_id = healthy.negotiated["connectionId"]

        stuck = stuck_client(sim.simulator.port)
        try:
            await wait_for(lambda: len(hub.groups.get(GROUP, ())) == 2, 5)
            stuck_id = next(c for c in hub.groups[GROUP] if c != healthy_id)
            received = 0

            async def read_healthy() -> None:
                nonlocal received
                while True:
                    received += sum(isinstance(m, Invocation) for m in await healthy.receive(10))

            reader = asyncio.create_task(read_healthy())
            sent = 0
            started = time.monotonic()
            big = "x" * EVENT_SIZE
            while stuck_id in hub.by_id:
                assert sent * EVENT_SIZE < FLOOD_LIMIT, "the stuck client was never disconnected"
                sim.call(hub.send_group, GROUP, "TaskProgress", ["task_healthy", big])
                sent += 1
                await asyncio.sleep(0.001)
            cut_after = time.monotonic() - started
            await wait_for(lambda: received >= sent, 10)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

            closes = sim.records(RecordKind.SERVER_CLOSE, connection_id=stuck_id)
            assert len(closes) == 1 and closes[0].get("mode") == "abort", closes
            reason = closes[0].get("reason")
            assert reason.startswith("send timeout" if "send_timeout" in limit else "outbox full"), reason
            assert cut_after < 20
            assert healthy_id in hub.by_id
            # The healthy client is unharmed: it got every event and still gets new ones.
            sim.call(hub.send_group, GROUP, "TaskProgress", ["task_healthy", 77])
            event = await healthy.receive_until(lambda m: isinstance(m, Invocation))
            assert event.arguments == ["task_healthy", 77]
        finally:
            stuck.close()


async def test_a_server_sent_events_client_that_stops_reading_is_disconnected(make_simulator) -> None:
    sim = make_simulator(hub_options={"max_outbox_bytes": OUTBOX_LIMIT})
    hub = sim.simulator.hub(HUB)
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.url}{HUB}/negotiate?negotiateVersion=1", headers=headers) as reply:
            negotiated = await reply.json()
        token, connection_id = negotiated["connectionToken"], negotiated["connectionId"]
        port = sim.simulator.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall((f"GET {HUB}?id={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Accept: text/event-stream\r\nAuthorization: Bearer {TEST_KEY}\r\n\r\n").encode())
            await wait_for(lambda: hub.by_id[connection_id].transport is not None, 5)
            body = json.dumps({"protocol": "json", "version": 1}).encode() + b"\x1e" + json.dumps(
                {"type": 1, "invocationId": "1", "target": "SubscribeToTask",
                 "arguments": ["task_healthy"]}).encode() + b"\x1e"
            async with session.post(f"{sim.url}{HUB}?id={token}", data=body, headers=headers) as reply:
                assert reply.status == 200
            await wait_for(lambda: connection_id in hub.groups.get(GROUP, ()), 5)
            big = "x" * EVENT_SIZE
            sent = 0
            while connection_id in hub.by_id:
                assert sent * EVENT_SIZE < FLOOD_LIMIT, "the stuck client was never disconnected"
                sim.call(hub.send_group, GROUP, "TaskProgress", ["task_healthy", big])
                sent += 1
            closes = sim.records(RecordKind.SERVER_CLOSE, connection_id=connection_id)
            assert [c.get("mode") for c in closes] == ["abort"]
            assert closes[0].get("reason").startswith("outbox full")
        finally:
            sock.close()
