"""What hubs, REST routes and the control API share for one run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.auth import KeyStore
from simulator.faults import FaultController
from simulator.recorder import Recorder
from simulator.tasks.engine import TaskEngine


@dataclass
class Services:
    recorder: Recorder
    keys: KeyStore
    tasks: TaskEngine
    faults: FaultController
    scenario: Any
    webhooks: Any = None  # the WebhookDispatcher, once started
    webhook_secret: str = ""
    allowed_webhook_hosts: tuple[str, ...] = ()
    seed: int | None = None
    time_scale: float = 1.0

    def task_owner(self, task_id: str) -> str | None:
        return self.tasks.owner(task_id)
