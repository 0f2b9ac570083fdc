"""The client session against the real server state machine, in memory, with a fake clock.

A :class:`ClientSession` and a server :class:`HubProtocolConnection` talk to each other through
byte strings cut at arbitrary places; nothing here opens a socket or reads a clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conduit_core.signalr.client_session import (
    ClientSession,
    ClientState,
    Closed,
    CompletionReceived,
    HandshakeCompleted,
    HandshakeRejected,
    HandshakeTimeout,
    InvocationReceived,
    PingDue,
    ServerTimeout,
    TransportLost,
    UnmatchedCompletion,
)
from conduit_core.signalr.connection import HubProtocolConnection, Role, State
from conduit_core.signalr.errors import LocalProtocolError, ProtocolError, SignalRError
from conduit_core.signalr.messages import (
    NO_RESULT,
    Close,
    Completion,
    HandshakeRequest,
    HandshakeResponse,
    Invocation,
    Ping,
)
from tests.protocol.strategies import hub_messages, json_values, targets

PROTOCOLS = ["json", "messagepack"]
T0 = 1000.0  # the fake clock's start: any float works, the session only compares


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def to_server(server: HubProtocolConnection, data: bytes, cuts: list[int]) -> list[Any]:
    return [event for chunk in chunked(data, cuts) for event in server.receive_data(chunk)]


def to_client(client: ClientSession, data: bytes, cuts: list[int], now: float = T0) -> list[Any]:
    return [event for chunk in chunked(data, cuts) for event in client.receive_data(chunk, now)]


def connected_pair(protocol: str = "json", **options: Any) -> tuple[ClientSession, HubProtocolConnection]:
    client = ClientSession(protocol, 1, **options)
    server = HubProtocolConnection(Role.SERVER)
    assert server.receive_data(client.initiate_handshake(T0)) == [HandshakeRequest(protocol, 1)]
    assert client.receive_data(server.send(HandshakeResponse()), T0) == [HandshakeCompleted()]
    assert client.state is ClientState.CONNECTED
    return client, server


# -- handshake ------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_handshake_then_a_pipelined_message_in_one_read(protocol: str) -> None:
    client = ClientSession(protocol, 1)
    server = HubProtocolConnection(Role.SERVER)
    server.receive_data(client.initiate_handshake(T0))
    data = server.send(HandshakeResponse()) + server.send(Invocation("Notify", [1]))
    assert client.receive_data(data, T0) == [
        HandshakeCompleted(), InvocationReceived(Invocation("Notify", [1]))]


def test_rejected_handshake_ends_the_session() -> None:
    client = ClientSession()
    server = HubProtocolConnection(Role.SERVER)
    server.receive_data(client.initiate_handshake(T0))
    rejection = server.send(HandshakeResponse(error="nope"))
    assert client.receive_data(rejection, T0) == [HandshakeRejected("nope")]
    assert client.state is ClientState.CLOSED and server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        client.ping(T0)


def test_a_hub_message_instead_of_the_handshake_answer_is_the_servers_fault() -> None:
    client = ClientSession()
    client.initiate_handshake(T0)
    with pytest.raises(ProtocolError):
        client.receive_data(b'{"type":6}\x1e', T0)
    assert client.state is ClientState.ERROR
    assert client.receive_data(b"{}\x1e", T0) == []  # nothing after the end counts


# -- invocations and completions ------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    calls=st.lists(st.tuples(targets, st.lists(json_values, max_size=3)), min_size=1, max_size=8),
    data=st.data(),
)
def test_every_completion_finds_its_invocation(protocol: str, calls: list[tuple[str, list[Any]]],
                                               data: st.DataObject) -> None:
    client, server = connected_pair(protocol)
    sent: dict[str, str] = {}
    stream = b""
    for target, arguments in calls:
        invocation_id, chunk = client.invoke(target, arguments, T0)
        assert invocation_id not in sent  # ids are unique within a session
        sent[invocation_id] = target
        stream += chunk
    received = to_server(server, stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    assert [(m.invocation_id, m.target) for m in received] == list(sent.items())
    assert client.pending == sent

    # The server answers in any order, some with errors, some void, some with a value.
    order = data.draw(st.permutations(list(sent)))
    answers: dict[str, Completion] = {}
    reply = b""
    for invocation_id in order:
        kind = data.draw(st.sampled_from(["error", "void", "value"]))
        completion = (Completion(invocation_id, error="boom") if kind == "error"
                      else Completion(invocation_id) if kind == "void"
                      else Completion(invocation_id, result=data.draw(json_values)))
        answers[invocation_id] = completion
        reply += server.send(completion)
    events = to_client(client, reply, data.draw(st.lists(st.integers(0, len(reply)), max_size=6)))
    assert all(isinstance(e, CompletionReceived) for e in events)
    assert [e.invocation_id for e in events] == order
    for event in events:
        assert event.target == sent[event.invocation_id]
        expected = answers[event.invocation_id]
        assert event.error == expected.error
        if expected.error is None:
            assert event.result == (expected.result if expected.has_result else None)
    assert client.pending == {}
    # A second Completion for the same id matches nothing.
    (late,) = client.receive_data(server.send(next(iter(answers.values()))), T0)
    assert isinstance(late, UnmatchedCompletion)


def test_a_forgotten_invocation_completes_unmatched() -> None:
    client, server = connected_pair()
    invocation_id, data = client.invoke("Slow", [], T0)
    server.receive_data(data)
    client.forget(invocation_id)
    (event,) = client.receive_data(server.send(Completion(invocation_id, result=1)), T0)
    assert event == UnmatchedCompletion(Completion(invocation_id, result=1))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_results_only_for_invocations_that_asked(protocol: str) -> None:
    client, server = connected_pair(protocol)
    (event,) = client.receive_data(server.send(Invocation("Ask", [], invocation_id="s1")), T0)
    assert isinstance(event, InvocationReceived)
    data = client.complete("s1", T0, error="Client didn't provide a result.")
    assert server.receive_data(data) == [Completion("s1", error="Client didn't provide a result.")]
    with pytest.raises(LocalProtocolError):  # already answered
        client.complete("s1", T0, result=NO_RESULT)
    with pytest.raises(LocalProtocolError):  # never asked
        client.complete("nobody-asked", T0)


# -- the end of a session -------------------------------------------------------------------------
@settings(max_examples=50)
@given(st.none() | st.text(max_size=20), st.booleans(), st.sampled_from(PROTOCOLS))
def test_a_close_from_the_server_ends_it_and_says_whether_to_reconnect(
        error: str | None, allow: bool, protocol: str) -> None:
    client, server = connected_pair(protocol)
    invocation_id, data = client.invoke("Pending", [], T0)
    server.receive_data(data)
    events = client.receive_data(server.send(Close(error=error, allow_reconnect=allow)), T0)
    assert events == [Closed(error, allow)]
    assert client.state is ClientState.CLOSED and client.pending == {}
    assert client.receive_data(None, T0) == []  # the transport closing after a Close is no news


def test_losing_the_transport_is_an_event() -> None:
    client, _ = connected_pair()
    client.invoke("Pending", [], T0)
    assert client.receive_data(None, T0) == [TransportLost()]
    assert client.state is ClientState.CLOSED and client.pending == {}
    handshaking = ClientSession()
    handshaking.initiate_handshake(T0)
    assert handshaking.receive_data(None, T0) == [TransportLost()]


def test_our_close_reaches_the_server_and_ends_both() -> None:
    client, server = connected_pair()
    assert server.receive_data(client.close(T0)) == [Close()]
    assert client.state is ClientState.CLOSED and server.state is State.CLOSED


# -- send() refuses what the state does not allow -------------------------------------------------
def sessions_in_every_state() -> dict[ClientState, ClientSession]:
    idle = ClientSession()
    handshaking = ClientSession()
    handshaking.initiate_handshake(T0)
    connected, _ = connected_pair()
    closed, _ = connected_pair()
    closed.receive_data(None, T0)
    errored = ClientSession()
    errored.initiate_handshake(T0)
    with pytest.raises(ProtocolError):
        errored.receive_data(b"\x00garbage\x1e", T0)
    return {s.state: s for s in (idle, handshaking, connected, closed, errored)}


@settings(max_examples=100)
@given(hub_messages().filter(lambda m: not isinstance(m, Completion)))
def test_hub_messages_only_while_connected(message: Any) -> None:
    sessions = sessions_in_every_state()
    assert set(sessions) == set(ClientState)
    for state, session in sessions.items():
        if state is ClientState.CONNECTED:
            session.send(message, T0)
        else:
            with pytest.raises(LocalProtocolError, match=f"in state {state.value}"):
                session.send(message, T0)
            assert session.state is state  # a refusal changes nothing


def test_one_handshake_per_session_and_local_errors_are_not_the_peers() -> None:
    session = ClientSession()
    session.initiate_handshake(T0)
    with pytest.raises(LocalProtocolError):
        session.initiate_handshake(T0)
    with pytest.raises(LocalProtocolError):
        ClientSession().receive_data(b"{}\x1e", T0)
    assert not issubclass(LocalProtocolError, ProtocolError)
    assert not issubclass(ProtocolError, LocalProtocolError)
    assert issubclass(LocalProtocolError, SignalRError) and issubclass(ProtocolError, SignalRError)


# -- deadlines on a fake clock --------------------------------------------------------------------
def test_handshake_timeout() -> None:
    client = ClientSession(handshake_timeout=5.0)
    client.initiate_handshake(T0)
    assert client.next_deadline() == T0 + 5.0
    assert client.tick(T0 + 4.9) == []
    assert client.tick(T0 + 5.0) == [HandshakeTimeout()]
    assert client.state is ClientState.CLOSED and client.next_deadline() is None


def test_long_polling_has_no_ping_and_no_server_timeout() -> None:
    client, _ = connected_pair(inherent_keep_alive=True)
    assert client.next_deadline() is None
    assert client.tick(T0 + 10_000) == []


class DeadlineMachine(RuleBasedStateMachine):
    """Time passes, the server sends or stays silent, the client sends or pings when told to.

    The session must ask for a Ping exactly when ``keep_alive`` passed without sending, declare
    a server timeout exactly when ``server_timeout`` passed without receiving, and never say
    anything before its own ``next_deadline()``.
    """

    @initialize(keep_alive=st.floats(0.5, 20), server_timeout=st.floats(0.5, 40))
    def connect(self, keep_alive: float, server_timeout: float) -> None:
        self.client, self.server = connected_pair(keep_alive_interval=keep_alive,
                                                  server_timeout=server_timeout)
        self.keep_alive, self.server_timeout = keep_alive, server_timeout
        self.now = self.last_sent = self.last_received = T0

    @precondition(lambda self: self.client.state is ClientState.CONNECTED)
    @rule(dt=st.floats(0, 30))
    def time_passes(self, dt: float) -> None:
        deadline = self.client.next_deadline()
        assert deadline is not None
        later = self.now + dt
        if later < deadline:
            assert self.client.tick(later) == []
        self.now = later
        events = self.client.tick(self.now)
        if self.now >= self.last_received + self.server_timeout:
            assert events == [ServerTimeout()]
        elif self.now >= self.last_sent + self.keep_alive:
            assert events == [PingDue()]
            self.server.receive_data(self.client.ping(self.now))
            self.last_sent = self.now
        else:
            assert events == []

    @precondition(lambda self: self.client.state is ClientState.CONNECTED)
    @rule()
    def server_pings(self) -> None:
        assert self.client.receive_data(self.server.send(Ping()), self.now) == []
        self.last_received = self.now

    @precondition(lambda self: self.client.state is ClientState.CONNECTED)
    @rule(method=targets)
    def client_invokes(self, method: str) -> None:
        self.server.receive_data(self.client.invoke(method, [], self.now)[1])
        self.last_sent = self.now

    @precondition(lambda self: self.client.state is ClientState.CLOSED)
    @rule(dt=st.floats(0, 100))
    def nothing_after_a_timeout(self, dt: float) -> None:
        self.now += dt
        assert self.client.tick(self.now) == []
        with pytest.raises(LocalProtocolError):
            self.client.ping(self.now)

    @invariant()
    def deadline_is_the_earlier_timer(self) -> None:
        if self.client.state is ClientState.CONNECTED:
            assert self.client.next_deadline() == min(self.last_sent + self.keep_alive,
                                                      self.last_received + self.server_timeout)
        else:
            assert self.client.next_deadline() is None


DeadlineMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_deadlines = DeadlineMachine.TestCase
