"""The SignalR JSON hub protocol: one UTF-8 JSON object per record, each ended by 0x1E.

Sending follows the strictest real client (signalr-protocol.md §3 "Strictness"): the TS client
throws on ``"invocationId": null`` and pysignalr builds dataclasses from ``**kwargs``, so an absent
optional field is *left out*, never written as null, and no key outside the spec is ever written.

Receiving is strict about types (every bad record raises :class:`ProtocolError`, nothing else) and
lenient only where the spec or ASP is: unknown properties are ignored (SPEC HubProtocol) and a null
``error`` counts as absent (ASP reads it with ``ReadAsString``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.messages import (
    NO_RESULT,
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

# The record separator that ends every JSON message (and every handshake, in both protocols).
RECORD_SEPARATOR = 0x1E
RECORD_SEPARATOR_BYTES = b"\x1e"


def size_exceeded(max_message_size: int) -> ProtocolError:
    """ASP's exact text (HubConnectionHandler.DispatchMessagesAsync), shared by both codecs."""
    return ProtocolError(
        f"The maximum message size of {max_message_size}B was exceeded. "
        "The message size can be configured in AddHubOptions."
    )


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def encode(message: HubMessage) -> bytes:
    """One record: compact JSON, UTF-8 (not \\u-escaped), then 0x1E.

    ``json.dumps`` escapes every control character, so a 0x1E inside a string can never end the
    record early. NaN and infinities raise ``ValueError``: they are not JSON and the TS client's
    ``JSON.parse`` rejects them.
    """
    text = json.dumps(to_dict(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + RECORD_SEPARATOR_BYTES


def to_dict(message: HubMessage) -> dict[str, Any]:
    """The JSON object for ``message``, in ASP's property order, optional fields left out."""
    out: dict[str, Any] = {"type": int(message.type)}
    match message:
        case Invocation():
            _put_headers(out, message.headers)
            if message.invocation_id is not None:
                out["invocationId"] = message.invocation_id
            out["target"] = message.target
            out["arguments"] = list(message.arguments)
            if message.stream_ids:
                out["streamIds"] = list(message.stream_ids)
        case StreamInvocation():
            _put_headers(out, message.headers)
            out["invocationId"] = message.invocation_id
            out["target"] = message.target
            out["arguments"] = list(message.arguments)
            if message.stream_ids:
                out["streamIds"] = list(message.stream_ids)
        case StreamItem():
            # The TS client requires ``item`` to be present, even when it is null.
            _put_headers(out, message.headers)
            out["invocationId"] = message.invocation_id
            out["item"] = message.item
        case Completion():
            # ``result`` or ``error``, never both (SPEC); neither means a void result.
            _put_headers(out, message.headers)
            out["invocationId"] = message.invocation_id
            if message.error is not None:
                out["error"] = message.error
            elif message.has_result:
                out["result"] = message.result
        case CancelInvocation():
            _put_headers(out, message.headers)
            out["invocationId"] = message.invocation_id
        case Ping():
            pass
        case Close():
            if message.error is not None:
                out["error"] = message.error
            if message.allow_reconnect is not None:
                out["allowReconnect"] = message.allow_reconnect
        case Ack() | Sequence():
            out["sequenceId"] = message.sequence_id
        case _:
            raise TypeError(f"not a hub message: {message!r}")
    return out


def _put_headers(out: dict[str, Any], headers: dict[str, str] | None) -> None:
    if headers:
        out["headers"] = dict(headers)


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------
def split_records(buffer: bytearray, max_message_size: int | None) -> list[bytes]:
    """Remove every complete record from the front of ``buffer``; return them without 0x1E.

    An incomplete tail stays in ``buffer`` for the next call. The size limit counts the
    separator, as ASP does: it hands the parser a window of ``max_message_size`` bytes and fails
    when no whole framed message fits in it. A tail already longer than the limit fails at once.
    An empty record (``\\x1e\\x1e``) is an error: no SignalR message is empty.
    """
    records: list[bytes] = []
    start = 0
    while True:
        end = buffer.find(RECORD_SEPARATOR, start)
        if end < 0:
            break
        if max_message_size is not None and end + 1 - start > max_message_size:
            raise size_exceeded(max_message_size)
        if end == start:
            raise ProtocolError("Empty message: a record separator with no JSON before it.")
        records.append(bytes(buffer[start:end]))
        start = end + 1
    del buffer[:start]
    if max_message_size is not None and len(buffer) > max_message_size:
        raise size_exceeded(max_message_size)
    return records


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
# A \u escape of a UTF-16 surrogate (D800-DFFF). Only records containing one need the slow walk
# that rejects lone surrogates; see _reject_lone_surrogates.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_json_object(record: bytes, what: str) -> dict[str, Any]:
    """Strictly parse ``record`` (UTF-8 JSON, no BOM) into a dict, or raise ProtocolError.

    Shared with the handshake parser. Strictness beyond Python's ``json``, following
    System.Text.Json which ASP uses: the bytes must be UTF-8 (``json.loads`` would sniff
    UTF-16/32), ``NaN``/``Infinity`` and numbers overflowing a double are rejected, and so are
    strings holding a lone surrogate (they could not be re-encoded as UTF-8 when echoed back).
    """
    try:
        text = record.decode("utf-8")
        if text.startswith("\ufeff"):  # what json.loads says; the decoder alone would not check
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError are both
        raise ProtocolError(f"Invalid {what}: not a UTF-8 JSON document ({exc}).") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"Invalid {what}: expected a JSON object.")
    if _SURROGATE_ESCAPE.search(record):
        _reject_lone_surrogates(value, what)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} overflows a double")
    return number


