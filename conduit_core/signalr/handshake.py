"""The SignalR handshake: one JSON record each way, in both hub protocols.

The client opens with ``{"protocol": ..., "version": N}`` + 0x1E, even for MessagePack; the server
answers ``{}`` + 0x1E, or ``{"error": ...}`` + 0x1E and closes (signalr-protocol.md §3).
Records passed to the parsers are already split off, without their separator.
"""

from __future__ import annotations

import json

from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.json_protocol import RECORD_SEPARATOR_BYTES, load_json_object
from conduit_core.signalr.messages import HandshakeRequest, HandshakeResponse


def _dump(obj: dict[str, object]) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + RECORD_SEPARATOR_BYTES


def encode_request(request: HandshakeRequest) -> bytes:
    """``{"protocol":"json","version":1}`` + 0x1E."""
    return _dump({"protocol": request.protocol, "version": request.version})


def encode_response(response: HandshakeResponse) -> bytes:
    """``{}`` + 0x1E on success, ``{"error":"..."}`` + 0x1E on failure; never a ``type`` key."""
    if response.error is None:
        return _dump({})
    return _dump({"error": response.error})


def parse_request(record: bytes) -> HandshakeRequest:
    """The server's reading of the client's first record; ProtocolError for anything malformed.

    ``version`` must be a JSON integer (``true`` is not), as ASP's HandshakeProtocol reads it
    with ``GetInt32``; whether the protocol and version are *supported* is the connection's call.
    """
    obj = load_json_object(record, "handshake request")
    protocol = obj.get("protocol")
    if "protocol" not in obj:
        raise ProtocolError("Invalid handshake request: missing required property 'protocol'.")
    if not isinstance(protocol, str):
        raise ProtocolError("Invalid handshake request: expected 'protocol' to be a string.")
    if "version" not in obj:
        raise ProtocolError("Invalid handshake request: missing required property 'version'.")
    version = obj["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("Invalid handshake request: expected 'version' to be an integer.")
    return HandshakeRequest(protocol=protocol, version=version)


def parse_response(record: bytes) -> HandshakeResponse:
    """The client's reading of the server's handshake answer.

    A truthy ``type`` means the server sent a hub message where the handshake answer belongs;
    the TS client (HandshakeProtocol.ts) fails the start with this same text.
    """
    obj = load_json_object(record, "handshake response")
    if obj.get("type"):
        raise ProtocolError("Expected a handshake response from the server.")
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        raise ProtocolError("Invalid handshake response: expected 'error' to be a string.")
    return HandshakeResponse(error=error)
