"""A real simulator on loopback for tests, with timings shrunk so waits stay short."""

from __future__ import annotations

from typing import Any

from simulator.app import Simulator
from simulator.background import BackgroundSimulator
from simulator.scenarios import parse_scenario
from simulator.tasks.model import TaskRequest

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


# Protocol-level tests subscribe to these fixed ids; the default test simulator creates them as
# idle tasks owned by TEST_KEY so the hubs' ownership check (unknown or foreign task →
# "Unauthorized access to task") lets them through.
FIXED_TASK_IDS = ("task_a", "task_abc", "task_after", "task_c", "task_healthy", "task_idle", "task_lc",
                  "task_lp", "task_o", "task_r", "task_skip", "task_x", "task_z")

# Tasks that never change within a test unless a test drives them.
IDLE_SCENARIO = parse_scenario(
    {"name": "idle", "description": "tasks wait an hour, then complete",
     "scripts": {"idle": {"steps": [{"after": 3600, "status": "completed"}]}}},
    "tests/support/simulator.py",
)


def own_tasks(background: BackgroundSimulator, task_ids: tuple[str, ...], key: str = TEST_KEY,
              kind: str = "image", script: str = "idle") -> None:
    """Create tasks with known ids (on the simulator's loop)."""
    engine = background.simulator.tasks

    def create() -> None:
        for task_id in task_ids:
            request = TaskRequest(kind=kind, prompt="fixture task", model="test-model", key=key)
            engine.create(request, task_id=task_id, script=script)

    background.call(create)


def start_simulator(**kwargs: Any) -> BackgroundSimulator:
    """A started simulator with the test keys and fast hub timings; without a ``scenario``, the idle
    one with :data:`FIXED_TASK_IDS` created. The caller stops it (the ``make_simulator`` fixture does)."""
    kwargs.setdefault("keys", [TEST_KEY, OTHER_KEY])
    idle = "scenario" not in kwargs
    kwargs.setdefault("scenario", IDLE_SCENARIO)
    options = dict(FAST_HUB_OPTIONS)
    options.update(kwargs.pop("hub_options", {}))
    background = BackgroundSimulator(Simulator(hub_options=options, **kwargs))
    background.start()
    if idle:
        try:
            own_tasks(background, FIXED_TASK_IDS)
        except BaseException:
            background.stop()
            raise
    return background
