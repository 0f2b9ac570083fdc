"""Sans-I/O core of the ASP.NET Core SignalR protocol.

Nothing in this package touches a socket or an event loop: callers feed received bytes in and
get message objects out, and turn message objects into bytes to write. The simulator's aiohttp
transports and our own clients (the Locust SignalR user, the Python reference client) share it.
"""

from conduit_core.signalr.connection import HubProtocolConnection, Role, State
from conduit_core.signalr.errors import ProtocolError
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

__all__ = [
    "Ack",
    "CancelInvocation",
    "Close",
    "Completion",
    "HandshakeRequest",
    "HandshakeResponse",
    "HubMessage",
    "HubProtocolConnection",
    "Invocation",
    "Ping",
    "ProtocolError",
    "Role",
    "Sequence",
    "State",
    "StreamInvocation",
    "StreamItem",
]
