"""Every exception the SignalR core raises, in one hierarchy (h11's split, plus the client's).

Two kinds of protocol error are kept apart on purpose, as h11 and wsproto do:

- :class:`ProtocolError` — the *peer* broke the protocol (bad bytes, a hub message where the
  handshake belongs). The connection moves to ERROR; ``response`` says what to answer.
- :class:`LocalProtocolError` — *our own code* misused the state machine (sending in a state that
  does not allow it). Nothing is wrong on the wire; a caller catching ``ProtocolError`` to answer
  the peer must not swallow our bugs, so the two share no base below :class:`SignalRError`.

The rest describe why a client connection could not start or ended; the asyncio reference client
and the gevent load client raise these same classes (under older aliases where callers use them).
"""

from __future__ import annotations


class SignalRError(Exception):
    """Base of everything the core (and the clients built on it) raise about a connection."""


class ProtocolError(SignalRError):
    """The peer sent something the SignalR protocol does not allow.

    ``response`` holds the bytes the peer should receive before the transport is closed, when the
    protocol defines an answer: a handshake error response (``{"error": ...}\\x1e``) while
    handshaking, or a Close message with the error once the hub protocol is open. It is ``None``
    when nothing can be said (e.g. the peer is a server and we are the client).
    """

    def __init__(self, message: str, *, response: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


# h11's name for the same thing, for readers who know h11.
RemoteProtocolError = ProtocolError


class LocalProtocolError(SignalRError, RuntimeError):
    """Our own code asked the state machine for something its state does not allow.

    A ``RuntimeError`` too: it is a programming error, not a network condition.
    """


class NegotiateError(SignalRError):
    """A negotiate request or response that cannot be honoured; ``str()`` is the reason.

    ``status`` is the HTTP status when the server answered with something other than 200.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransportError(SignalRError):
    """The transport could not be opened or failed; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HandshakeError(SignalRError):
    """The server answered the handshake with an error, or never answered."""


class ConnectionLostError(SignalRError):
    """The connection ended (or was not connected) while something needed it."""


class NotConnectedError(ConnectionLostError):
    """An invocation was attempted while the client was not connected."""


class ServerTimeoutError(ConnectionLostError):
    """Nothing was received for the server timeout."""


class ServerClosedError(ConnectionLostError):
    """The server sent a Close message (``error`` and ``allow_reconnect`` as sent)."""

    def __init__(self, error: str | None, allow_reconnect: bool) -> None:
        text = f"Server returned an error on close: {error}" if error else "Server closed the connection."
        super().__init__(text)
        self.error = error
        self.allow_reconnect = allow_reconnect


class ReconnectExhaustedError(ConnectionLostError):
    """The retry policy gave up after ``attempts`` failed attempts; ``last_error`` is the last."""

    def __init__(self, attempts: int, last_error: BaseException | str | None) -> None:
        super().__init__(f"Reconnect retries have been exhausted after {attempts} failed attempt(s): "
                         f"{last_error}")
        self.attempts = attempts
        self.last_error = last_error


class HubInvocationError(SignalRError):
    """The server answered an invocation with an error Completion."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class InvocationTimeoutError(SignalRError, TimeoutError):
    """No Completion arrived within the caller's timeout."""
