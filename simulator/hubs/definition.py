"""Hubs declared as data: a path, its client-callable methods and the events it sends.

A profile lists :class:`HubDefinition` values; the server mounts whatever the table says, so the
documented hubs and the as-built hubs differ only in their tables.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from simulator.hubs.connection import ServerHubConnection
    from simulator.hubs.lifetime import HubLifetime


class HubError(Exception):
    """Raised by a hub method to send the caller an error Completion (ASP's HubException)."""


@dataclass
class HubCall:
    """What a hub method sees of the call: who called, on which connection, through which hub."""

    hub: HubLifetime
    connection: ServerHubConnection
    method: str

    @property
    def key(self) -> str:
        return self.connection.key

    @property
    def services(self) -> Any:
        return self.hub.services

    def add_to_group(self, group: str) -> None:
        self.hub.add_to_group(self.connection, group)

    def remove_from_group(self, group: str) -> None:
        self.hub.remove_from_group(self.connection, group)


Handler = Callable[..., Awaitable[Any] | Any]


@dataclass(frozen=True)
class HubMethod:
    """A client-callable method: ``handler(call, *arguments)``; its return value is the result."""

    name: str
    handler: Handler

    @property
    def arity(self) -> int:
        params = list(inspect.signature(self.handler).parameters.values())[1:]
        return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


@dataclass(frozen=True)
class EventSpec:
    """An event a hub declares: its name and argument shape, for clients and the profile diff.

    ``style`` says how the arguments travel: ``positional`` (one argument per field, in order)
    or ``object`` (one argument, an object with these keys). ``sent`` is False for an event the
    server declares but never sends (the as-built server has several); ``note`` says why.
    """

    name: str
    fields: tuple[str, ...]
    style: Literal["positional", "object"] = "positional"
    sent: bool = True
    note: str = ""

    def signature(self) -> str:
        inner = ", ".join(self.fields)
        return f"{self.name}({inner})" if self.style == "positional" else f"{self.name}({{{inner}}})"


@dataclass(frozen=True)
class HubDefinition:
    name: str
    path: str
    methods: tuple[HubMethod, ...] = ()
    events: tuple[EventSpec, ...] = ()
    # Called once the handshake completes, e.g. to join the key's own group.
    on_connected: Callable[[HubCall], None] | None = None
    # Short-lived tokens (the guide's realtime token) accepted in place of the key; the real
    # server's hubs take virtual keys only.
    accepts_tokens: bool = True
    _by_name: dict[str, HubMethod] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # ASP resolves hub methods case-insensitively (an OrdinalIgnoreCase dictionary).
        object.__setattr__(self, "_by_name", {m.name.lower(): m for m in self.methods})

    def method(self, name: str) -> HubMethod | None:
        return self._by_name.get(name.lower())

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(event.name for event in self.events)