# One strict decoder for every record: json.loads(text, parse_constant=..., parse_float=...) would
# build a new JSONDecoder (and its scanner) on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_lone_surrogates(value: Any, what: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError(f"Invalid {what}: a string holds a lone surrogate.") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decode(record: bytes) -> HubMessage:
    """Parse one record (without its 0x1E) into a message; any fault raises ProtocolError."""
    obj = load_json_object(record, "hub message")
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError("Missing required property 'type'.")
    if not _is_int(kind):
        raise ProtocolError("Expected 'type' to be of type Integer.")
    reader = _READERS.get(kind)
    if reader is None:
        raise ProtocolError(f"Unknown message type: {kind}")
    return reader(obj)


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int; they are not numbers on the wire.
    return isinstance(value, int) and not isinstance(value, bool)


def _required_str(obj: dict[str, Any], key: str) -> str:
    """A required non-empty string: the TS client rejects empty targets and invocation ids."""
    if key not in obj:
        raise ProtocolError(f"Missing required property '{key}'.")
    value = obj[key]
    if not isinstance(value, str):
        raise ProtocolError(f"Expected '{key}' to be of type String.")
    if not value:
        raise ProtocolError(f"Property '{key}' must not be empty.")
    return value


def _optional_invocation_id(obj: dict[str, Any]) -> str | None:
    # Only an Invocation may leave it out (non-blocking). When present it must be a string:
    # a null id is what the TS client itself throws on, so we do not accept it either.
    if "invocationId" not in obj:
        return None
    return _required_str(obj, "invocationId")


def _arguments(obj: dict[str, Any]) -> list[Any]:
    if "arguments" not in obj:
        raise ProtocolError("Missing required property 'arguments'.")
    value = obj["arguments"]
    if not isinstance(value, list):
        raise ProtocolError("Expected 'arguments' to be of type Array.")
    return value


def _stream_ids(obj: dict[str, Any]) -> list[str] | None:
    """``None`` when absent or empty: the canonical form of "no upload streams"."""
    if "streamIds" not in obj:
        return None
    value = obj["streamIds"]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ProtocolError("Expected 'streamIds' to be an Array of Strings.")
    return value or None


def _headers(obj: dict[str, Any]) -> dict[str, str] | None:
    """``None`` when absent or empty: the canonical form of "no headers"."""
    if "headers" not in obj:
        return None
    value = obj["headers"]
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ProtocolError("Expected 'headers' to be an Object of String values.")
    return value or None


def _optional_error(obj: dict[str, Any]) -> str | None:
    value = obj.get("error")
    if value is not None and not isinstance(value, str):
        raise ProtocolError("Expected 'error' to be of type String.")
    return value


def _sequence_id(obj: dict[str, Any]) -> int:
    if "sequenceId" not in obj:
        raise ProtocolError("Missing required property 'sequenceId'.")
    value = obj["sequenceId"]
    if not _is_int(value) or value < 0:
        raise ProtocolError("Expected 'sequenceId' to be a non-negative Integer.")
    return value


def _read_invocation(obj: dict[str, Any]) -> Invocation:
    return Invocation(
        target=_required_str(obj, "target"),
        arguments=_arguments(obj),
        invocation_id=_optional_invocation_id(obj),
        stream_ids=_stream_ids(obj),
        headers=_headers(obj),
    )


def _read_stream_item(obj: dict[str, Any]) -> StreamItem:
    if "item" not in obj:
        raise ProtocolError("Missing required property 'item'.")
    return StreamItem(
        invocation_id=_required_str(obj, "invocationId"), item=obj["item"], headers=_headers(obj)
    )


def _read_completion(obj: dict[str, Any]) -> Completion:
    invocation_id = _required_str(obj, "invocationId")
    error = _optional_error(obj)
    has_result = "result" in obj
    if error is not None and has_result:
        raise ProtocolError("The 'error' and 'result' properties are mutually exclusive.")
    return Completion(
        invocation_id=invocation_id,
        result=obj["result"] if has_result else NO_RESULT,
        error=error,
        headers=_headers(obj),
    )


def _read_stream_invocation(obj: dict[str, Any]) -> StreamInvocation:
    return StreamInvocation(
        invocation_id=_required_str(obj, "invocationId"),
        target=_required_str(obj, "target"),
        arguments=_arguments(obj),
        stream_ids=_stream_ids(obj),
        headers=_headers(obj),
    )


def _read_cancel(obj: dict[str, Any]) -> CancelInvocation:
    return CancelInvocation(invocation_id=_required_str(obj, "invocationId"), headers=_headers(obj))


def _read_ping(obj: dict[str, Any]) -> Ping:
    return Ping()


def _read_close(obj: dict[str, Any]) -> Close:
    allow = obj.get("allowReconnect")
    if allow is not None and not isinstance(allow, bool):
        raise ProtocolError("Expected 'allowReconnect' to be of type Boolean.")
    return Close(error=_optional_error(obj), allow_reconnect=allow)


def _read_ack(obj: dict[str, Any]) -> Ack:
    return Ack(sequence_id=_sequence_id(obj))


def _read_sequence(obj: dict[str, Any]) -> Sequence:
    return Sequence(sequence_id=_sequence_id(obj))


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
