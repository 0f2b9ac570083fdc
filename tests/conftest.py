"""Shared fixtures: a real simulator on loopback, with timings shrunk so waits stay short."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simulator.app import Simulator
from simulator.background import BackgroundSimulator

TEST_KEY = "vk_testkey0123456789"
OTHER_KEY = "vk_otherkey9876543210"

# Shrunk timings (the documented ones are 15/30/15/15/90 s). Keep-alive stays well under every
# client's server timeout so idle connections survive, as in production.
FAST_HUB_OPTIONS: dict[str, Any] = {
    "keep_alive_interval": 0.5,
    "client_timeout": 3.0,
    "handshake_timeout": 2.0,
    "disconnect_timeout": 2.0,
    "long_poll_timeout": 2.0,
    "heartbeat_interval": 0.1,
}


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., BackgroundSimulator]]:
    started: list[BackgroundSimulator] = []

    def make(**kwargs: Any) -> BackgroundSimulator:
        kwargs.setdefault("keys", [TEST_KEY, OTHER_KEY])
        options = dict(FAST_HUB_OPTIONS)
        options.update(kwargs.pop("hub_options", {}))
        background = BackgroundSimulator(Simulator(hub_options=options, **kwargs))
        background.start()
        started.append(background)
        return background

    yield make
    for background in started:
        background.stop()


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)
