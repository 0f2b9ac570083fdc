"""Sans-I/O core of the ASP.NET Core SignalR protocol.

Nothing in this package touches a socket or an event loop: callers feed received bytes in and
get message objects out, and turn message objects into bytes to write. The simulator's aiohttp
transports and our own clients (the Locust SignalR user, the Python reference client) share it:
the server end is :class:`HubProtocolConnection`, the client end :class:`ClientSession` (with
:mod:`~conduit_core.signalr.negotiate_client` and :mod:`~conduit_core.signalr.retry` around it).
"""

from conduit_core.signalr.client_session import ClientSession, ClientState
from conduit_core.signalr.connection import HubProtocolConnection, Role, State
from conduit_core.signalr.errors import (
    LocalProtocolError,
    NegotiateError,
    ProtocolError,
    RemoteProtocolError,
    SignalRError,
)
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
    "ClientSession",
    "ClientState",
    "Close",
    "Completion",
    "HandshakeRequest",
    "HandshakeResponse",
    "HubMessage",
    "HubProtocolConnection",
    "Invocation",
    "LocalProtocolError",
    "NegotiateError",
    "Ping",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "Sequence",
    "SignalRError",
    "State",
    "StreamInvocation",
    "StreamItem",
]
