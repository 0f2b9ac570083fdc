"""The SignalR MessagePack hub protocol: ``[VarInt length][msgpack array]`` per message.

Array layouts follow SPEC HubProtocol and ASP's MessagePackHubProtocolWorker (signalr-protocol.md
§3 "Array layouts"). We always *write* what ASP writes (a 6-element Invocation, a 3-element
Close) and *accept* what the clients write (the TS client and pysignalr send 5-element
Invocations, the TS client sends ``[7, nil]``).

Decoded messages use the same canonical forms as the JSON codec, so the two are interchangeable
for callers: empty headers and empty stream id lists decode as ``None``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.json_protocol import size_exceeded
from conduit_core.signalr.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageType,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)

# A length prefix holds at most 5 VarInt bytes and at most 2**31 - 1: ASP's BinaryMessageParser
# refuses anything larger with "Messages over 2GB in size are not supported."
MAX_VARINT_BYTES = 5
MAX_LENGTH = 2**31 - 1

# Completion resultKind values (SPEC HubProtocol, MessagePack encoding).
RESULT_KIND_ERROR = 1
RESULT_KIND_VOID = 2
RESULT_KIND_VALUE = 3

# What msgpack's C and pure-Python unpackers raise on bad input: FormatError, StackError and
# ExtraData are ValueErrors; unhashable map keys (e.g. an array used as a key) are TypeErrors;
# OutOfData and friends derive from UnpackException.
_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException)


# ---------------------------------------------------------------------------------------------
# VarInt length prefix
# ---------------------------------------------------------------------------------------------
def encode_varint(n: int) -> bytes:
    """7 bits per byte, least significant group first, high bit = "more bytes follow"."""
    if not 0 <= n <= MAX_LENGTH:
        raise ValueError(f"length {n} cannot be a SignalR length prefix")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray, offset: int = 0) -> tuple[int, int] | None:
    """``(value, offset after the prefix)``, or ``None`` while the prefix is still incomplete."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            return None
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value > MAX_LENGTH:
                raise ProtocolError("Messages over 2GB in size are not supported.")
            return value, offset + i + 1
    raise ProtocolError("Messages over 2GB in size are not supported.")


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def encode(message: HubMessage) -> bytes:
    """Length prefix plus the msgpack array; ``use_bin_type`` so ``bytes`` travel as bin."""
    payload = msgpack.packb(to_array(message), use_bin_type=True)
    return encode_varint(len(payload)) + payload


def to_array(message: HubMessage) -> list[Any]:
    """The msgpack array for ``message``, exactly as ASP lays it out."""
    kind = int(message.type)
    match message:
        case Invocation() | StreamInvocation():
            # The same layout for both; always 6 elements: signalrcore reads element 5 of an
            # Invocation without checking the length.
            return [
                kind,
                _headers_out(message.headers),
                message.invocation_id,
                message.target,
                list(message.arguments),
                list(message.stream_ids or ()),
            ]
        case StreamItem():
            return [kind, _headers_out(message.headers), message.invocation_id, message.item]
        case Completion():
            head = [kind, _headers_out(message.headers), message.invocation_id]
            if message.error is not None:
                return [*head, RESULT_KIND_ERROR, message.error]
            if message.has_result:
                return [*head, RESULT_KIND_VALUE, message.result]
            return [*head, RESULT_KIND_VOID]
        case CancelInvocation():
            return [kind, _headers_out(message.headers), message.invocation_id]
        case Ping():
            return [kind]
        case Close():
            return [kind, message.error, bool(message.allow_reconnect)]
        case Ack() | Sequence():
            return [kind, message.sequence_id]
        case _:
            raise TypeError(f"not a hub message: {message!r}")


def _headers_out(headers: dict[str, str] | None) -> dict[str, str]:
    # The headers element is never nil on the wire: an empty map (0x80) when there are none.
    return dict(headers) if headers else {}


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------
def split_records(buffer: bytearray, max_message_size: int | None) -> list[bytes]:
    """Remove every complete ``[varint][payload]`` from the front of ``buffer``; return payloads.

    The size check runs as soon as a prefix is readable, before the payload arrives, so a peer
    cannot make us buffer a declared 2 GB message. Like ASP (which gives its parser a window of
    ``max_message_size`` bytes) the limit counts the prefix as well as the payload.
    """
    payloads: list[bytes] = []
    start = 0
    while start < len(buffer):
        prefix = decode_varint(buffer, start)
        if prefix is None:
            break
        length, body = prefix
        if max_message_size is not None and body - start + length > max_message_size:
            raise size_exceeded(max_message_size)
        if length == 0:
            raise ProtocolError("Empty message: a length prefix of 0.")
        if body + length > len(buffer):
            break
        payloads.append(bytes(buffer[body : body + length]))
        start = body + length
    del buffer[:start]
    return payloads


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def decode(payload: bytes) -> HubMessage:
    """Parse one payload (without its length prefix); any fault raises ProtocolError."""
    try:
        array = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
    except _UNPACK_ERRORS as exc:
        raise ProtocolError(f"Invalid MessagePack hub message ({type(exc).__name__}).") from None
    if not isinstance(array, list):
        raise ProtocolError("Invalid MessagePack hub message: expected an array.")
    if not array:
        raise ProtocolError("Invalid MessagePack hub message: the array is empty.")
    kind = array[0]
    if not _is_int(kind):
        raise ProtocolError("Invalid MessagePack hub message: the message type is not an integer.")
    reader = _READERS.get(kind)
    if reader is None:
        raise ProtocolError(f"Unknown message type: {kind}")
    return reader(array)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect_length(array: list[Any], *allowed: int) -> None:
    if len(array) not in allowed:
        sizes = " or ".join(str(n) for n in allowed)
        raise ProtocolError(
            f"Invalid MessagePack message of type {array[0]}: expected {sizes} elements, "
            f"got {len(array)}."
        )


