"""The one exception a misbehaving peer can cause in the protocol core."""

from __future__ import annotations


class ProtocolError(Exception):
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
