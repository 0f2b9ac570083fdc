"""Server-side state of one SignalR connection: its protocol machine, outbox and clocks.

Transports (WebSockets, SSE, long polling) only move bytes between the socket and this object;
what a connection *is* lives here and in :mod:`simulator.hubs.lifetime`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from conduit_core.signalr import HubProtocolConnection, Role
from conduit_core.signalr.connection import SUPPORTED_PROTOCOLS
from simulator.hubs.options import HubOptions


class TransportKind(StrEnum):
    WEBSOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"


class CloseMode(StrEnum):
    """How the server ends a connection (also the fault kinds that drop one)."""

    # Flush what is queued (a Close message, if one was queued), then a clean transport close.
    GRACEFUL = "graceful"
    # Cut the TCP connection without any closing handshake.
    ABORT = "abort"


@dataclass(frozen=True)
class CloseRequest:
    mode: CloseMode
    reason: str


class ServerHubConnection:
    """One connection from negotiate (or a skip-negotiation upgrade) until it is removed."""

    def __init__(
        self,
        *,
        connection_id: str,
        token: str,
        key: str,
        negotiate_version: int | None,
        options: HubOptions,
    ) -> None:
        self.connection_id = connection_id
        self.token = token
        self.key = key
        self.negotiate_version = negotiate_version
        self.options = options
        self.protocol = HubProtocolConnection(
            Role.SERVER, max_message_size=options.max_message_size,
            protocols={name: SUPPORTED_PROTOCOLS[name] for name in options.protocols},
        )
        self.transport: TransportKind | None = None
        self.groups: set[str] = set()
        now = time.monotonic()
        self.created_at = now
        self.transport_started_at: float | None = None
        self.last_sent = now
        self.last_received = now
        # The client timeout runs only once the client has pinged (ASP StartClientTimeout).
        self.client_pinged = False
        # For long polling: when the last poll ended (None while one is waiting).
        self.idle_since: float | None = now
        self.active_poll: asyncio.Future[None] | None = None
        self.closing: CloseRequest | None = None
        # When the close was requested: a close that takes longer than the send timeout (the
        # client does not read the final frames) is turned into an abort by the heartbeat.
        self.closing_since: float | None = None
        self.removed = False
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        # Since when something has been waiting to reach the socket: the oldest queued message,
        # or a write the transport has started and the socket has not taken yet.
        self._queued_since: float | None = None
        self._write_started: float | None = None
        self._wakeup = asyncio.Event()
        # Set by a transport that can write a message at once (WebSockets): called with the
        # payload when nothing is queued; False means "queue it" (e.g. the socket pushes back).
        self.direct_send: Callable[[bytes], bool] | None = None
        # Set by the transport: cut the socket now. An abort must not wait for the writer, which
        # may be blocked on a client that stopped reading.
        self.abort_transport: Callable[[], None] | None = None
        # Set by the hub: told (with the reason) when this connection is dropped for not reading,
        # so the drop is recorded where the recorder lives.
        self.on_stuck: Callable[[ServerHubConnection, str], None] | None = None

    # -- transport attachment -----------------------------------------------------------------
    def attach(self, transport: TransportKind) -> None:
        self.transport = transport
        self.transport_started_at = time.monotonic()
        self.idle_since = None

    @property
    def uses_keep_alive(self) -> bool:
        """Long polling is "inherent keep-alive": no Pings are sent on it."""
        return self.transport is not TransportKind.LONG_POLLING

    # -- outbound -----------------------------------------------------------------------------
    def enqueue(self, payload: bytes, now: float | None = None) -> bool:
        """Queue bytes for the transport; False (and the connection is closing) if it is stuck.

        ``now`` (``time.monotonic()``) lets a broadcast read the clock once for all its
        recipients: this runs once per recipient per event, so every call in it counts.
        """
        closing = self.closing
        if closing is None:
            if not self._outbox and self.direct_send is not None and self.direct_send(payload):
                self.last_sent = time.monotonic() if now is None else now
                return True
        elif closing.mode is CloseMode.ABORT:
            return False
        if (len(self._outbox) >= self.options.max_outbox
                or self._outbox_bytes + len(payload) > self.options.max_outbox_bytes):
            self.stuck(f"outbox full: the client is not reading ({len(self._outbox)} messages, "
                       f"{self._outbox_bytes} bytes queued)")
            return False
        if now is None:
            now = time.monotonic()
        if not self._outbox:
            self._queued_since = now
        self._outbox.append(payload)
        self._outbox_bytes += len(payload)
        self.last_sent = now
        self._wakeup.set()
        return True

    def drain(self) -> list[bytes]:
        items = list(self._outbox)
        self._outbox.clear()
        self._outbox_bytes = 0
        self._queued_since = None
        self._wakeup.clear()
        return items

    @property
    def has_outbound(self) -> bool:
        return bool(self._outbox)

    @property
    def outbox_bytes(self) -> int:
        return self._outbox_bytes

    def writing(self, started: bool) -> None:
        """The transport says it handed bytes to the socket and is waiting for it (``True``), or
        that the socket took them (``False``); a wait that lasts is a client not reading."""
        self._write_started = time.monotonic() if started else None

    def stalled_for(self, now: float) -> float:
        """How long bytes for this client have waited to reach the socket (0 when none wait)."""
        since = [t for t in (self._queued_since, self._write_started) if t is not None]
        return now - min(since) if since else 0.0

    def stuck(self, reason: str) -> None:
        """The client is not reading: drop what is queued and abort the connection at once."""
        if self.closing is not None and self.closing.mode is CloseMode.ABORT:
            return
        self.drain()
        if self.on_stuck is not None:
            self.on_stuck(self, reason)
        self.request_close(CloseMode.ABORT, reason)

    async def wait_outbound(self, timeout: float | None = None) -> bool:
        """Wait until there is something to write or a close was requested; False on timeout."""
        if self._outbox or self.closing is not None:
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def request_close(self, mode: CloseMode, reason: str) -> None:
        """Ask the transport to end the connection after flushing (or at once, for ABORT)."""
        if self.closing is None or (mode is CloseMode.ABORT and self.closing.mode is not CloseMode.ABORT):
            if self.closing is None:
                self.closing_since = time.monotonic()
            self.closing = CloseRequest(mode, reason)
            if mode is CloseMode.ABORT and self.abort_transport is not None:
                self.abort_transport()
        self._wakeup.set()

    def describe(self) -> dict[str, object]:
        return {
            "connection_id": self.connection_id,
            "key": self.key,
            "transport": self.transport.value if self.transport else None,
            "protocol": self.protocol.protocol,
            "negotiate_version": self.negotiate_version,
        }
