"""Fixtures shared by every test: a real simulator on loopback (see :mod:`tests.support.simulator`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simulator.background import BackgroundSimulator
from tests.support.simulator import start_simulator


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., BackgroundSimulator]]:
    """Start simulators (``start_simulator`` keywords); every one is stopped after the test."""
    started: list[BackgroundSimulator] = []

    def make(**kwargs: Any) -> BackgroundSimulator:
        background = start_simulator(**kwargs)
        started.append(background)
        return background

    yield make
    for background in started:
        background.stop()


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator()
