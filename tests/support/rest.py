"""For the REST and control API tests: a fast scenario and a thin HTTP helper over aiohttp."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from contract_tests.waiting import async_wait_until
from simulator.scenarios import parse_scenario
from simulator.security import control_headers
from tests.support.simulator import TEST_KEY

STEP = 0.05  # seconds between a fast script's steps

# ok: 10 → 50 → 90 → completed in 0.2 s; fail: 20 → failed; slow: stays at 5 for a minute.
FAST = parse_scenario({
    "name": "rest-fast",
    "scripts": {
        "ok": {"steps": [{"after": STEP, "progress": 10}, {"after": STEP, "progress": 50},
                         {"after": STEP, "progress": 90}, {"after": STEP, "status": "completed"}]},
        "fail": {"steps": [{"after": STEP, "progress": 20},
                           {"after": STEP, "status": "failed", "error": "provider exploded"}]},
        "slow": {"steps": [{"after": STEP, "progress": 5}, {"after": 60, "status": "completed"}]},
    },
    "rules": [
        {"match": {"prompt_contains": "fail"}, "script": "fail"},
        {"match": {"prompt_contains": "slow"}, "script": "slow"},
        {"match": {"header": {"X-Script": "slow"}}, "script": "slow"},
    ],
    "default": "ok",
}, "tests/rest")

IMAGE = {"prompt": "a lighthouse at dusk", "model": "dall-e-3"}
VIDEO = {"prompt": "waves on a beach", "model": "veo-2", "duration": 4}
_DEFAULT = object()


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """Real HTTP against the simulator; ``key=None`` sends no credential."""

    def __init__(self, session: aiohttp.ClientSession, base: str, control_token: str | None = None) -> None:
        self.session = session
        self.base = base
        self.control_token = control_token  # sent on /_sim/ paths

    async def __call__(self, method: str, path: str, *, json_body: Any = _DEFAULT, data: Any = None,
                      key: str | None = TEST_KEY, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> Reply:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers.setdefault("Authorization", f"Bearer {key}")
        if self.control_token is not None and path.startswith("/_sim"):
            all_headers.update(control_headers(self.control_token))
        if json_body is not _DEFAULT:
            kwargs["json"] = json_body
        async with self.session.request(method, self.base + path, data=data, headers=all_headers,
                                        **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def create(self, kind: str = "image", key: str = TEST_KEY, **fields: Any) -> str:
        body = {**(IMAGE if kind == "image" else VIDEO), **fields}
        reply = await self("POST", f"/v1/{kind}s/generations/async", json_body=body, key=key)
        assert reply.status == 202, reply
        data = reply.json()
        return data["task_id"] if kind == "image" else data["taskId"]

    async def status(self, task_id: str, key: str = TEST_KEY) -> dict[str, Any]:
        reply = await self("GET", f"/api/tasks/{task_id}/status", key=key)
        assert reply.status == 200, reply
        return reply.json()

    async def until(self, task_id: str, statuses: set[str], timeout: float = 5.0) -> list[dict[str, Any]]:
        """Poll the guide route every 10 ms until the status is one of ``statuses``; all answers."""
        seen: list[dict[str, Any]] = []

        async def reached() -> bool:
            seen.append(await self.status(task_id))
            return seen[-1]["status"] in statuses

        await async_wait_until(reached, timeout, f"{task_id} reaching {statuses}", interval=0.01,
                               describe=lambda: f"last answer: {seen[-1] if seen else None}")
        return seen


@contextlib.asynccontextmanager
async def open_http(base: str, control_token: str | None = None) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, base, control_token)
