"""The client end of one SignalR connection, with no I/O (h11 / wsproto style).

A :class:`ClientSession` lives from the handshake request to the end of one physical connection
(a reconnect makes a new one). The I/O loop around it only moves bytes and reads the clock:

- ``initiate_handshake(now)`` gives the handshake request to write;
- ``receive_data(data, now)`` turns received bytes into events; ``receive_data(None, now)`` says
  the transport was lost and yields :class:`TransportLost`;
- ``invoke`` / ``send_invocation`` / ``complete`` / ``ping`` / ``close`` (all via ``send``) give
  bytes to write, and ``send`` raises :class:`LocalProtocolError` when the state does not allow
  the message (nothing before the handshake is answered, nothing after the end);
- ``next_deadline()`` says when to call ``tick(now)``, which yields :class:`PingDue` (send a Ping:
  nothing was sent for ``keep_alive_interval``), :class:`ServerTimeout` (nothing was received for
  ``server_timeout``) or :class:`HandshakeTimeout`.

It owns what both of our clients used to keep separately: invocation ids and their Completions,
the keep-alive and server-timeout deadlines, and the connection state. States::

    IDLE -> HANDSHAKING --(handshake answered)--> CONNECTED --(Close / lost / timeout)--> CLOSED
                \\__(rejected, lost, timed out)_____________________________________/
    any --(the server broke the protocol: ProtocolError)--> ERROR
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import Enum
from typing import Any

from conduit_core.signalr.connection import HubProtocolConnection, Role
from conduit_core.signalr.errors import LocalProtocolError, ProtocolError
from conduit_core.signalr.messages import (
    NO_RESULT,
    Close,
    Completion,
    HandshakeResponse,
    HubMessage,
    Invocation,
    Ping,
)

# The TS client's defaults (HubConnection.ts): a Ping after 15 s without sending, the connection
# dropped after 30 s without receiving (twice the server's keep-alive, so one lost Ping is
# survivable), and 15 s for the server to answer the handshake.
DEFAULT_KEEP_ALIVE_INTERVAL = 15.0
DEFAULT_SERVER_TIMEOUT = 30.0
DEFAULT_HANDSHAKE_TIMEOUT = 15.0

SERVER_TIMEOUT_TEXT = "Server timeout elapsed without receiving a message from the server."


class ClientState(Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"
    ERROR = "error"


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The server accepted the handshake: hub messages may flow."""


@dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """The server answered the handshake with an error; the connection is over."""

    error: str


@dataclass(frozen=True, slots=True)
class InvocationReceived:
    """The server invoked a client method; ``invocation_id`` set means it wants a Completion."""

    invocation: Invocation


@dataclass(frozen=True, slots=True)
class CompletionReceived:
    """The Completion of one of our invocations, matched to the ``target`` we invoked."""

    invocation_id: str
    target: str
    completion: Completion

    @property
    def error(self) -> str | None:
        return self.completion.error

    @property
    def result(self) -> Any:
        """The returned value (``None`` for a void completion)."""
        return self.completion.result if self.completion.has_result else None


@dataclass(frozen=True, slots=True)
class UnmatchedCompletion:
    """A Completion for an id we are not waiting for (never sent, or given up on)."""

    completion: Completion


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Any other hub message (stream items, Ack, Sequence ...) the session has no use for."""

    message: HubMessage


@dataclass(frozen=True, slots=True)
class PingDue:
    """Nothing was sent for the keep-alive interval: send a Ping (``session.ping(now)``)."""


@dataclass(frozen=True, slots=True)
class ServerTimeout:
    """Nothing was received for the server timeout; the connection counts as lost."""

    message: str = SERVER_TIMEOUT_TEXT


@dataclass(frozen=True, slots=True)
class HandshakeTimeout:
    """The server did not answer the handshake in time."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The server sent a Close message; reconnect only if ``allow_reconnect``."""

    error: str | None
    allow_reconnect: bool


@dataclass(frozen=True, slots=True)
class TransportLost:
    """The transport ended without a Close message (``receive_data(None)``)."""


Event = (
    HandshakeCompleted | HandshakeRejected | InvocationReceived | CompletionReceived
    | UnmatchedCompletion | MessageReceived | PingDue | ServerTimeout | HandshakeTimeout
    | Closed | TransportLost
)

