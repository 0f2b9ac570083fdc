"""Profiles: what the simulator serves, as data (hub table, timings; later routes and payloads).

``documented`` follows the Real-Time API Guide. Other profiles (``conduit-2025.08``) are other
tables, never a fork of the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.hubs.definition import HubDefinition
from simulator.hubs.options import HubOptions


@dataclass(frozen=True)
class Profile:
    name: str
    hubs: tuple[HubDefinition, ...]
    hub_options: HubOptions


def load_profile(name: str) -> Profile:
    from simulator.profiles import documented

    profiles = {documented.PROFILE.name: documented.PROFILE}
    try:
        return profiles[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; available: {', '.join(sorted(profiles))}"
        ) from None
