"""MessagePack hub protocol: VarInt prefixes, array layouts, round trips and hostile input."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit_core.signalr import msgpack_protocol as mp
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
from tests.protocol.strategies import hub_messages, msgpack_values, roundtrip_form

SIZE_TEXT = (
    "The maximum message size of {}B was exceeded. "
    "The message size can be configured in AddHubOptions."
)


def frame(array: Any) -> bytes:
    payload = msgpack.packb(array, use_bin_type=True)
    return mp.encode_varint(len(payload)) + payload


def payload_of(message: Any) -> list[Any]:
    data = mp.encode(message)
    length, offset = mp.decode_varint(data)
    assert offset + length == len(data)
    return msgpack.unpackb(data[offset:], raw=False)


def split_all(data: bytes, cuts: list[int], max_size: int | None = None) -> list[bytes]:
    buffer = bytearray()
    payloads: list[bytes] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        buffer += data[previous:cut]
        previous = cut
        payloads.extend(mp.split_records(buffer, max_size))
    assert buffer == b""
    return payloads


# -- VarInt --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16_384, b"\x80\x80\x01"),
        (2**31 - 1, b"\xff\xff\xff\xff\x07"),
    ],
)
def test_varint_edges(value: int, encoded: bytes) -> None:
    assert mp.encode_varint(value) == encoded
    assert mp.decode_varint(encoded) == (value, len(encoded))
    assert mp.decode_varint(b"zz" + encoded + b"tail", 2) == (value, 2 + len(encoded))


@pytest.mark.parametrize("value", [-1, 2**31])
def test_varint_encode_refuses_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        mp.encode_varint(value)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff\xff"])
def test_varint_incomplete(data: bytes) -> None:
    assert mp.decode_varint(data) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff\xff\x01",  # six bytes
        b"\x80\x80\x80\x80\x80",  # a fifth byte that still says "more"
        b"\xff\xff\xff\xff\x08",  # 2**31: five bytes, but over 2 GB
    ],
)
def test_varint_too_long_or_too_big(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        mp.decode_varint(data)


@given(st.integers(0, 2**31 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = mp.encode_varint(value)
    assert len(encoded) <= 5
    assert mp.decode_varint(encoded) == (value, len(encoded))


# -- layouts -------------------------------------------------------------------------------------
def test_ping_is_exactly_0x91_0x06() -> None:
    assert mp.encode(Ping()) == b"\x02\x91\x06"


def test_invocation_always_has_six_elements() -> None:
    assert payload_of(Invocation("Send", [1])) == [1, {}, None, "Send", [1], []]
    assert payload_of(Invocation("Send", [], "3", ["s"], {"h": "v"})) == [
        1,
        {"h": "v"},
        "3",
        "Send",
        [],
        ["s"],
    ]
    # The empty headers map is the single byte 0x80, right after the type.
    assert mp.encode(Invocation("T"))[1:4] == b"\x96\x01\x80"


def test_other_layouts() -> None:
    assert payload_of(StreamInvocation("1", "Count", [2])) == [4, {}, "1", "Count", [2], []]
    assert payload_of(StreamItem("1", b"\x00")) == [2, {}, "1", b"\x00"]
    assert payload_of(CancelInvocation("1")) == [5, {}, "1"]
    assert payload_of(Close()) == [7, None, False]
    assert payload_of(Close("bye", True)) == [7, "bye", True]
    assert payload_of(Ack(5)) == [8, 5]
    assert payload_of(Sequence(6)) == [9, 6]


def test_completion_result_kinds() -> None:
    assert payload_of(Completion("1", error="boom")) == [3, {}, "1", 1, "boom"]
    assert payload_of(Completion("1")) == [3, {}, "1", 2]
    assert payload_of(Completion("1", result=None)) == [3, {}, "1", 3, None]
    assert payload_of(Completion("1", result=7)) == [3, {}, "1", 3, 7]
    assert mp.decode(msgpack.packb([3, {}, "1", 1, "boom"])) == Completion("1", error="boom")
    assert mp.decode(msgpack.packb([3, {}, "1", 2])).result is NO_RESULT
    assert mp.decode(msgpack.packb([3, {}, "1", 3, None])) == Completion("1", result=None)


def test_five_element_invocation_and_two_element_close_decode() -> None:
    """The TS client and pysignalr leave out streamIds; the TS client writes [7, nil]."""
    assert mp.decode(msgpack.packb([1, {}, None, "Send", ["a"]])) == Invocation("Send", ["a"])
    assert mp.decode(msgpack.packb([1, {"k": "v"}, "4", "Send", []])) == Invocation(
        "Send", [], invocation_id="4", headers={"k": "v"}
    )
    assert mp.decode(msgpack.packb([4, {}, "4", "Count", []])) == StreamInvocation("4", "Count", [])
    assert mp.decode(msgpack.packb([7, None])) == Close()
    assert mp.decode(msgpack.packb([7, "x", True])) == Close("x", True)


def test_binary_arguments_come_back_as_bytes() -> None:
    message = Invocation("Upload", [b"\x00\xff", {"blob": b"x"}])
    assert mp.decode(mp.encode(message)[1:]) == message


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgpack.packb([6]) + b"\x00",  # trailing bytes after the array
        b"\x92\x01",  # truncated array
        msgpack.packb({"type": 6}),
        msgpack.packb(6),
        msgpack.packb([]),
        msgpack.packb([42]),
        msgpack.packb([0]),
        msgpack.packb(["6"]),
        msgpack.packb([True]),
        msgpack.packb([6, {}]),
        msgpack.packb([1, {}, None, "T"]),
        msgpack.packb([1, {}, None, "T", [], [], 1]),
        msgpack.packb([1, None, None, "T", []]),
        msgpack.packb([1, {"a": 1}, None, "T", []]),
        msgpack.packb([1, {1: "a"}, None, "T", []]),
        msgpack.packb([1, {}, 5, "T", []]),
        msgpack.packb([1, {}, "", "T", []]),
        msgpack.packb([1, {}, None, "", []]),
        msgpack.packb([1, {}, None, b"T", []], use_bin_type=True),
        msgpack.packb([1, {}, None, "T", {}]),
        msgpack.packb([1, {}, None, "T", [], [1]]),
        msgpack.packb([2, {}, "1"]),
        msgpack.packb([2, {}, None, 1]),
        msgpack.packb([3, {}, "1", 4, 1]),
        msgpack.packb([3, {}, "1", 2, 1]),
        msgpack.packb([3, {}, "1", 3]),
        msgpack.packb([3, {}, "1", 1, 5]),
        msgpack.packb([3, {}, "1", True, "e"]),
        msgpack.packb([4, {}, None, "T", []]),
        msgpack.packb([5, {}]),
        msgpack.packb([7, 5, True]),
        msgpack.packb([7, None, 1]),
        msgpack.packb([7]),
        msgpack.packb([8, "1"]),
        msgpack.packb([8, -1]),
        msgpack.packb([9, 1.0]),
        msgpack.packb([9, 1, 2]),
        b"\x81\x91\x01\x02",  # map with an array key: unhashable
        b"\x91" * 100_000 + b"\x06",  # nesting deeper than the unpacker's stack
        b"\x92\x06\xa1\xff",  # invalid UTF-8 in a str
        b"\x92\x06\xd6\xff\x00",  # truncated timestamp extension
    ],
)
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        mp.decode(payload)


def test_unknown_type_text() -> None:
    with pytest.raises(ProtocolError, match="Unknown message type: 42"):
        mp.decode(msgpack.packb([42]))


# -- framing -------------------------------------------------------------------------------------
def test_split_keeps_an_incomplete_tail() -> None:
    data = mp.encode(Ping()) + mp.encode(Ack(1))
    buffer = bytearray(data + b"\x05\x95")
    assert mp.split_records(buffer, None) == [b"\x91\x06", b"\x92\x08\x01"]
    assert buffer == b"\x05\x95"
    buffer[:] = b"\x80"  # half a prefix
    assert mp.split_records(buffer, None) == []
    assert buffer == b"\x80"


def test_zero_length_payload_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        mp.split_records(bytearray(b"\x00"), None)


def test_bad_prefix_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        mp.split_records(bytearray(b"\xff\xff\xff\xff\xff\x01"), None)


def test_oversized_declared_length_fails_as_soon_as_the_prefix_is_read() -> None:
    buffer = bytearray(mp.encode_varint(2**31 - 1))
    with pytest.raises(ProtocolError) as caught:
        mp.split_records(buffer, 32 * 1024)
    assert caught.value.message == SIZE_TEXT.format(32 * 1024)


def test_size_limit_counts_the_prefix_like_asp() -> None:
    data = mp.encode(Ping())  # 1 prefix byte + 2 payload bytes
    assert mp.split_records(bytearray(data), 3) == [b"\x91\x06"]
    with pytest.raises(ProtocolError) as caught:
        mp.split_records(bytearray(data), 2)
    assert caught.value.message == SIZE_TEXT.format(2)


# -- properties ----------------------------------------------------------------------------------
@settings(max_examples=200)
@given(hub_messages(msgpack_values))
def test_round_trip(message: Any) -> None:
    payloads = mp.split_records(bytearray(mp.encode(message)), None)
    assert len(payloads) == 1
    assert mp.decode(payloads[0]) == roundtrip_form(message, "messagepack")


@settings(max_examples=100)
@given(st.lists(hub_messages(msgpack_values), min_size=1, max_size=6), st.data())
def test_concatenated_and_chunked(messages: list[Any], data: st.DataObject) -> None:
    stream = b"".join(mp.encode(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    whole = [mp.decode(p) for p in mp.split_records(bytearray(stream), None)]
    chunked = [mp.decode(p) for p in split_all(stream, cuts)]
    assert whole == chunked == [roundtrip_form(m, "messagepack") for m in messages]


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_protocol_error(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        mp.decode(payload)


_small = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 4) | st.text(max_size=2) | st.binary(max_size=2),
    lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=2), c, max_size=2),
    max_leaves=3,
)


@settings(max_examples=300)
@given(
    st.lists(st.integers(-1, 10), min_size=1, max_size=1),
    st.lists(_small | st.dictionaries(st.text(max_size=2), st.text(max_size=2)), max_size=6),
)
def test_arbitrary_arrays_raise_only_protocol_error(head: list[int], rest: list[Any]) -> None:
    """Near-miss messages: a plausible type followed by any values."""
    try:
        message = mp.decode(msgpack.packb(head + rest, use_bin_type=True))
    except ProtocolError:
        return
    # Whatever is accepted re-encodes to something that decodes to the same message.
    (again,) = mp.split_records(bytearray(mp.encode(message)), None)
    assert mp.decode(again) == roundtrip_form(message, "messagepack")


@settings(max_examples=200)
@given(st.binary(max_size=64), st.none() | st.integers(1, 16))
def test_split_records_raises_only_protocol_error(data: bytes, max_size: int | None) -> None:
    buffer = bytearray(data)
    try:
        payloads = mp.split_records(buffer, max_size)
    except ProtocolError:
        return
    assert all(payloads)
    assert data.endswith(bytes(buffer))
    assert sum(len(p) for p in payloads) + len(payloads) + len(buffer) <= len(data)
