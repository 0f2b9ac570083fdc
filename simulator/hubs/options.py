"""Hub timings and limits. A profile chooses them; tests shrink them.

Defaults are ASP.NET Core's (HubOptions, HttpConnectionDispatcherOptions), which the documented
profile uses; the ``conduit-2025.08`` profile doubles keep-alive and client timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class HubOptions:
    # Send a Ping after this long without sending anything (HubOptions.KeepAliveInterval).
    keep_alive_interval: float = 15.0
    # Drop a client silent this long, counted only after its first Ping (ClientTimeoutInterval;
    # ASP starts the clock at the first Ping, which is why idle signalrcore survives).
    client_timeout: float = 30.0
    # The handshake must arrive this long after the transport starts (HandshakeTimeout).
    handshake_timeout: float = 15.0
    # Negotiated-but-unused and between-polls connections are removed after this (DisconnectTimeout).
    disconnect_timeout: float = 15.0
    # A long poll waits this long for data; below the TS client's 100 s HTTP timeout.
    long_poll_timeout: float = 90.0
    # How often timeouts and keep-alives are checked (ASP's 1 s heartbeat).
    heartbeat_interval: float = 1.0
    # Largest client message (MaximumReceiveMessageSize), also caps the handshake.
    max_message_size: int = 32 * 1024
    # Messages queued for one slow connection before it is dropped, so one stuck client cannot
    # grow the server without bound.
    max_outbox: int = 10_000
    # Bytes queued for one connection before it is aborted (a client that stops reading). ASP.NET
    # Core's TransportMaxBufferSize is 64 KB, but there the hub waits when it is full; here
    # nothing waits, so the bound is 16 times that, and a client that is only slow survives a
    # burst. What one such client can pin is about twice this (the outbox, plus one batch handed
    # to the socket) and the socket buffers.
    max_outbox_bytes: int = 1024 * 1024
    # A connection whose queued messages have not reached the socket for this long (the client
    # stopped reading) is aborted, and so is a requested close that has not finished by then.
    send_timeout: float = 30.0
    # Hub protocols the server registered (AddJsonProtocol, AddMessagePackProtocol); a handshake
    # asking for another one is refused, as ASP refuses it.
    protocols: tuple[str, ...] = ("json", "messagepack")

    def scaled(self, **changes: float) -> HubOptions:
        return replace(self, **changes)
