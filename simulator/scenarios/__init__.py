"""Scenarios: what each task does, which task does what, and the faults of a run.

A scenario file (``simulator/scenarios/bundled/*.yaml`` or any path) is read by :func:`load_scenario`
into a :class:`Scenario`; the engine asks it for each task's :class:`TaskScript` and builds the
task's content with a seeded :class:`PayloadFactory`. See :mod:`simulator.scenarios.loader` for
the file format.
"""

from simulator.scenarios.errors import CONTROL_API, ScenarioError
from simulator.scenarios.fault_schema import FAULT_KINDS, FAULT_PARAMS, fault_kinds_doc
from simulator.scenarios.loader import (
    DEFAULT_SCENARIO,
    SCENARIO_DIR,
    bundled_scenarios,
    dump_scenario,
    load_scenario,
    loads_scenario,
    parse_duration,
    parse_fault,
    parse_scenario,
)
from simulator.scenarios.model import FaultSpec, Rule, Scenario, Step, TaskScript
from simulator.scenarios.payloads import PayloadFactory, TaskPayloads

__all__ = [
    "CONTROL_API", "DEFAULT_SCENARIO", "FAULT_KINDS", "FAULT_PARAMS", "SCENARIO_DIR", "FaultSpec",
    "PayloadFactory", "Rule", "Scenario", "ScenarioError", "Step", "TaskPayloads", "TaskScript",
    "bundled_scenarios", "dump_scenario", "fault_kinds_doc", "load_scenario", "loads_scenario",
    "parse_duration", "parse_fault", "parse_scenario",
]
