"""Hypothesis strategies for SignalR hub messages, for any test that needs wire-valid traffic.

Every strategy produces messages in the *canonical* form the decoders return, so
``decode(encode(m)) == m`` holds without massaging:

* ``headers`` and ``stream_ids`` are ``None`` or non-empty (decoders turn empty into ``None``);
* ids and targets are non-empty strings (the TS client rejects empty ones; so do our decoders);
* values contain no NaN (NaN != NaN) and no infinities (not JSON);
* integers fit MessagePack (int64 / uint64).

The one codec difference is MessagePack's Close, which always carries ``allowReconnect``:
use :func:`roundtrip_form` to get what a codec gives back.

Import the building blocks (``json_values``, ``msgpack_values``) or the message strategies::

    from tests.protocol.strategies import hub_messages, msgpack_values
    @given(hub_messages(values=msgpack_values))
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from conduit_core.signalr.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HandshakeRequest,
    HandshakeResponse,
    HubMessage,
    Invocation,
    Ping,
    Sequence,
    StreamInvocation,
    StreamItem,
)

# MessagePack integers are int64 or uint64; JSON has no limit, so the shared range is theirs.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

# -- values --------------------------------------------------------------------------------------
scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN, INT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


json_values: st.SearchStrategy[Any] = st.recursive(scalars, _containers, max_leaves=8)
"""Any JSON value (objects with string keys), as ``json.loads`` returns it."""

msgpack_values: st.SearchStrategy[Any] = st.recursive(
    scalars | st.binary(max_size=16), _containers, max_leaves=8
)
"""JSON values plus ``bytes`` (MessagePack bin), as ``msgpack.unpackb(raw=False)`` returns them."""

# -- fields --------------------------------------------------------------------------------------
invocation_ids = st.text(min_size=1, max_size=12)
targets = st.text(min_size=1, max_size=16)
headers = st.none() | st.dictionaries(
    st.text(max_size=10), st.text(max_size=10), min_size=1, max_size=3
)
stream_id_lists = st.none() | st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3)
sequence_ids = st.integers(0, 2**63 - 1)
errors = st.text(max_size=30)


# -- messages ------------------------------------------------------------------------------------
def invocations(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Invocation]:
    return st.builds(
        Invocation,
        target=targets,
        arguments=st.lists(values, max_size=4),
        invocation_id=st.none() | invocation_ids,
        stream_ids=stream_id_lists,
        headers=headers,
    )


def stream_items(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[StreamItem]:
    return st.builds(StreamItem, invocation_id=invocation_ids, item=values, headers=headers)


def completions(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Completion]:
    """Void, value (``None`` included: a null result is not a void one) and error Completions."""
    return st.one_of(
        st.builds(Completion, invocation_id=invocation_ids, headers=headers),
        st.builds(Completion, invocation_id=invocation_ids, result=values, headers=headers),
        st.builds(Completion, invocation_id=invocation_ids, error=errors, headers=headers),
    )


def stream_invocations(
    values: st.SearchStrategy[Any] = json_values,
) -> st.SearchStrategy[StreamInvocation]:
    return st.builds(
        StreamInvocation,
        invocation_id=invocation_ids,
        target=targets,
        arguments=st.lists(values, max_size=4),
        stream_ids=stream_id_lists,
        headers=headers,
    )


cancel_invocations = st.builds(CancelInvocation, invocation_id=invocation_ids, headers=headers)
pings = st.just(Ping())
closes = st.builds(Close, error=st.none() | errors, allow_reconnect=st.none() | st.booleans())
acks = st.builds(Ack, sequence_id=sequence_ids)
sequences = st.builds(Sequence, sequence_id=sequence_ids)


def hub_messages(values: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[HubMessage]:
    """Any of the nine message types; pass ``values=msgpack_values`` for binary payloads."""
    return st.one_of(
        invocations(values),
        stream_items(values),
        completions(values),
        stream_invocations(values),
        cancel_invocations,
        pings,
        closes,
        acks,
        sequences,
    )


handshake_requests = st.builds(
    HandshakeRequest, protocol=st.sampled_from(["json", "messagepack"]), version=st.integers(0, 2)
)
handshake_responses = st.builds(HandshakeResponse, error=st.none() | errors)


# -- expectations --------------------------------------------------------------------------------
def roundtrip_form(message: HubMessage, protocol: str) -> HubMessage:
    """What ``protocol`` ("json" or "messagepack") decodes after encoding ``message``.

    Empty headers and stream id lists come back as ``None`` in both codecs; a MessagePack Close
    always carries a boolean ``allowReconnect`` (ASP writes 3 elements), so ``None`` comes back
    ``False``.
    """
    changes: dict[str, Any] = {}
    for name in ("headers", "stream_ids"):
        if hasattr(message, name) and not getattr(message, name):
            changes[name] = None
    if protocol == "messagepack" and isinstance(message, Close):
        changes["allow_reconnect"] = bool(message.allow_reconnect)
    return dataclasses.replace(message, **changes) if changes else message


__all__ = [
    "acks",
    "cancel_invocations",
    "closes",
    "completions",
    "errors",
    "handshake_requests",
    "handshake_responses",
    "headers",
    "hub_messages",
    "invocation_ids",
    "invocations",
    "json_values",
    "msgpack_values",
    "pings",
    "roundtrip_form",
    "scalars",
    "sequence_ids",
    "sequences",
    "stream_id_lists",
    "stream_invocations",
    "stream_items",
    "targets",
]
