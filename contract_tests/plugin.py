"""pytest plugin of conduit-harness (entry point ``conduit_harness``), for client projects.

Every pytest session of a project that installs conduit-harness loads this module, so it adds
only the ``conduit_simulator`` fixture and the ``conduit`` marker. The ``conduit_simulator``
fixture starts the fake Conduit on loopback for a test; configure it with
``@pytest.mark.conduit(scenario=..., seed=..., time_scale=...)``, then create tasks, inject faults
and assert on the timeline::

    def test_my_sdk_survives_a_drop(conduit_simulator):
        task_id = conduit_simulator.create_task(key=conduit_simulator.key)
        conduit_simulator.inject("drop_connections", mode="abort")
        assert conduit_simulator.records("disconnect")

The contract suite's own options and fixtures live in :mod:`contract_tests.suite.plugin`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conduit(**options): options for the conduit_simulator fixture")


@pytest.fixture
def conduit_simulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fake Conduit on 127.0.0.1 for this test (see the module docstring)."""
    from simulator.app import Simulator
    from simulator.background import BackgroundSimulator

    marker = request.node.get_closest_marker("conduit")
    options = dict(marker.kwargs) if marker else {}
    background = BackgroundSimulator(Simulator(**options))
    background.start()
    try:
        yield background
    finally:
        background.stop()
