"""The profile facts the report shows beside a rule judged in a dialect other than the guide's.

A verdict of, say, C-OUTCOME means something else when the client was judged against the real
server's dialect (``conduit-2025.08``): other event names and shapes, other status spellings. The
facts shown are the rows of ``conduit-harness profiles diff documented <dialect>``
(:func:`simulator.profiles.diff.diff`), restricted to the sections the rule depends on, so the
page and the CLI say the same thing from the same data.

:data:`RULE_SECTIONS` is the one place that says which parts of a dialect each rule exercises.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from simulator.profiles import load_profile
from simulator.profiles.diff import Section, diff

BASELINE = "documented"

_POLLING = ("routes", "casing", "statuses")
_WEBHOOKS = ("webhook-bodies", "webhook-signing")
# Rule → the diff sections (simulator.profiles.diff.SECTION_KEYS) whose facts decide it.
RULE_SECTIONS: dict[str, tuple[str, ...]] = {
    "C-POLL-INTERVAL": _POLLING,
    "C-POLL-LIMIT": _POLLING,
    "C-POLL-STOP": _POLLING,
    "C-POLL-ERRORS": ("routes",),
    "C-RETRY-AFTER": ("routes",),
    "C-RECONNECT-SCHEDULE": ("hubs", "timings"),
    "C-RECONNECT-CLOSE": ("hubs", "timings"),
    "C-RESUBSCRIBE": ("hubs", "methods"),
    "C-NO-LOST-TERMINAL": ("routes", "statuses", "emissions"),
    "C-FALLBACK": _POLLING,
    "C-OUTCOME": ("statuses", "events", "emissions"),
    "C-LATENCY": ("emissions",),
    "C-AUTH": ("hubs",),
    "C-POOL": ("hubs",),
    "C-CLEANUP": ("methods",),
    "W-ACCEPT": _WEBHOOKS,
    "W-RAW-BODY": _WEBHOOKS,
    "W-REJECT": _WEBHOOKS,
    "W-NO-CRASH": _WEBHOOKS,
    "W-DUPLICATE": _WEBHOOKS,
    "W-FAST-ACK": _WEBHOOKS,
    "W-METHOD": _WEBHOOKS,
}


@dataclass(frozen=True)
class DialectFacts:
    """Where ``dialect`` differs from the guide in the parts of the protocol one rule exercises."""

    rule: str
    dialect: str
    sections: tuple[Section, ...]  # only sections with at least one difference
    problem: str | None = None  # why there are no facts (an unknown profile name)

    @property
    def count(self) -> int:
        return sum(len(s.rows) for s in self.sections)


@cache
def _full_diff(dialect: str) -> tuple[Section, ...]:
    return tuple(diff(load_profile(BASELINE), load_profile(dialect)))


def facts_for(rule: str, dialect: str | None) -> DialectFacts | None:
    """The facts to show beside ``rule`` judged in ``dialect``; None when there are none to show
    (the guide's own dialect, a dialect the run does not name, a rule that depends on no profile
    fact, or a dialect that agrees with the guide in every part the rule exercises). A dialect
    this harness does not know gives facts whose ``problem`` says so."""
    if dialect is None or dialect == BASELINE or rule not in RULE_SECTIONS:
        return None
    try:
        sections = _full_diff(dialect)
    except ValueError as exc:  # a profile name this harness does not know
        return DialectFacts(rule, dialect, (), problem=str(exc))
    wanted = RULE_SECTIONS[rule]
    found = tuple(s for s in sections if s.key in wanted and s.rows)
    return DialectFacts(rule, dialect, found) if found else None
