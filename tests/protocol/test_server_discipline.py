"""The server state machine refuses our own misuse (LocalProtocolError) apart from the peer's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from conduit_core.signalr import handshake, json_protocol
from conduit_core.signalr.connection import HubProtocolConnection, Role, State
from conduit_core.signalr.errors import LocalProtocolError, ProtocolError
from conduit_core.signalr.messages import Close, HandshakeRequest, HandshakeResponse, Invocation, Ping
from tests.protocol.strategies import hub_messages


def request(protocol: str = "json") -> bytes:
    return handshake.encode_request(HandshakeRequest(protocol, 1))


def answered_server() -> HubProtocolConnection:
    server = HubProtocolConnection(Role.SERVER)
    server.receive_data(request())
    server.send(HandshakeResponse())
    return server


def servers_that_may_not_send_hub_messages() -> dict[str, HubProtocolConnection]:
    handshaking = HubProtocolConnection(Role.SERVER)
    closed_by_us = answered_server()
    closed_by_us.send(Close())
    closed_by_them = answered_server()
    closed_by_them.receive_data(json_protocol.encode(Close()))
    rejected = HubProtocolConnection(Role.SERVER)
    rejected.receive_data(request())
    rejected.send(HandshakeResponse(error="no"))
    errored = answered_server()
    with pytest.raises(ProtocolError):
        errored.receive_data(b"not json\x1e")
    return {"handshaking": handshaking, "closed by us": closed_by_us,
            "closed by them": closed_by_them, "rejected": rejected, "errored": errored}


@settings(max_examples=60)
@given(hub_messages())
def test_hub_messages_only_while_open(message: Any) -> None:
    answered_server().send(message)
    for name, server in servers_that_may_not_send_hub_messages().items():
        state = server.state
        with pytest.raises(LocalProtocolError):
            server.send(message)
        assert server.state is state, name  # a refusal changes nothing


def test_the_handshake_is_answered_once_before_any_hub_message() -> None:
    server = answered_server()
    with pytest.raises(LocalProtocolError, match="already been answered"):
        server.send(HandshakeResponse())
    server = HubProtocolConnection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="not been received"):
        server.send(HandshakeResponse())  # accepting what never came
    # A timed-out handshake may still be refused, and that ends the connection.
    assert server.send(HandshakeResponse(error="Handshake was canceled.")) == (
        b'{"error":"Handshake was canceled."}\x1e')
    assert server.state is State.CLOSED


def test_a_close_pipelined_behind_the_handshake_still_gets_its_answer() -> None:
    server = HubProtocolConnection(Role.SERVER)
    events = server.receive_data(request() + json_protocol.encode(Close()))
    assert events == [HandshakeRequest("json", 1), Close()] and server.state is State.CLOSED
    assert server.send(HandshakeResponse()) == b"{}\x1e"
    with pytest.raises(LocalProtocolError):
        server.send(Ping())


def test_the_peers_error_still_carries_the_answer_and_is_not_local() -> None:
    server = answered_server()
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(b'{"type":1}\x1e')
    assert not isinstance(caught.value, LocalProtocolError)
    assert caught.value.response is not None and b'"type":7' in caught.value.response
    with pytest.raises(LocalProtocolError):
        server.send(Invocation("Late", []))


def test_local_errors_are_runtime_errors_not_protocol_errors() -> None:
    with pytest.raises(RuntimeError):
        HubProtocolConnection(Role.SERVER).initiate_handshake()
    with pytest.raises(LocalProtocolError):
        HubProtocolConnection(Role.SERVER).initiate_handshake()
    assert not issubclass(LocalProtocolError, ProtocolError)
