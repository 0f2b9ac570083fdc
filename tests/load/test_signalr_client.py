"""The load client's event measurements, fed messages directly (no socket, no Locust)."""

from __future__ import annotations

from typing import Any

from gevent.event import AsyncResult

from conduit_core.signalr import (
    Completion,
    HandshakeRequest,
    HandshakeResponse,
    HubProtocolConnection,
    Invocation,
    Role,
)
from conduit_core.signalr.client_session import ClientSession
from conduit_core.signalr.errors import HubInvocationError, NegotiateError
from loadtests import signalr_client
from loadtests.signalr_client import EMIT_TIME_HEADER, HUBS, Received, SignalRClient


def client() -> tuple[SignalRClient, list[tuple[Any, ...]]]:
    reports: list[tuple[Any, ...]] = []
    signalr = SignalRClient("http://127.0.0.1:9", HUBS["image"].path, "vk_x",
                            report=lambda *args: reports.append(args))
    return signalr, reports


def test_latency_comes_from_the_emit_header() -> None:
    signalr, reports = client()
    seen: list[tuple[list[Any], float | None]] = []
    signalr.on("taskprogress", lambda args, received: seen.append((args, received.emit_ms)))
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 10], headers={EMIT_TIME_HEADER: "1000.5"}),
                           Received(1.0505, None, 64))
    assert len(reports) == 1
    name, ms, length, error = reports[0]
    assert (name, length, error) == ("latency TaskProgress", 64, None)
    assert abs(ms - 50.0) < 1e-6
    assert seen == [(["t1", 10], 1000.5)]  # handlers match case-insensitively, as the TS client


def test_without_the_header_gaps_between_a_tasks_events_are_measured() -> None:
    """A real Conduit sends no emit time: the client measures inter-event times per task id."""
    signalr, reports = client()
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 10]), Received(10.0, None, 40))
    signalr._on_invocation(Invocation("TaskProgress", ["t2", 10]), Received(10.1, None, 40))
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 50]), Received(10.75, None, 40))
    signalr._on_invocation(Invocation("TaskCompleted", ["t1", {}]), Received(11.0, None, 90))
    signalr.forget("t1")
    signalr._on_invocation(Invocation("TaskProgress", ["t1", 5]), Received(20.0, None, 40))
    assert [(name, round(ms, 3)) for name, ms, _, _ in reports] == [
        ("gap TaskProgress", 750.0), ("gap TaskCompleted", 250.0)]


def test_completions_are_matched_by_the_core_session() -> None:
    """The load client keeps futures only; ids, matching and errors are the core's."""
    assert signalr_client.NegotiateFailed is NegotiateError  # one error type, its old name kept
    signalr, _ = client()
    session, server = ClientSession(), HubProtocolConnection(Role.SERVER)
    assert server.receive_data(session.initiate_handshake(0.0)) == [HandshakeRequest("json", 1)]
    session.receive_data(server.send(HandshakeResponse()), 0.0)
    ok_id, ok_bytes = session.invoke("SubscribeToTask", ["t1"], 0.0)
    bad_id, bad_bytes = session.invoke("SubscribeToTask", ["t2"], 0.0)
    server.receive_data(ok_bytes + bad_bytes)
    ok, bad = AsyncResult(), AsyncResult()
    signalr._pending.update({ok_id: ok, bad_id: bad})
    reply = server.send(Completion(bad_id, error="no such task")) + server.send(Completion(ok_id))
    for event in session.receive_data(reply, 0.0):
        signalr._handle(event, Received(1.0, None, len(reply)))
    assert ok.get(timeout=0) is None
    error = bad.exception
    assert isinstance(error, HubInvocationError) and error.error == "no such task"
    assert error.method == "SubscribeToTask"


class FakeSocket:
    """Stands in for the WebSocket: records what the timer writes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, opcode: int) -> None:
        self.sent.append(data)

    def shutdown(self) -> None:
        pass


def test_one_shared_timer_pings_and_ends_a_silent_connection() -> None:
    """Keep-alive Pings and the server timeout of every connection come from one greenlet."""
    import gevent

    timer = signalr_client.DeadlineTimer()
    closed: list[str] = []
    clients = []
    for _ in range(3):
        signalr = SignalRClient("http://127.0.0.1:9", HUBS["image"].path, "vk_x", keepalive=0.05,
                                server_timeout=0.3, reconnect_delays=())
        signalr.on_closed.append(closed.append)
        session, server = ClientSession(keep_alive_interval=0.05, server_timeout=0.3), \
            HubProtocolConnection(Role.SERVER)
        server.receive_data(session.initiate_handshake(0.0))
        session.receive_data(server.send(HandshakeResponse()), signalr_client.time.monotonic())
        ws = FakeSocket()
        signalr._generation, signalr.state = 1, "connected"
        signalr._ws, signalr._session = ws, session  # type: ignore[assignment]
        timer.watch(signalr, ws, session, 1)  # type: ignore[arg-type]
        clients.append((signalr, ws))
    assert len(timer) == 3
    gevent.sleep(0.2)
    for _, ws in clients:
        assert len(ws.sent) >= 2  # Pings every 0.05 s: nothing else was sent
    gevent.sleep(0.3)
    assert [c.state for c, _ in clients] == ["disconnected"] * 3
    assert len(closed) == 3 and all(reason.startswith("server timeout") for reason in closed)
    assert len(timer) == 0
