"""A close that cannot finish, and an aborted connection no transport is serving, do not linger.

Driven through the hub's heartbeat with explicit clock values, so no test waits out a timeout.
"""

from __future__ import annotations

import time

from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.hubs.options import HubOptions
from simulator.profiles import load_profile
from simulator.recorder import Recorder, RecordKind

OPTIONS = HubOptions(send_timeout=5.0)


def hub_with_connection() -> tuple[HubLifetime, ServerHubConnection, Recorder]:
    recorder = Recorder()
    hub = HubLifetime(load_profile("documented").hubs[0], OPTIONS, recorder)
    conn = ServerHubConnection(connection_id="c1", token="t1", key="vk_x", negotiate_version=1,
                               options=OPTIONS)
    hub.add(conn)
    conn.attach(TransportKind.LONG_POLLING)
    return hub, conn, recorder


def test_a_close_that_does_not_finish_becomes_an_abort_then_the_connection_is_removed() -> None:
    hub, conn, recorder = hub_with_connection()
    conn.request_close(CloseMode.GRACEFUL, "closed by server")
    now = time.monotonic()
    hub.heartbeat(now + 1)
    assert conn.closing.mode is CloseMode.GRACEFUL and not conn.removed
    hub.heartbeat(now + OPTIONS.send_timeout + 0.1)
    assert conn.closing.mode is CloseMode.ABORT and conn.closing.reason.startswith("close timeout")
    [close] = recorder.records(RecordKind.SERVER_CLOSE)
    assert close.get("mode") == "abort" and close.get("connection_id") == "c1"
    assert not conn.removed  # a transport gets the send timeout to notice the abort
    hub.heartbeat(now + 2 * OPTIONS.send_timeout + 0.2)
    assert conn.removed and "c1" not in hub.by_id


def test_an_outbox_over_its_byte_limit_is_dropped_at_once_and_the_transport_aborted() -> None:
    hub, conn, recorder = hub_with_connection()
    aborted: list[bool] = []
    conn.abort_transport = lambda: aborted.append(True)
    chunk = b"x" * 1024
    queued = 0
    while conn.enqueue(chunk):
        queued += 1
    assert queued == OPTIONS.max_outbox_bytes // len(chunk)
    assert aborted == [True] and conn.outbox_bytes == 0 and not conn.has_outbound
    assert conn.closing.mode is CloseMode.ABORT and conn.closing.reason.startswith("outbox full")
    assert not conn.enqueue(chunk)
    assert len(recorder.records(RecordKind.SERVER_CLOSE)) == 1
