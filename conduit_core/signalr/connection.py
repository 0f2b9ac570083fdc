"""The SignalR hub-protocol state machine for one connection, either end (h11 style).

``receive_data(bytes)`` turns whatever the transport delivered (a WebSocket frame, a POST body,
a long-poll response) into message objects; ``send(message)`` turns a message into the bytes to
write. The caller moves the bytes. States::

    HANDSHAKE --(valid handshake)--> OPEN --(Close sent or received)--> CLOSED
        \\____________(any ProtocolError)_______________________________-> ERROR

A peer that breaks the protocol raises one :class:`ProtocolError` whose ``response`` holds what
the protocol says to answer (a handshake error, or a Close carrying the error); the state becomes
ERROR and every later ``receive_data`` raises again.

Our own misuse is a different error, :class:`LocalProtocolError`, and leaves the state alone: a
server ``send`` that its state does not allow (see ``_SERVER_SENDABLE``), or a server starting a
handshake. A caller answering peers by catching ``ProtocolError`` therefore never hides our bugs.
The client role stays a plain codec end (it pipelines, and the bad-input tests make it say what no
polite client says); :class:`~conduit_core.signalr.client_session.ClientSession` is the client
with the discipline.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from types import EllipsisType

from conduit_core.signalr import handshake, json_protocol, msgpack_protocol
from conduit_core.signalr.errors import LocalProtocolError, ProtocolError
from conduit_core.signalr.messages import Close, HandshakeRequest, HandshakeResponse, HubMessage

# ASP.NET Core's HubOptions.MaximumReceiveMessageSize default: 32 KB. The same limit caps the
# handshake (ASP cancels a handshake that outgrows it).
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024

# Current ASP JSON and MessagePack protocols are version 2 and accept any version <= 2;
# signalrcore sends 0 after a version-0 negotiate, so 0 must be accepted too.
SUPPORTED_PROTOCOLS: dict[str, int] = {"json": 2, "messagepack": 2}

TRANSFER_FORMATS = {"json": "Text", "messagepack": "Binary"}


class Role(Enum):
    SERVER = "server"
    CLIENT = "client"


class State(Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"
    ERROR = "error"


Event = HandshakeRequest | HandshakeResponse | HubMessage

# What a server may send in each state: the handshake answer (an error one before the request
# was read, for a handshake timeout), hub messages once open. After a Close or a protocol error,
# no hub message: bytes behind a Close mean nothing to the client and betray a bug on our side.
# The answer is allowed once, before any hub message; in CLOSED only when the client's Close came
# in the same read as its handshake request, which still deserves its answer.
_SERVER_SENDABLE: dict[State, tuple[type, ...]] = {
    State.HANDSHAKE: (HandshakeResponse,),
    State.OPEN: (HandshakeResponse, *HubMessage.__args__),  # type: ignore[attr-defined]
    State.CLOSED: (HandshakeResponse,),
    State.ERROR: (),
}


class HubProtocolConnection:
    """One end of a SignalR connection, from handshake to Close, with no I/O."""

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int | None | EllipsisType = ...,
        protocols: dict[str, int] | None = None,
    ) -> None:
        self.role = role
        self.state = State.HANDSHAKE
        # The 32 KB limit is the server's receive limit; clients accept what servers send (the TS
        # client has no limit, pysignalr allows 1 MiB), so a client defaults to none.
        if max_message_size is ...:
            max_message_size = DEFAULT_MAX_MESSAGE_SIZE if role is Role.SERVER else None
        self.max_message_size = max_message_size
        self.protocols = dict(SUPPORTED_PROTOCOLS if protocols is None else protocols)
        self.protocol: str | None = None
        self.version: int | None = None
        self._buffer = bytearray()
        self._answered = False  # server: the handshake response has been sent
        self._sent_hub_message = False

    # -- properties ---------------------------------------------------------------------------
    @property
    def transfer_format(self) -> str | None:
        """``"Text"`` for JSON, ``"Binary"`` for MessagePack, ``None`` before the handshake."""
        return TRANSFER_FORMATS.get(self.protocol) if self.protocol else None

    @property
    def is_binary(self) -> bool:
        return self.protocol == "messagepack"

    # -- client side: start the handshake -----------------------------------------------------
    def initiate_handshake(self, protocol: str = "json", version: int = 1) -> bytes:
        """Client: the handshake request bytes; the protocol is fixed from here on."""
        if self.role is not Role.CLIENT or self.state is not State.HANDSHAKE:
            raise LocalProtocolError("only a client in the handshake state starts a handshake")
        self.protocol, self.version = protocol, version
        return handshake.encode_request(HandshakeRequest(protocol, version))

    # -- receiving ----------------------------------------------------------------------------
    def receive_data(self, data: bytes | str) -> list[Event]:
        """Feed received bytes; get every complete message they finish, in order."""
        if self.state is State.ERROR:
            raise ProtocolError("connection is in the error state")
        if self.state is State.CLOSED:
            return []  # nothing after a Close counts; don't buffer it either
        if isinstance(data, str):
            # surrogatepass: a lone surrogate becomes invalid UTF-8, which the codecs reject.
            data = data.encode("utf-8", "surrogatepass")
        self._buffer += data
        events: list[Event] = []
        try:
            if self.state is State.HANDSHAKE:
                event = self._receive_handshake()
                if event is None:
                    return events
                events.append(event)
            if self.state is State.OPEN:
                events.extend(self._receive_messages())
        except ProtocolError as exc:
            self.state = State.ERROR
            self._buffer.clear()
            if exc.response is None:
                exc.response = self._error_response(exc.message, handshaking=self.protocol is None)
            raise
        return events

    def _receive_handshake(self) -> Event | None:
        end = self._buffer.find(json_protocol.RECORD_SEPARATOR)
        if end < 0:
            if self.max_message_size is not None and len(self._buffer) > self.max_message_size:
                raise ProtocolError("Handshake was canceled.")
            return None
        if self.max_message_size is not None and end + 1 > self.max_message_size:
            raise ProtocolError("Handshake was canceled.")
        record = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self.role is Role.SERVER:
            request = handshake.parse_request(record)
            max_version = self.protocols.get(request.protocol)
            if max_version is None:
                raise ProtocolError(
                    f"The protocol '{request.protocol}' is not supported."
                )
            if request.version > max_version or request.version < 0:
                raise ProtocolError(
                    f"The server does not support version {request.version} of the "
                    f"'{request.protocol}' protocol."
                )
            self.protocol, self.version = request.protocol, request.version
            self.state = State.OPEN
            return request
        response = handshake.parse_response(record)
        if response.error is not None:
            self.state = State.CLOSED
        else:
            self.state = State.OPEN
        return response

    def _receive_messages(self) -> Iterable[HubMessage]:
        codec = msgpack_protocol if self.is_binary else json_protocol
        messages: list[HubMessage] = []
        for record in codec.split_records(self._buffer, self.max_message_size):
            message = codec.decode(record)
            messages.append(message)
            if isinstance(message, Close):
                self.state = State.CLOSED
                self._buffer.clear()
                break
        return messages

    def _error_response(self, error: str, *, handshaking: bool) -> bytes | None:
        # Encoded directly, not through send(): the state is already ERROR, where send refuses.
        if self.role is not Role.SERVER:
            return None
        if handshaking:
            return handshake.encode_response(HandshakeResponse(error=error))
        codec = msgpack_protocol if self.is_binary else json_protocol
        return codec.encode(Close(error=error))

    # -- sending ------------------------------------------------------------------------------
    def send(self, message: HandshakeResponse | HubMessage) -> bytes:
        """Bytes for ``message`` in the negotiated protocol (handshake responses are JSON).

        For a server, LocalProtocolError when the state does not allow ``message``.
        """
        if self.role is Role.SERVER:
            self._check_server_send(message)
        if isinstance(message, HandshakeResponse):
            if self.role is Role.SERVER:
                self._answered = True
                if message.error is not None and self.state in (State.HANDSHAKE, State.OPEN):
                    self.state = State.CLOSED  # a rejected handshake ends the connection
            return handshake.encode_response(message)
        self._sent_hub_message = True
        codec = msgpack_protocol if self.is_binary else json_protocol
        data = codec.encode(message)
        if isinstance(message, Close) and self.state is State.OPEN:
            self.state = State.CLOSED
        return data

    def _check_server_send(self, message: HandshakeResponse | HubMessage) -> None:
        if not isinstance(message, _SERVER_SENDABLE[self.state]):
            raise LocalProtocolError(
                f"a server cannot send {type(message).__name__} in state {self.state.value}")
        if isinstance(message, HandshakeResponse):
            if self._answered or self._sent_hub_message:
                raise LocalProtocolError("the handshake has already been answered")
            if self.protocol is None and message.error is None:
                raise LocalProtocolError("cannot accept a handshake that has not been received")
            if self.state is State.CLOSED and self.protocol is None:
                raise LocalProtocolError("the connection is closed")
