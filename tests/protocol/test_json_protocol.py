"""JSON hub protocol: exact wire shapes, round trips, framing and hostile input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit_core.signalr import json_protocol
from conduit_core.signalr.errors import ProtocolError
from conduit_core.signalr.messages import (
    NO_RESULT,
    Ack,
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)
from tests.protocol.strategies import hub_messages, json_values, roundtrip_form

RS = b"\x1e"
SIZE_TEXT = (
    "The maximum message size of {}B was exceeded. "
    "The message size can be configured in AddHubOptions."
)


def split_all(data: bytes, cuts: list[int], max_size: int | None = None) -> list[bytes]:
    """Feed ``data`` to split_records in chunks cut at ``cuts``; every record, in order."""
    buffer = bytearray()
    records: list[bytes] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        buffer += data[previous:cut]
        previous = cut
        records.extend(json_protocol.split_records(buffer, max_size))
    assert buffer == b""
    return records


def wire(obj: Any) -> bytes:
    return json.dumps(obj).encode() + RS


# -- exact shapes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Ping(), b'{"type":6}'),
        (Completion("1", error="boom"), b'{"type":3,"invocationId":"1","error":"boom"}'),
        (Completion("1"), b'{"type":3,"invocationId":"1"}'),
        (Completion("1", result=None), b'{"type":3,"invocationId":"1","result":null}'),
        (Completion("1", result=[1, "a"]), b'{"type":3,"invocationId":"1","result":[1,"a"]}'),
        (Invocation("Send", [1, "x"]), b'{"type":1,"target":"Send","arguments":[1,"x"]}'),
        (Invocation("Send"), b'{"type":1,"target":"Send","arguments":[]}'),
        (
            Invocation("Send", [], invocation_id="7", stream_ids=["s"], headers={"a": "b"}),
            b'{"type":1,"headers":{"a":"b"},"invocationId":"7","target":"Send",'
            b'"arguments":[],"streamIds":["s"]}',
        ),
        (
            Invocation("Send", stream_ids=[], headers={}),
            b'{"type":1,"target":"Send","arguments":[]}',
        ),
        (
            StreamInvocation("2", "Count", [3]),
            b'{"type":4,"invocationId":"2","target":"Count","arguments":[3]}',
        ),
        (StreamItem("2", None), b'{"type":2,"invocationId":"2","item":null}'),
        (CancelInvocation("2"), b'{"type":5,"invocationId":"2"}'),
        (Close(), b'{"type":7}'),
        (
            Close(error="bye", allow_reconnect=True),
            b'{"type":7,"error":"bye","allowReconnect":true}',
        ),
        (Close(allow_reconnect=False), b'{"type":7,"allowReconnect":false}'),
        (Ack(3), b'{"type":8,"sequenceId":3}'),
        (Sequence(4), b'{"type":9,"sequenceId":4}'),
    ],
)
def test_exact_wire_shape(message: Any, expected: bytes) -> None:
    assert json_protocol.encode(message) == expected + RS


def test_text_is_raw_utf8_and_a_separator_in_a_string_is_escaped() -> None:
    data = json_protocol.encode(Invocation("Send", ["é\x1e"]))
    assert "é".encode() in data
    assert data.count(RS) == 1 and data.endswith(RS)
    assert json_protocol.decode(data[:-1]) == Invocation("Send", ["é\x1e"])


def test_nan_is_never_written() -> None:
    with pytest.raises(ValueError):
        json_protocol.encode(Invocation("Send", [float("nan")]))


# -- decoding specifics --------------------------------------------------------------------------
def test_null_result_absent_result_and_null_error() -> None:
    decode = json_protocol.decode
    assert decode(b'{"type":3,"invocationId":"1","result":null}').result is None
    assert decode(b'{"type":3,"invocationId":"1"}').result is NO_RESULT
    # ASP reads error with ReadAsString: null is the same as absent.
    assert decode(b'{"type":3,"invocationId":"1","error":null,"result":2}') == Completion(
        "1", result=2
    )


def test_unknown_properties_are_ignored() -> None:
    record = b'{"type":1,"target":"T","arguments":[],"extra":{"x":1},"invocationId":"9"}'
    assert json_protocol.decode(record) == Invocation("T", [], invocation_id="9")
    assert json_protocol.decode(b'{"type":6,"foo":1}') == Ping()


def test_empty_headers_and_stream_ids_decode_as_none() -> None:
    record = b'{"type":1,"target":"T","arguments":[],"headers":{},"streamIds":[]}'
    assert json_protocol.decode(record) == Invocation("T", [])


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (b'{"type":42}', "Unknown message type: 42"),
        (b'{"type":0}', "Unknown message type: 0"),
        (b'{"target":"x"}', "'type'"),
        (b'{"type":"1"}', "'type'"),
        (b'{"type":true}', "'type'"),
        (b'{"type":1.0}', "'type'"),
        (b'{"type":1,"arguments":[]}', "'target'"),
        (b'{"type":1,"target":"","arguments":[]}', "'target'"),
        (b'{"type":1,"target":5,"arguments":[]}', "'target'"),
        (b'{"type":1,"target":"T"}', "'arguments'"),
        (b'{"type":1,"target":"T","arguments":{}}', "'arguments'"),
        (b'{"type":1,"target":"T","arguments":[],"invocationId":null}', "'invocationId'"),
        (b'{"type":1,"target":"T","arguments":[],"invocationId":7}', "'invocationId'"),
        (b'{"type":1,"target":"T","arguments":[],"headers":{"a":1}}', "'headers'"),
        (b'{"type":1,"target":"T","arguments":[],"headers":null}', "'headers'"),
        (b'{"type":1,"target":"T","arguments":[],"streamIds":[1]}', "'streamIds'"),
        (b'{"type":2,"invocationId":"1"}', "'item'"),
        (b'{"type":3}', "'invocationId'"),
        (b'{"type":3,"invocationId":"1","result":1,"error":"e"}', "mutually exclusive"),
        (b'{"type":3,"invocationId":"1","error":5}', "'error'"),
        (b'{"type":4,"target":"T","arguments":[]}', "'invocationId'"),
        (b'{"type":5,"invocationId":""}', "'invocationId'"),
        (b'{"type":7,"allowReconnect":"yes"}', "'allowReconnect'"),
        (b'{"type":8}', "'sequenceId'"),
        (b'{"type":8,"sequenceId":true}', "'sequenceId'"),
        (b'{"type":9,"sequenceId":1.5}', "'sequenceId'"),
        (b'{"type":9,"sequenceId":-1}', "'sequenceId'"),
        (b"[6]", "JSON object"),
        (b'"x"', "JSON object"),
        (b"{", "JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        ('{"type":6}'.encode("utf-16"), "UTF-8"),
        (b'\xef\xbb\xbf{"type":6}', "JSON"),
        (b'{"type":1,"target":"T","arguments":[NaN]}', "JSON"),
        (b'{"type":1,"target":"T","arguments":[1e999]}', "JSON"),
        (b'{"type":1,"target":"T","arguments":["\\ud800"]}', "surrogate"),
        (b'{"type":1,"target":"T","arguments":[{"\\udfff":1}]}', "surrogate"),
        (b"[" * 50_000 + b"]" * 50_000, "JSON"),
        (b'{"type":1' + b"9" * 5000 + b"}", "JSON"),
    ],
)
def test_malformed_records(record: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        json_protocol.decode(record)
    assert fragment in caught.value.message


def test_a_valid_surrogate_pair_escape_is_fine() -> None:
    record = b'{"type":1,"target":"T","arguments":["\\ud83d\\ude00"]}'
    assert json_protocol.decode(record).arguments == ["\U0001f600"]


# -- framing -------------------------------------------------------------------------------------
def test_split_keeps_an_incomplete_tail() -> None:
    buffer = bytearray(b'{"type":6}\x1e{"type":6}\x1e{"ty')
    assert json_protocol.split_records(buffer, None) == [b'{"type":6}', b'{"type":6}']
    assert buffer == b'{"ty'
    buffer += b'pe":6}\x1e'
    assert json_protocol.split_records(buffer, None) == [b'{"type":6}']
    assert buffer == b""


def test_empty_record_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        json_protocol.split_records(bytearray(b'{"type":6}\x1e\x1e'), None)
    with pytest.raises(ProtocolError):
        json_protocol.split_records(bytearray(b"\x1e"), None)


def test_size_limit_counts_the_separator_like_asp() -> None:
    record = b'{"type":6}'  # 10 bytes, 11 framed
    assert json_protocol.split_records(bytearray(record + RS), 11) == [record]
    with pytest.raises(ProtocolError) as caught:
        json_protocol.split_records(bytearray(record + RS), 10)
    assert caught.value.message == SIZE_TEXT.format(10)


def test_an_oversized_tail_fails_before_its_separator_arrives() -> None:
    buffer = bytearray(b"x" * 100)
    assert json_protocol.split_records(buffer, 100) == []
    buffer += b"x"
    with pytest.raises(ProtocolError) as caught:
        json_protocol.split_records(buffer, 100)
    assert caught.value.message == SIZE_TEXT.format(100)


# -- properties ----------------------------------------------------------------------------------
@settings(max_examples=300)
@given(hub_messages(json_values))
def test_round_trip(message: Any) -> None:
    data = json_protocol.encode(message)
    records = json_protocol.split_records(bytearray(data), None)
    assert len(records) == 1
    assert json_protocol.decode(records[0]) == roundtrip_form(message, "json")


@settings(max_examples=100)
@given(st.lists(hub_messages(json_values), min_size=1, max_size=6), st.data())
def test_concatenated_and_chunked(messages: list[Any], data: st.DataObject) -> None:
    stream = b"".join(json_protocol.encode(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    whole = [json_protocol.decode(r) for r in json_protocol.split_records(bytearray(stream), None)]
    chunked = [json_protocol.decode(r) for r in split_all(stream, cuts)]
    assert whole == chunked == [roundtrip_form(m, "json") for m in messages]


@settings(max_examples=300)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_raise_only_protocol_error(record: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        json_protocol.decode(record)


_small = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.floats(allow_nan=False)
    | st.text(max_size=2),
    lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=2), c, max_size=2),
    max_leaves=3,
)
_FIELDS = {
    "type": st.integers(-1, 10) | _small,
    "invocationId": _small,
    "target": _small,
    "arguments": _small,
    "streamIds": _small | st.lists(st.text(max_size=2), max_size=2),
    "headers": _small | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
    "item": _small,
    "result": _small,
    "error": _small,
    "allowReconnect": _small,
    "sequenceId": _small,
}


@settings(max_examples=250)
@given(st.fixed_dictionaries({}, optional=_FIELDS))
def test_arbitrary_objects_raise_only_protocol_error(obj: dict[str, Any]) -> None:
    """Near-miss messages: the right property names with any JSON values in them."""
    try:
        message = json_protocol.decode(json.dumps(obj).encode())
    except ProtocolError:
        return
    # Whatever is accepted re-encodes to something that decodes to the same message.
    assert json_protocol.decode(json_protocol.encode(message)[:-1]) == message


@settings(max_examples=200)
@given(st.binary(max_size=64), st.none() | st.integers(1, 16))
def test_split_records_raises_only_protocol_error(data: bytes, max_size: int | None) -> None:
    buffer = bytearray(data)
    try:
        records = json_protocol.split_records(buffer, max_size)
    except ProtocolError:
        return
    assert all(records) and RS not in buffer
    assert b"".join(r + RS for r in records) + buffer == data
