"""Running the rules side by side (``check --jobs N``): which runs first, and on which worker.

Every rule case already has its own simulator, key and client process, so cases are independent
and pytest-xdist can run them in N worker processes. Its stock ``load`` scheduler hands each
worker consecutive tests in pairs (a worker starts a test only once it knows the next one), which
can queue the longest rule behind another long one. Here the workers sort the cases longest-first
by :func:`contract_tests.client_rules.estimated_seconds` (the same estimate ``--max-rule-seconds``
uses), and :class:`LongestFirstScheduling` pairs them like a snake — the longest with the shortest
of the first 2N, the second longest with the second shortest — then gives each worker one more
case as it finishes one, so the suite's wall time approaches its longest rule.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

# Each rule spends most of its time waiting on its schedule: a serial run of the fast Python
# reference used 9 CPU-seconds in 70 s (0.13 of a core, simulator and client together). Four rules
# per core then use about half of each core, which leaves the rest idle so the simulators and
# clients get a CPU when their timers fire and the timing judgements keep their margins.
RULES_PER_CORE = 4


def default_jobs() -> int:
    """How many rules ``check`` runs at once unless told: :data:`RULES_PER_CORE` per usable core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, RULES_PER_CORE * cores)


def longest_first(items: list[pytest.Item], seconds: Any) -> None:
    """Sort ``items`` in place, longest estimate first (ties keep the catalogue's order)."""
    order = {item: -seconds(item) for item in items}
    items.sort(key=order.__getitem__)


class LongestFirstScheduling(LoadScheduling):
    """Snake pairs of the longest-first collection to begin with, then one case at a time."""

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()  # a worker was replaced, or the collections differ: xdist decides
            return
        self.collection = next(iter(self.node2collection.values()))
        count = len(self.collection)
        self.pending[:] = range(count)
        self.maxschedchunk = 1  # refills: one case per finished case
        first = min(count, 2 * len(self.nodes))
        for i, node in enumerate(self.nodes):
            picks = sorted({i, first - 1 - i}) if i <= first - 1 - i else []
            if picks:
                node.send_runtest_some(picks)
                self.node2pending[node].extend(picks)
                for index in picks:
                    self.pending.remove(index)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()