def _headers(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolError("Invalid MessagePack message: headers must be a map of strings.")
    return value or None


def _invocation_id(value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError("Invalid MessagePack message: the invocation id must be a string.")
    return value


def _target(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ProtocolError("Invalid MessagePack message: the target must be a string.")
    return value


def _arguments(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError("Invalid MessagePack message: the arguments must be an array.")
    return value


def _stream_ids(array: list[Any], index: int) -> list[str] | None:
    if len(array) <= index:
        return None
    value = array[index]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ProtocolError("Invalid MessagePack message: stream ids must be an array of strings.")
    return value or None


def _sequence_id(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise ProtocolError("Invalid MessagePack message: the sequence id must be an integer.")
    return value


def _read_invocation(a: list[Any]) -> Invocation:
    # 5 elements from the TS client and pysignalr when there are no streams; 6 from ASP.
    _expect_length(a, 5, 6)
    return Invocation(
        target=_target(a[3]),
        arguments=_arguments(a[4]),
        invocation_id=_invocation_id(a[2], optional=True),
        stream_ids=_stream_ids(a, 5),
        headers=_headers(a[1]),
    )


def _read_stream_item(a: list[Any]) -> StreamItem:
    _expect_length(a, 4)
    return StreamItem(invocation_id=_invocation_id(a[2]), item=a[3], headers=_headers(a[1]))


def _read_completion(a: list[Any]) -> Completion:
    _expect_length(a, 4, 5)
    headers, invocation_id, kind = _headers(a[1]), _invocation_id(a[2]), a[3]
    if not _is_int(kind):
        raise ProtocolError("Invalid MessagePack Completion: the result kind is not an integer.")
    if kind == RESULT_KIND_VOID:
        _expect_length(a, 4)
        return Completion(invocation_id=invocation_id, headers=headers)
    if kind == RESULT_KIND_VALUE:
        _expect_length(a, 5)
        return Completion(invocation_id=invocation_id, result=a[4], headers=headers)
    if kind == RESULT_KIND_ERROR:
        _expect_length(a, 5)
        if not isinstance(a[4], str):
            raise ProtocolError("Invalid MessagePack Completion: the error must be a string.")
        return Completion(invocation_id=invocation_id, error=a[4], headers=headers)
    raise ProtocolError("Invalid MessagePack Completion: invalid invocation result kind.")


def _read_stream_invocation(a: list[Any]) -> StreamInvocation:
    _expect_length(a, 5, 6)
    return StreamInvocation(
        invocation_id=_invocation_id(a[2]),
        target=_target(a[3]),
        arguments=_arguments(a[4]),
        stream_ids=_stream_ids(a, 5),
        headers=_headers(a[1]),
    )


def _read_cancel(a: list[Any]) -> CancelInvocation:
    _expect_length(a, 3)
    return CancelInvocation(invocation_id=_invocation_id(a[2]), headers=_headers(a[1]))


def _read_ping(a: list[Any]) -> Ping:
    _expect_length(a, 1)
    return Ping()


def _read_close(a: list[Any]) -> Close:
    # ASP writes [7, error, allowReconnect]; the TS client writes [7, nil].
    _expect_length(a, 2, 3)
    error = a[1]
    if error is not None and not isinstance(error, str):
        raise ProtocolError("Invalid MessagePack Close: the error must be a string or nil.")
    allow = a[2] if len(a) == 3 else None
    if allow is not None and not isinstance(allow, bool):
        raise ProtocolError("Invalid MessagePack Close: allowReconnect must be a boolean.")
    return Close(error=error, allow_reconnect=allow)


def _read_ack(a: list[Any]) -> Ack:
    _expect_length(a, 2)
    return Ack(sequence_id=_sequence_id(a[1]))


def _read_sequence(a: list[Any]) -> Sequence:
    _expect_length(a, 2)
    return Sequence(sequence_id=_sequence_id(a[1]))


_READERS = {
    MessageType.INVOCATION: _read_invocation,
    MessageType.STREAM_ITEM: _read_stream_item,
    MessageType.COMPLETION: _read_completion,
    MessageType.STREAM_INVOCATION: _read_stream_invocation,
    MessageType.CANCEL_INVOCATION: _read_cancel,
    MessageType.PING: _read_ping,
    MessageType.CLOSE: _read_close,
    MessageType.ACK: _read_ack,
    MessageType.SEQUENCE: _read_sequence,
}
