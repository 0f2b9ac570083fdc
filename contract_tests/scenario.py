"""The scenario the contract suite runs: short scripts chosen per task by a header.

Each rule provokes what it needs by creating tasks with ``X-Sim-Script: <script>``. The first
event of every script comes a second after creation, so a client that subscribes when told to
track has time to do so.
"""

from __future__ import annotations

from simulator.scenarios import Scenario, parse_scenario

SCRIPT_HEADER = "X-Sim-Script"


def _progress(*steps: tuple[float, int]) -> list[dict[str, object]]:
    return [{"after": after, "progress": progress} for after, progress in steps]


SCRIPTS: dict[str, list[dict[str, object]]] = {
    # ~1.9 s: the everyday task.
    "quick": _progress((1.0, 10), (0.3, 40), (0.3, 80)) + [{"after": 0.3, "status": "completed"}],
    "fail": _progress((1.0, 20)) + [{"after": 0.4, "status": "failed", "error": "Model overloaded"}],
    # ~12 s of progress, one step a second: stays active across drops and reconnects.
    "long": _progress(*((1.0, p) for p in range(5, 100, 9))) + [{"after": 1.0, "status": "completed"}],
    # Never ends within a test.
    "never": _progress((1.0, 1)) + [{"after": 3600, "status": "completed"}],
    # Progress at 1 s, completion at 4 s: the suite disconnects the client in between.
    "ends-while-away": _progress((1.0, 10)) + [{"after": 3.0, "status": "completed"}],
    # Fast progress steps, so a delayed one arrives after its successors.
    "stepped": _progress((1.0, 10), (0.15, 20), (0.15, 30), (0.15, 40), (0.15, 50))
    + [{"after": 0.8, "status": "completed"}],
}


def contract_scenario() -> Scenario:
    return parse_scenario(
        {
            "name": "contract",
            "description": "short scripts for the contract suite, chosen by the X-Sim-Script header",
            "scripts": {name: {"steps": steps} for name, steps in SCRIPTS.items()},
            "rules": [{"match": {"header": {SCRIPT_HEADER: name}}, "script": name} for name in SCRIPTS
                      if name != "quick"],
            "default": "quick",
        },
        "contract_tests/scenario.py",
    )