# Which messages a client may send in which state; adding a case is adding a row. The handshake
# request is not here: only ``initiate_handshake`` writes it, once.
_SENDABLE: dict[ClientState, tuple[type, ...]] = {
    ClientState.IDLE: (),
    ClientState.HANDSHAKING: (),
    ClientState.CONNECTED: HubMessage.__args__,  # type: ignore[attr-defined]
    ClientState.CLOSED: (),
    ClientState.ERROR: (),
}


class ClientSession:
    """One client connection's protocol state: see the module docstring.

    ``keep_alive_interval`` / ``server_timeout`` of ``None`` (or ``<= 0``) turn that deadline off;
    ``inherent_keep_alive=True`` (long polling, whose polls are the keep-alive) turns both off.
    """

    def __init__(
        self,
        protocol: str = "json",
        version: int = 1,
        *,
        keep_alive_interval: float | None = DEFAULT_KEEP_ALIVE_INTERVAL,
        server_timeout: float | None = DEFAULT_SERVER_TIMEOUT,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        inherent_keep_alive: bool = False,
    ) -> None:
        self.protocol = protocol
        self.version = version
        self.keep_alive_interval = None if inherent_keep_alive else _positive(keep_alive_interval)
        self.server_timeout = None if inherent_keep_alive else _positive(server_timeout)
        self.handshake_timeout = _positive(handshake_timeout)
        self.state = ClientState.IDLE
        self.connection = HubProtocolConnection(Role.CLIENT)
        self.last_sent = 0.0
        self.last_received = 0.0
        self._handshake_started = 0.0
        self._ids = itertools.count()
        self._pending: dict[str, str] = {}  # invocation id -> target
        self._results_owed: set[str] = set()  # server invocations that want a Completion

    # -- properties ---------------------------------------------------------------------------
    @property
    def is_binary(self) -> bool:
        return self.connection.is_binary

    @property
    def pending(self) -> dict[str, str]:
        """Invocations still waiting for their Completion: id -> target (a copy)."""
        return dict(self._pending)

    # -- starting -----------------------------------------------------------------------------
    def initiate_handshake(self, now: float) -> bytes:
        """The handshake request; allowed once, first."""
        if self.state is not ClientState.IDLE:
            raise LocalProtocolError(f"cannot start a handshake in state {self.state.value}")
        data = self.connection.initiate_handshake(self.protocol, self.version)
        self.state = ClientState.HANDSHAKING
        self._handshake_started = self.last_sent = self.last_received = now
        return data

    # -- receiving ----------------------------------------------------------------------------
    def receive_data(self, data: bytes | str | None, now: float) -> list[Event]:
        """Events for the bytes just received; ``None`` means the transport is gone.

        A server that breaks the protocol raises :class:`ProtocolError` and the state becomes
        ERROR; nothing received after the end counts.
        """
        if self.state is ClientState.IDLE:
            raise LocalProtocolError("receive_data before the handshake was started")
        if self.state in (ClientState.CLOSED, ClientState.ERROR):
            return []
        if data is None:
            self._end(ClientState.CLOSED)
            return [TransportLost()]
        if data:
            self.last_received = now
        try:
            messages = self.connection.receive_data(data)
        except ProtocolError:
            self._end(ClientState.ERROR)
            raise
        events: list[Event] = []
        for message in messages:
            if isinstance(message, Ping):
                continue  # its arrival has already moved the server-timeout deadline
            events.append(self._event_for(message))
            if self.state is ClientState.CLOSED:
                break
        return events

    def _event_for(self, message: Any) -> Event:
        if isinstance(message, HandshakeResponse):
            if message.error is not None:
                self._end(ClientState.CLOSED)
                return HandshakeRejected(message.error)
            self.state = ClientState.CONNECTED
            return HandshakeCompleted()
        if isinstance(message, Completion):
            target = self._pending.pop(message.invocation_id, None)
            if target is None:
                return UnmatchedCompletion(message)
            return CompletionReceived(message.invocation_id, target, message)
        if isinstance(message, Invocation):
            if message.invocation_id is not None:
                self._results_owed.add(message.invocation_id)
            return InvocationReceived(message)
        if isinstance(message, Close):
            self._end(ClientState.CLOSED)
            return Closed(message.error, bool(message.allow_reconnect))
        return MessageReceived(message)

    def _end(self, state: ClientState) -> None:
        self.state = state
        self._pending.clear()
        self._results_owed.clear()

    # -- sending ------------------------------------------------------------------------------
    def send(self, message: HubMessage, now: float) -> bytes:
        """Bytes for ``message``; LocalProtocolError if the state does not allow it."""
        allowed = _SENDABLE[self.state]
        if not isinstance(message, allowed):
            raise LocalProtocolError(
                f"cannot send {type(message).__name__} in state {self.state.value}")
        if isinstance(message, Completion):
            if message.invocation_id not in self._results_owed:
                raise LocalProtocolError(
                    f"the server did not ask for a result for invocation {message.invocation_id!r}")
            self._results_owed.discard(message.invocation_id)
        if isinstance(message, Invocation) and message.invocation_id is not None:
            if message.invocation_id in self._pending:
                raise LocalProtocolError(f"invocation id {message.invocation_id!r} is in use")
            self._pending[message.invocation_id] = message.target
        data = self.connection.send(message)
        self.last_sent = now
        if isinstance(message, Close):
            self._end(ClientState.CLOSED)
        return data

    def invoke(self, target: str, arguments: list[Any], now: float,
               headers: dict[str, str] | None = None) -> tuple[str, bytes]:
        """A blocking invocation: a fresh id (awaiting its Completion) and the bytes to send."""
        invocation_id = str(next(self._ids))
        while invocation_id in self._pending:  # only if the caller chose ids of its own
            invocation_id = str(next(self._ids))
        data = self.send(Invocation(target, list(arguments), invocation_id=invocation_id,
                                    headers=headers), now)
        return invocation_id, data

    def send_invocation(self, target: str, arguments: list[Any], now: float) -> bytes:
        """A non-blocking invocation: no id, no Completion."""
        return self.send(Invocation(target, list(arguments)), now)

    def complete(self, invocation_id: str, now: float, *, result: Any = NO_RESULT,
                 error: str | None = None) -> bytes:
        """Answer a server invocation that asked for a client result."""
        return self.send(Completion(invocation_id, result=result, error=error), now)

    def ping(self, now: float) -> bytes:
        return self.send(Ping(), now)

    def close(self, now: float, error: str | None = None) -> bytes:
        """A Close message; the session is over once it is sent."""
        return self.send(Close(error=error), now)

    def forget(self, invocation_id: str) -> None:
        """Stop waiting for a Completion (the caller gave up); a late one is then unmatched."""
        self._pending.pop(invocation_id, None)

    # -- clock --------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to say; ``None`` when no timer runs."""
        if self.state is ClientState.HANDSHAKING and self.handshake_timeout is not None:
            return self._handshake_started + self.handshake_timeout
        if self.state is not ClientState.CONNECTED:
            return None
        deadlines = []
        if self.keep_alive_interval is not None:
            deadlines.append(self.last_sent + self.keep_alive_interval)
        if self.server_timeout is not None:
            deadlines.append(self.last_received + self.server_timeout)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[Event]:
        """The deadlines that have passed by ``now``: a timeout ends the session."""
        if self.state is ClientState.HANDSHAKING:
            if self.handshake_timeout is not None and now >= self._handshake_started + self.handshake_timeout:
                self._end(ClientState.CLOSED)
                return [HandshakeTimeout()]
            return []
        if self.state is not ClientState.CONNECTED:
            return []
        if self.server_timeout is not None and now >= self.last_received + self.server_timeout:
            self._end(ClientState.CLOSED)
            return [ServerTimeout()]
        if self.keep_alive_interval is not None and now >= self.last_sent + self.keep_alive_interval:
            return [PingDue()]
        return []


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


__all__ = [
    "ClientSession",
    "ClientState",
    "Closed",
    "CompletionReceived",
    "Event",
    "HandshakeCompleted",
    "HandshakeRejected",
    "HandshakeTimeout",
    "InvocationReceived",
    "MessageReceived",
    "PingDue",
    "ServerTimeout",
    "TransportLost",
    "UnmatchedCompletion",
]
