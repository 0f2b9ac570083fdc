"""Handshake records and the negotiate step's pure functions."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit_core.signalr import handshake, negotiate
from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.messages import HandshakeRequest, HandshakeResponse
from conduit_core.signalr.negotiate import NegotiateError, NegotiateResult
from tests.protocol.strategies import handshake_requests, handshake_responses, json_values

# -- handshake -----------------------------------------------------------------------------------


def test_encode_request_and_responses() -> None:
    expected = b'{"protocol":"json","version":1}\x1e'
    assert handshake.encode_request(HandshakeRequest("json", 1)) == expected
    assert handshake.encode_response(HandshakeResponse()) == b"{}\x1e"
    assert handshake.encode_response(HandshakeResponse("nope")) == b'{"error":"nope"}\x1e'


@given(handshake_requests)
def test_request_round_trip(request: HandshakeRequest) -> None:
    assert handshake.parse_request(handshake.encode_request(request)[:-1]) == request


@given(handshake_responses)
def test_response_round_trip(response: HandshakeResponse) -> None:
    assert handshake.parse_response(handshake.encode_response(response)[:-1]) == response


def test_parse_request_ignores_unknown_properties() -> None:
    record = b'{"version":0,"protocol":"messagepack","extra":[1]}'
    assert handshake.parse_request(record) == HandshakeRequest("messagepack", 0)


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"{",
        b"[]",
        b"\xff",
        b'{"version":1}',
        b'{"protocol":"json"}',
        b'{"protocol":1,"version":1}',
        b'{"protocol":null,"version":1}',
        b'{"protocol":"json","version":true}',
        b'{"protocol":"json","version":"1"}',
        b'{"protocol":"json","version":1.0}',
        b'{"protocol":"json","version":null}',
        b'{"protocol":"\\ud800","version":1}',
    ],
)
def test_parse_request_rejects(record: bytes) -> None:
    with pytest.raises(ProtocolError):
        handshake.parse_request(record)


@settings(max_examples=200)
@given(st.binary(max_size=48) | st.text(max_size=48).map(str.encode))
def test_parse_request_raises_only_protocol_error(record: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        handshake.parse_request(record)


@settings(max_examples=100)
@given(
    st.fixed_dictionaries(
        {}, optional={"protocol": json_values | st.text(), "version": json_values | st.integers()}
    )
)
def test_parse_request_near_misses_raise_only_protocol_error(obj: dict[str, Any]) -> None:
    try:
        request = handshake.parse_request(json.dumps(obj).encode())
    except ProtocolError:
        return
    assert isinstance(request.protocol, str) and type(request.version) is int


def test_parse_response() -> None:
    assert handshake.parse_response(b"{}") == HandshakeResponse()
    assert handshake.parse_response(b'{"error":"bad"}') == HandshakeResponse("bad")
    # A falsy type is tolerated, as by the TS client (@fakehost/signalr answers {"type":0}).
    assert handshake.parse_response(b'{"type":0}') == HandshakeResponse()
    with pytest.raises(ProtocolError, match="Expected a handshake response from the server."):
        handshake.parse_response(b'{"type":6}')
    with pytest.raises(ProtocolError):
        handshake.parse_response(b'{"error":5}')
    with pytest.raises(ProtocolError):
        handshake.parse_response(b"nope")


# -- negotiate: versions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "version"),
    [
        ({}, 0),
        ({"id": "stale"}, 0),
        ({"negotiateVersion": "0"}, 0),
        ({"negotiateVersion": "1"}, 1),
        ({"negotiateVersion": "2"}, 1),
        ({"negotiateVersion": "99"}, 1),
        ({"NEGOTIATEVERSION": "1"}, 1),
        ({"negotiateversion": " 1 "}, 1),
        ({"negotiateVersion": "+1"}, 1),
    ],
)
def test_requested_version(query: dict[str, str], version: int) -> None:
    assert negotiate.requested_version(query) == version


@pytest.mark.parametrize("value", ["-1", "abc", "", "1.0", "1_0", "٣", "99999999999"])
def test_requested_version_errors(value: str) -> None:
    with pytest.raises(NegotiateError):
        negotiate.requested_version({"negotiateVersion": value})


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ({}, False),
        ({"useStatefulReconnect": "true"}, True),
        ({"usestatefulreconnect": "TRUE"}, True),
        ({"useStatefulReconnect": "false"}, False),
        ({"useStatefulReconnect": "1"}, False),
    ],
)
def test_wants_stateful_reconnect(query: dict[str, str], wanted: bool) -> None:
    assert negotiate.wants_stateful_reconnect(query) is wanted


# -- negotiate: bodies ---------------------------------------------------------------------------
def test_ids_are_22_url_safe_characters() -> None:
    ids = {negotiate.new_connection_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)


def test_version_0_has_no_connection_token() -> None:
    body = negotiate.build_response(0, "abc", None)
    assert body == {
        "connectionId": "abc",
        "negotiateVersion": 0,
        "availableTransports": negotiate.TRANSPORTS,
        "useStatefulReconnect": False,
    }
    # Even a token passed by mistake must not leak into a version-0 body.
    assert "connectionToken" not in negotiate.build_response(0, "abc", "secret")


def test_version_1_carries_a_distinct_token() -> None:
    connection_id, token = negotiate.new_connection_id(), negotiate.new_connection_id()
    body = negotiate.build_response(1, connection_id, token, stateful_reconnect=True)
    assert body["connectionToken"] == token != body["connectionId"]
    assert body["negotiateVersion"] == 1 and body["useStatefulReconnect"] is True
    assert "ProtocolVersion" not in body
    with pytest.raises(ValueError):
        negotiate.build_response(1, connection_id, None)
    with pytest.raises(ValueError):
        negotiate.build_response(2, connection_id, token)


def test_transport_order_and_formats() -> None:
    body = negotiate.build_response(0, "abc", None)
    assert [t["transport"] for t in body["availableTransports"]] == [
        "WebSockets",
        "ServerSentEvents",
        "LongPolling",
    ]
    assert [t["transferFormats"] for t in body["availableTransports"]] == [
        ["Text", "Binary"],
        ["Text"],
        ["Text", "Binary"],
    ]
    body["availableTransports"][0]["transferFormats"].clear()  # a copy, not the constant
    assert negotiate.TRANSPORTS[0]["transferFormats"] == ["Text", "Binary"]
    only_ws = [{"transport": "WebSockets", "transferFormats": ["Text"]}]
    assert negotiate.build_response(0, "a", None, only_ws)["availableTransports"] == only_ws


def test_error_response() -> None:
    assert negotiate.error_response("no") == {"error": "no"}


# -- negotiate: the client's reading -------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("stateful", [False, True])
def test_parse_response_round_trips_build_response(version: int, stateful: bool) -> None:
    body = negotiate.build_response(version, "the-id", "the-token", stateful_reconnect=stateful)
    result = negotiate.parse_response(body)
    assert result.version == version
    assert result.connection_id == "the-id"
    assert result.connection_token == ("the-token" if version else "the-id")
    assert result.transports == negotiate.TRANSPORTS
    assert result.stateful_reconnect is stateful
    assert not result.is_redirect
    assert negotiate.connection_url_id(result) == ("the-token" if version else "the-id")


def test_missing_version_is_version_0() -> None:
    result = negotiate.parse_response({"connectionId": "x", "availableTransports": []})
    assert result.version == 0 and negotiate.connection_url_id(result) == "x"


def test_redirect() -> None:
    result = negotiate.parse_response({"url": "http://elsewhere/hub", "accessToken": "t"})
    assert result == NegotiateResult(url="http://elsewhere/hub", access_token="t")
    assert result.is_redirect
    with pytest.raises(NegotiateError):
        negotiate.connection_url_id(result)


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"error": "Negotiate failed."},
        {"ProtocolVersion": "1.5", "ConnectionId": "x"},
        {"connectionId": "", "negotiateVersion": 0, "availableTransports": []},
        {"negotiateVersion": 0, "availableTransports": []},
        {"connectionId": "x", "negotiateVersion": 1, "availableTransports": []},
        {"connectionId": "x", "negotiateVersion": "1", "availableTransports": []},
        {"connectionId": "x", "negotiateVersion": True, "availableTransports": []},
        {"connectionId": "x", "negotiateVersion": 0},
        {"connectionId": "x", "availableTransports": [{"transport": "WebSockets"}]},
        {"connectionId": "x", "availableTransports": [], "useStatefulReconnect": "yes"},
        {"url": 5},
        {"url": "http://x", "accessToken": 5},
    ],
)
def test_parse_response_rejects(body: Any) -> None:
    with pytest.raises(NegotiateError):
        negotiate.parse_response(body)


def test_error_text_is_kept() -> None:
    with pytest.raises(NegotiateError, match="^Negotiate failed.$"):
        negotiate.parse_response({"error": "Negotiate failed."})
