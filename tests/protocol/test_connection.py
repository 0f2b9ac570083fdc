"""HubProtocolConnection driven through the real codecs, from either end."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit_core.signalr import handshake, json_protocol, msgpack_protocol
from conduit_core.signalr.connection import HubProtocolConnection, Role, State
from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.messages import (
    Close,
    Completion,
    HandshakeRequest,
    HandshakeResponse,
    Invocation,
    Ping,
)
from tests.protocol.strategies import hub_messages, msgpack_values, roundtrip_form

PROTOCOLS = ["json", "messagepack"]
CODECS = {"json": json_protocol, "messagepack": msgpack_protocol}


def request(protocol: str = "json", version: int = 1) -> bytes:
    return handshake.encode_request(HandshakeRequest(protocol, version))


def open_server(protocol: str = "json") -> HubProtocolConnection:
    server = HubProtocolConnection(Role.SERVER)
    assert server.receive_data(request(protocol)) == [HandshakeRequest(protocol, 1)]
    return server


def feed(conn: HubProtocolConnection, data: bytes, cuts: list[int]) -> list[Any]:
    events: list[Any] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        events.extend(conn.receive_data(data[previous:cut]))
        previous = cut
    return events


def decode_close(protocol: str, data: bytes) -> Close:
    codec = CODECS[protocol]
    (record,) = codec.split_records(bytearray(data), None)
    message = codec.decode(record)
    assert isinstance(message, Close)
    return message


# -- server handshake ----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("version", [0, 1, 2])
def test_server_accepts_versions_0_to_2(protocol: str, version: int) -> None:
    server = HubProtocolConnection(Role.SERVER)
    assert server.receive_data(request(protocol, version)) == [HandshakeRequest(protocol, version)]
    assert server.state is State.OPEN
    assert (server.protocol, server.version) == (protocol, version)
    assert server.transfer_format == ("Binary" if protocol == "messagepack" else "Text")
    assert server.send(HandshakeResponse()) == b"{}\x1e"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (request("json", 3), "version 3"),
        (request("json", -1), "version -1"),
        (request("xml", 1), "'xml' is not supported"),
        (b'{"protocol":"json"}\x1e', "version"),
        (b"garbage\x1e", "handshake"),
    ],
)
def test_server_rejects_bad_handshakes(data: bytes, fragment: str) -> None:
    server = HubProtocolConnection(Role.SERVER)
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(data)
    assert fragment in caught.value.message
    assert server.state is State.ERROR
    answer = handshake.parse_response(caught.value.response[:-1])
    assert answer.error == caught.value.message
    with pytest.raises(ProtocolError):  # the error state is sticky
        server.receive_data(request())


def test_oversized_handshake_is_canceled() -> None:
    server = HubProtocolConnection(Role.SERVER, max_message_size=64)
    assert server.receive_data(b'{"protocol":"json",') == []
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(b" " * 64)
    assert caught.value.response == b'{"error":"Handshake was canceled."}\x1e'


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_handshake_and_messages_in_one_chunk(protocol: str) -> None:
    codec = CODECS[protocol]
    messages = [Invocation("Send", ["hi"], invocation_id="1"), Ping(), Completion("2", result=3)]
    data = request(protocol) + b"".join(codec.encode(m) for m in messages)
    server = HubProtocolConnection(Role.SERVER)
    assert server.receive_data(data) == [HandshakeRequest(protocol, 1), *messages]
    assert server.state is State.OPEN


def test_handshake_as_str_and_byte_by_byte() -> None:
    server = HubProtocolConnection(Role.SERVER)
    assert server.receive_data('{"protocol":"json","version":1}\x1e{"type":6}\x1e') == [
        HandshakeRequest("json", 1),
        Ping(),
    ]
    server = HubProtocolConnection(Role.SERVER)
    data = request() + json_protocol.encode(Ping())
    assert feed(server, data, list(range(len(data)))) == [HandshakeRequest("json", 1), Ping()]


# -- server, open --------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bad_message_is_answered_with_a_close(protocol: str) -> None:
    server = open_server(protocol)
    bad = b'{"type":99}\x1e' if protocol == "json" else msgpack_protocol.encode_varint(1) + b"\xc1"
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(bad)
    assert server.state is State.ERROR
    assert decode_close(protocol, caught.value.response).error == caught.value.message


def test_oversized_message_is_answered_with_a_close() -> None:
    server = HubProtocolConnection(Role.SERVER, max_message_size=100)
    server.receive_data(request())
    with pytest.raises(ProtocolError) as caught:
        server.receive_data(json_protocol.encode(Invocation("Send", ["x" * 200])))
    assert "The maximum message size of 100B was exceeded." in caught.value.message
    assert decode_close("json", caught.value.response).error == caught.value.message


def test_close_in_either_direction_closes() -> None:
    server = open_server()
    assert server.receive_data(json_protocol.encode(Close())) == [Close()]
    assert server.state is State.CLOSED
    server = open_server("messagepack")
    assert server.send(Close("bye")) == msgpack_protocol.encode(Close("bye"))
    assert server.state is State.CLOSED


# -- client role ---------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_handshake_then_messages(protocol: str) -> None:
    client = HubProtocolConnection(Role.CLIENT)
    assert client.initiate_handshake(protocol, 1) == request(protocol, 1)
    codec = CODECS[protocol]
    messages = [Invocation("Notify", [{"a": 1}]), Ping()]
    events = client.receive_data(b"{}\x1e" + b"".join(codec.encode(m) for m in messages))
    assert events == [HandshakeResponse(), *messages]
    assert client.state is State.OPEN
    assert client.send(Ping()) == codec.encode(Ping())


def test_client_handshake_error_closes_and_client_errors_have_no_response() -> None:
    client = HubProtocolConnection(Role.CLIENT)
    client.initiate_handshake()
    assert client.receive_data(b'{"error":"nope"}\x1e') == [HandshakeResponse("nope")]
    assert client.state is State.CLOSED

    client = HubProtocolConnection(Role.CLIENT)
    client.initiate_handshake()
    with pytest.raises(ProtocolError) as caught:
        client.receive_data(b'{"type":1,"target":"x","arguments":[]}\x1e')
    assert caught.value.response is None and client.state is State.ERROR


def test_only_a_client_initiates() -> None:
    with pytest.raises(RuntimeError):
        HubProtocolConnection(Role.SERVER).initiate_handshake()


# -- properties ----------------------------------------------------------------------------------
@settings(max_examples=100)
@given(
    st.sampled_from(PROTOCOLS),
    st.lists(hub_messages(msgpack_values), max_size=5),
    st.data(),
)
def test_client_to_server_in_arbitrary_chunks(
    protocol: str, messages: list[Any], data: st.DataObject
) -> None:
    if protocol == "json":  # JSON has no bytes: draw JSON-only values instead
        messages = data.draw(st.lists(hub_messages(), max_size=5))
    client = HubProtocolConnection(Role.CLIENT, max_message_size=None)
    server = HubProtocolConnection(Role.SERVER, max_message_size=None)
    stream = client.initiate_handshake(protocol) + b"".join(client.send(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    events = feed(server, stream, cuts)
    expected = [roundtrip_form(m, protocol) for m in messages]
    # Chunks arriving after a Close are not read (messages behind it in the same chunk are).
    closes = [i for i, m in enumerate(expected) if isinstance(m, Close)]
    at_least = closes[0] + 1 if closes else len(expected)
    assert events[0] == HandshakeRequest(protocol, 1)
    assert events[1:] == expected[: len(events) - 1]
    assert len(events) - 1 >= at_least


def _check_server_error(
    server: HubProtocolConnection, exc: ProtocolError, handshaking: bool
) -> None:
    assert server.state is State.ERROR
    assert exc.response is not None
    if handshaking:
        assert handshake.parse_response(exc.response[:-1]).error == exc.message
    else:
        assert decode_close(server.protocol or "json", exc.response).error == exc.message


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_server_handshake_garbage_raises_only_protocol_error(chunks: list[bytes]) -> None:
    server = HubProtocolConnection(Role.SERVER, max_message_size=64)
    for chunk in chunks:
        handshaking = server.state is State.HANDSHAKE
        try:
            server.receive_data(chunk)
        except ProtocolError as exc:
            _check_server_error(server, exc, handshaking and server.protocol is None)
            return


@settings(max_examples=200)
@given(st.sampled_from(PROTOCOLS), st.lists(st.binary(max_size=40), max_size=4))
def test_server_message_garbage_raises_only_protocol_error(
    protocol: str, chunks: list[bytes]
) -> None:
    server = open_server(protocol)
    for chunk in chunks:
        try:
            server.receive_data(chunk)
        except ProtocolError as exc:
            _check_server_error(server, exc, handshaking=False)
            return


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40) | st.text(max_size=40), max_size=4))
def test_client_garbage_raises_only_protocol_error(chunks: list[Any]) -> None:
    client = HubProtocolConnection(Role.CLIENT)
    client.initiate_handshake("messagepack")
    for chunk in chunks:
        try:
            client.receive_data(chunk)
        except ProtocolError as exc:
            assert client.state is State.ERROR and exc.response is None
            return
