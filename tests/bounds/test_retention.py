"""Finished tasks and expired realtime tokens are forgotten after their retention period.

Without this a long run kept every task it had ever seen (about 3.8 KB each) and every token it
had issued; the churn benchmark (benchmarks/bench_churn.py) shows memory staying flat.
"""

from __future__ import annotations

import asyncio
import time

from contract_tests.waiting import async_wait_until
from simulator.auth import KeyStore
from tests.support.rest import FAST, open_http
from tests.support.simulator import TEST_KEY

RETENTION = 0.5
# Polled after a task was forgotten, each route answers as it does for an id never issued.
STATUS_ROUTES = ("/api/tasks/{}/status", "/v1/images/generations/{}/status", "/v1/tasks/{}")


async def test_a_finished_task_is_forgotten_after_the_retention_period(make_simulator) -> None:
    sim = make_simulator(scenario=FAST, task_retention=RETENTION)
    async with open_http(sim.url) as http:
        task_id = await http.create()
        await http.until(task_id, {"completed"})
        finished = time.monotonic()
        assert (await http("GET", f"/api/tasks/{task_id}/status")).status == 200
        unknown = {route: await http("GET", route.format("task_never_issued")) for route in STATUS_ROUTES}

        async def forgotten() -> bool:
            return (await http("GET", f"/api/tasks/{task_id}/status")).status == 404

        await async_wait_until(forgotten, 5, f"{task_id} forgotten", interval=0.05)
        assert time.monotonic() - finished >= RETENTION * 0.9
        for route, expected in unknown.items():
            reply = await http("GET", route.format(task_id))
            assert reply.status == expected.status, route
            assert reply.body.replace(task_id.encode(), b"task_never_issued") == expected.body, route
        assert task_id not in sim.simulator.tasks.tasks


async def test_a_running_task_is_kept_however_old(make_simulator) -> None:
    sim = make_simulator(scenario=FAST, task_retention=0.1)
    async with open_http(sim.url) as http:
        task_id = await http.create(prompt="slow task")  # stays at 5 % for a minute
        await http.until(task_id, {"processing"})
        await asyncio.sleep(0.5)
        assert (await http.status(task_id))["status"] == "processing"


def test_expired_tokens_are_purged_and_live_ones_kept() -> None:
    keys = KeyStore([TEST_KEY])
    expired, _ = keys.issue_token(TEST_KEY, ttl=1)
    live, _ = keys.issue_token(TEST_KEY, ttl=600)
    assert keys.purge_expired(now=time.time() + 2) == 1
    assert keys.purge_expired(now=time.time() + 2) == 0
    assert keys.resolve(live, allow_tokens=True) == TEST_KEY
    assert keys.resolve(expired, allow_tokens=True) is None


async def test_the_simulator_purges_expired_tokens_on_its_own(make_simulator) -> None:
    sim = make_simulator()
    sim.call(sim.simulator.keys.issue_token, TEST_KEY, 0.05)
    # The sweeper runs every second; after it ran, nothing is left to purge.
    await asyncio.sleep(1.5)
    assert sim.call(sim.simulator.keys.purge_expired) == 0
