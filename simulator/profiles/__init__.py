"""Profiles: what the simulator serves, as data: hub table, REST route table, payload builders
(hub events and webhook bodies from task events), the webhook dialect and timings.

``documented`` follows the Real-Time API Guide; ``conduit-2025.08`` is the real server as built
(knnlabs/Conduit at 7c3fd76). They are two tables, never a fork of the server: the same engine,
scenarios, faults and recorder run under either. :data:`REGISTRY` names every profile.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from simulator.channels.webhooks import DOCUMENTED_DIALECT, WebhookDialect
from simulator.hubs.definition import HubDefinition
from simulator.hubs.options import HubOptions

if TYPE_CHECKING:
    from simulator.channels.signalr import Emission
    from simulator.rest.tasks import Route
    from simulator.tasks.model import Task, TaskEvent


@dataclass(frozen=True, slots=True)
class HubSpec:
    """A task hub as a client uses it: where it is, how to subscribe, what it sends.

    Each profile's ``client_hubs`` is the one table of these names for its dialect: the reference
    clients and the load users read it.
    """

    path: str
    subscribe: str
    unsubscribe: str
    progress: str
    completed: str
    failed: str

    @property
    def events(self) -> tuple[str, str, str]:
        return self.progress, self.completed, self.failed


@dataclass(frozen=True)
class ClientEvent:
    """A hub event as a client understands it, whatever the dialect's shape: what the reference
    clients and load users act on. ``emitted_at`` is the event's own timestamp (ISO 8601) when
    the dialect carries one, else None (the documented events carry none)."""

    kind: str  # progress | completed | failed | cancelled
    task_id: str
    progress: int | None = None
    result: Any = None
    error: str | None = None
    emitted_at: str | None = None

    @property
    def emitted_ms(self) -> float | None:
        """``emitted_at`` as Unix milliseconds (None when absent or unreadable)."""
        if not isinstance(self.emitted_at, str):
            return None
        try:
            stamp = datetime.fromisoformat(self.emitted_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        if stamp.tzinfo is None:
            return None  # a time without a zone cannot be compared with ours
        return stamp.timestamp() * 1000.0


@dataclass(frozen=True)
class Fact:
    """A fact of a profile that is inferred rather than read (or a deliberate simplification):
    shown by ``profiles diff`` so nobody mistakes it for a reading of the server's code."""

    topic: str
    text: str
    inferred: bool = True


@dataclass(frozen=True)
class Profile:
    name: str
    hubs: tuple[HubDefinition, ...]
    hub_options: HubOptions
    # Task event → hub invocations (which hub, group, event name, arguments).
    signalr_events: Callable[[Task, TaskEvent], list[Emission]]
    # Task event → webhook JSON body (None: this event sends no webhook).
    webhook_body: Callable[[Task, TaskEvent], dict[str, Any] | None]
    # The REST route table (method, path, handler, options) the server mounts.
    routes: tuple[Route, ...] = ()
    description: str = ""
    # How webhook requests are framed: serialiser, Content-Type, extra headers, signature.
    webhook: WebhookDialect = DOCUMENTED_DIALECT
    # The task hubs as a client subscribes to them, by task kind ("image", "video").
    client_hubs: Mapping[str, HubSpec] = field(default_factory=dict)
    # Status strings each surface can show (e.g. "rest", "webhook", "hub:ImageGenerationProgress").
    statuses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Inferred facts and simplifications, listed by ``profiles diff``.
    facts: tuple[Fact, ...] = ()
    # Client side of the dialect: a hub event (target, arguments) → what it means (None: not a
    # task event), and where a client polls a task of each kind.
    decode_event: Callable[[str, list[Any]], ClientEvent | None] | None = None
    status_paths: Mapping[str, str] = field(default_factory=dict)
    # Every form of a completed task's result a client of this dialect may rightly report (the
    # hub event's and the status route's); None: the task's own result is the only one.
    reported_results: Callable[[Task], list[Any]] | None = None

    def result_forms(self, task: Task) -> list[Any]:
        return self.reported_results(task) if self.reported_results is not None else [task.result]


# name → module holding ``PROFILE``; modules load on first use (profiles import the REST layer).
REGISTRY: dict[str, str] = {
    "documented": "simulator.profiles.documented",
    "conduit-2025.08": "simulator.profiles.conduit_2025_08",
}


def profile_names() -> list[str]:
    return list(REGISTRY)


def load_profile(name: str) -> Profile:
    try:
        module = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None
    profile: Profile = importlib.import_module(module).PROFILE
    return profile
