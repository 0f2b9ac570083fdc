"""One contract run: a simulator on loopback, one client under test with a key of its own, and
the helpers rules use to provoke behaviour (create tasks, inject faults) and to read the timeline.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contract_tests.client_profile import ClientProfile
from contract_tests.driver import ClientUnderTest, DriverError
from contract_tests.scenario import SCRIPT_HEADER, contract_scenario
from contract_tests.timing import DEFAULT_TOLERANCE, Tolerance
from contract_tests.verdict import Verdict
from contract_tests.waiting import poll_until
from simulator.app import Simulator
from simulator.background import BackgroundSimulator
from simulator.loop_watch import DEFAULT_STALL_THRESHOLD_S
from simulator.recorder import Record, RecordKind

# Server timings for contract runs: the documented ones, except that idle connections and
# handshakes are given up on sooner, which no rule depends on.
HUB_OPTIONS = {"disconnect_timeout": 5.0, "handshake_timeout": 5.0}
# Faults a run aims at its own client only (by its key).
_KEYED_FAULTS = ("drop_connections", "refuse_reconnects", "poll_errors")


def _client_dialect(simulator: Simulator) -> dict[str, Any]:
    """The served profile's client tables as JSON, for clients that cannot import them (Node)."""
    profile = simulator.profile
    hubs = {kind: {"path": h.path, "subscribe": h.subscribe, "unsubscribe": h.unsubscribe,
                   "progress": h.progress, "completed": h.completed, "failed": h.failed}
            for kind, h in profile.client_hubs.items()}
    return {"profile": profile.name, "hubs": hubs, "status_paths": dict(profile.status_paths)}


@dataclass
class ContractRun:
    profile: ClientProfile
    tolerance: Tolerance = DEFAULT_TOLERANCE
    hub_options: dict[str, Any] = field(default_factory=dict)
    background: BackgroundSimulator | None = None
    client: ClientUnderTest | None = None
    key: str = ""
    seed: int | None = None  # the simulator's seed: same seed, same ids and payloads
    # The least lateness of the simulator's event loop it records as a loop_stall (seconds).
    stall_threshold: float = DEFAULT_STALL_THRESHOLD_S
    verdicts: list[Verdict] = field(default_factory=list)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> ContractRun:
        simulator = Simulator(profile=self.profile.dialect, scenario=contract_scenario(), seed=self.seed,
                              hub_options={**HUB_OPTIONS, **self.hub_options},
                              stall_threshold=self.stall_threshold)
        self.background = BackgroundSimulator(simulator)
        self.background.start()
        self.key = self.background.call(simulator.keys.new_key)
        env = {
            "CONDUIT_BASE_URL": self.background.url,
            "CONDUIT_VIRTUAL_KEY": self.key,
            "CONDUIT_WEBHOOK_SECRET": simulator.webhook_secret,
            "CONDUIT_WEBHOOK_PORT": "0",
            "CONDUIT_PROFILE": self.profile.dialect,
            "CONDUIT_DIALECT": json.dumps(_client_dialect(simulator)),
            **self.profile.env,
        }
        # The client runs in the user's current folder, where a relative --client command points.
        self.client = ClientUnderTest(self.profile.command_argv(), env)
        self.client.start()
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        if self.background is not None:
            self.background.stop()

    @property
    def simulator(self) -> Simulator:
        assert self.background is not None
        return self.background.simulator

    @property
    def url(self) -> str:
        assert self.background is not None
        return self.background.url

    # -- provoking ----------------------------------------------------------------------------
    def create_task(self, kind: str = "image", script: str = "quick") -> str:
        """Create a task over REST with this client's key; the header picks its script."""
        path = "/v1/images/generations/async" if kind == "image" else "/v1/videos/generations/async"
        body = json.dumps({"prompt": f"contract {script}", "model": "contract-model"}).encode()
        request = urllib.request.Request(self.url + path, data=body, method="POST", headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
            SCRIPT_HEADER: script,
        })
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        return answer.get("task_id") or answer["taskId"]

    def track(self, kind: str = "image", script: str = "quick", via: str = "signalr") -> str:
        task_id = self.create_task(kind, script)
        assert self.client is not None
        self.client.track(task_id, kind, via)
        return task_id

    def start_scripted(self, name: str, steps: list[dict[str, Any]], faults: Sequence[dict[str, Any]] = (),
                       kind: str = "image") -> str:
        """Create a task of this client's key running ``steps`` and arm ``faults`` (each a fault
        mapping with its ``at``, in seconds) in one call on the server's loop.

        A rule that plans when its faults strike relative to a task's events needs both to count
        from one instant; two separate calls would leave the gap between them to the scheduler.
        Faults due at the same ``at`` arm in the order given (a refusal before the drop).
        """
        from simulator.scenarios import parse_fault, parse_scenario
        from simulator.tasks.model import TaskRequest

        script = parse_scenario({"name": name, "scripts": {name: {"steps": steps}}}, name).scripts[name]
        specs = [parse_fault({**fault, **({"key": self.key} if fault["kind"] in _KEYED_FAULTS else {})},
                             f"{name} fault") for fault in faults]
        simulator = self.simulator
        request = TaskRequest(kind=kind, prompt=f"contract {name}", model="contract-model", key=self.key)

        def create() -> str:
            simulator.tasks.register_script(name, script)
            task = simulator.tasks.create(request, script=name)
            simulator.faults.schedule(specs, "contract")
            return task.task_id

        assert self.background is not None
        return self.background.call(create)

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        assert self.background is not None
        if kind in _KEYED_FAULTS:
            params.setdefault("key", self.key)  # faults aimed at this client only
        return self.background.call(self.simulator.inject, kind, **params)

    def task_state(self, task_id: str) -> dict[str, Any]:
        assert self.background is not None
        task = self.background.call(lambda: self.simulator.tasks.get(task_id))
        return {"status": task.status.value, "progress": task.progress, "result": task.result,
                "error": task.error}

    def result_matches(self, task_id: str, reported: Any) -> bool:
        """Whether ``reported`` is the task's result in one of the forms the dialect gives it
        (the documented profile has one; the as-built one has the hub event's and the route's)."""
        assert self.background is not None
        forms = self.background.call(
            lambda: self.simulator.profile.result_forms(self.simulator.tasks.get(task_id)))
        return reported in forms

    def hub(self, kind: str) -> Any:
        """The dialect's hub for a task kind (path, subscribe and unsubscribe names, events)."""
        return self.simulator.profile.client_hubs[kind]

    # -- reading ------------------------------------------------------------------------------
    def records(self, kind: str | None = None, **match: Any) -> list[Record]:
        return self.simulator.recorder.records(kind, **match)

    def max_stall_ms(self) -> float:
        """The longest the simulator's event loop ran late during this run (its ``loop_stall``
        records; 0 when it never stalled past the recording threshold)."""
        if self.background is None:
            return 0.0
        return max((float(r.get("late_ms") or 0) for r in self.records(RecordKind.LOOP_STALL)), default=0.0)

    def wait_until(self, predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
        """The predicate's first truthy value, or its last falsy one after ``timeout``: a rule
        reports the absence as its verdict rather than failing here.

        A client that has exited cannot make the predicate true: :class:`DriverError` says so at
        once instead of waiting out the rule's whole budget."""
        client = self.client

        def live() -> Any:
            value = predicate()
            if not value and client is not None and client.gone:
                raise DriverError(client.crash_report("while the rule waited for it"))
            return value

        return poll_until(live, timeout, interval=interval)

    def record(self, verdict: Verdict) -> Verdict:
        self.verdicts.append(verdict)
        return verdict
