"""Profiles: what the simulator serves, as data: hub table, REST route table, payload builders
(hub events and webhook bodies from task events) and timings.

``documented`` follows the Real-Time API Guide. Other profiles (``conduit-2025.08``) are other
tables, never a fork of the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.hubs.definition import HubDefinition
from simulator.hubs.options import HubOptions

if TYPE_CHECKING:
    from simulator.channels.signalr import Emission
    from simulator.rest.tasks import Route
    from simulator.tasks.model import Task, TaskEvent


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


def load_profile(name: str) -> Profile:
    from simulator.profiles import documented

    profiles = {documented.PROFILE.name: documented.PROFILE}
    try:
        return profiles[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; available: {', '.join(sorted(profiles))}"
        ) from None
