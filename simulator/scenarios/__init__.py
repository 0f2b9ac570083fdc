"""Scenarios: what each task does, which task does what, and the faults of a run.

A scenario file (``simulator/scenarios/bundled/*.yaml`` or any path) is read by :func:`load_scenario`
into a :class:`Scenario`; the engine asks it for each task's :class:`TaskScript` and builds the
task's content with a seeded :class:`PayloadFactory`. See :mod:`simulator.scenarios.loader` for
the file format.
"""

from simulator.scenarios.loader import (
    CONTROL_API,
    DEFAULT_SCENARIO,
    FAULT_PARAMS,
    SCENARIO_DIR,
    ScenarioError,
    bundled_scenarios,
    dump_scenario,
    load_scenario,
    loads_scenario,
    parse_duration,
    parse_fault,
    parse_scenario,
)
from simulator.scenarios.model import FAULT_KINDS, FaultSpec, Rule, Scenario, Step, TaskScript
from simulator.scenarios.payloads import PayloadFactory, TaskPayloads

__all__ = [
    "CONTROL_API", "DEFAULT_SCENARIO", "FAULT_KINDS", "FAULT_PARAMS", "SCENARIO_DIR", "FaultSpec",
    "PayloadFactory", "Rule", "Scenario", "ScenarioError", "Step", "TaskPayloads", "TaskScript",
    "bundled_scenarios", "dump_scenario", "load_scenario", "loads_scenario", "parse_duration",
    "parse_fault", "parse_scenario",
]
