"""SignalR hub messages as plain values (HubProtocol.md, message types 1-9).

Absent optional fields are ``None`` (or empty) here and are *left out* on the wire: the TS client
throws on ``"invocationId": null`` and pysignalr raises on keys it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class MessageType(IntEnum):
    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7
    ACK = 8
    SEQUENCE = 9


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The client's first message, always JSON + 0x1E: ``{"protocol": ..., "version": N}``."""

    protocol: str
    version: int


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """``{}`` on success, ``{"error": ...}`` on failure; never a truthy ``type``."""

    error: str | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    target: str
    arguments: list[Any] = field(default_factory=list)
    invocation_id: str | None = None
    stream_ids: list[str] | None = None
    headers: dict[str, str] | None = None
    type = MessageType.INVOCATION


@dataclass(frozen=True, slots=True)
class StreamItem:
    invocation_id: str
    item: Any = None
    headers: dict[str, str] | None = None
    type = MessageType.STREAM_ITEM


# Marks a Completion without a result (void), as opposed to ``result=None`` (a null value).
class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()


@dataclass(frozen=True, slots=True)
class Completion:
    """Ends an invocation: ``error`` set, or ``result`` set, or neither (void). Never both."""

    invocation_id: str
    result: Any = NO_RESULT
    error: str | None = None
    headers: dict[str, str] | None = None
    type = MessageType.COMPLETION

    @property
    def has_result(self) -> bool:
        return self.result is not NO_RESULT


@dataclass(frozen=True, slots=True)
class StreamInvocation:
    invocation_id: str
    target: str
    arguments: list[Any] = field(default_factory=list)
    stream_ids: list[str] | None = None
    headers: dict[str, str] | None = None
    type = MessageType.STREAM_INVOCATION


@dataclass(frozen=True, slots=True)
class CancelInvocation:
    invocation_id: str
    headers: dict[str, str] | None = None
    type = MessageType.CANCEL_INVOCATION


@dataclass(frozen=True, slots=True)
class Ping:
    type = MessageType.PING


@dataclass(frozen=True, slots=True)
class Close:
    error: str | None = None
    allow_reconnect: bool | None = None
    type = MessageType.CLOSE


@dataclass(frozen=True, slots=True)
class Ack:
    sequence_id: int
    type = MessageType.ACK


@dataclass(frozen=True, slots=True)
class Sequence:
    sequence_id: int
    type = MessageType.SEQUENCE


HubMessage = (
    Invocation
    | StreamItem
    | Completion
    | StreamInvocation
    | CancelInvocation
    | Ping
    | Close
    | Ack
    | Sequence
)
