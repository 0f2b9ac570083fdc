"""What each C-* rule needs to have happened before it may judge, declared as data.

A rule judges a client's reaction to something the suite provoked: a drop, a refusal, a 429, a
terminal event while the client was away. When that provocation did not happen — the client never
connected, a short reconnect schedule ran out before the task ended, a polling-only client was
asked to use SignalR — a rule that judged anyway would report a vacuous PASS. So every rule
declares its :class:`Requirement` s here, each a sentence and a predicate over the *facts* its
check read off the timeline (a plain mapping: ``{"throttled": 1, "after_throttle": 2}``), and a
check whose requirements are not all met returns INCONCLUSIVE naming what was missing, never PASS.

The table is data so that it can be shown (``PROVOKED_BY[rule].describe()``) and tested with
made-up facts, without a live run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contract_tests.verdict import Outcome, Statement, Verdict

Facts = Mapping[str, Any]


@dataclass(frozen=True)
class Requirement:
    """One thing that must be on the timeline: ``needs`` says it in words, ``met`` checks it."""

    needs: str
    met: Callable[[Facts], bool]

    def holds(self, facts: Facts) -> bool:
        try:
            return bool(self.met(facts))
        except (KeyError, TypeError):  # a fact the check could not establish is a fact missing
            return False


@dataclass(frozen=True)
class Provocation:
    """A rule's requirements, all of which must hold for it to judge."""

    rule: str
    requires: tuple[Requirement, ...]

    def missing(self, facts: Facts) -> list[str]:
        return [r.needs for r in self.requires if not r.holds(facts)]

    def describe(self) -> str:
        return "; ".join(r.needs for r in self.requires)

    def inconclusive(self, facts: Facts, observed: Statement | None = None,
                     evidence: tuple[str, ...] = ()) -> Verdict | None:
        """INCONCLUSIVE naming what did not happen, or None when the rule may judge."""
        missing = self.missing(facts)
        if not missing:
            return None
        return Verdict(self.rule, Outcome.INCONCLUSIVE,
                       "not provoked: " + "; ".join(f"no sign that {m}" for m in missing),
                       expected=Statement("before judging: " + self.describe()),
                       observed=observed or Statement("missing: " + "; ".join(missing)),
                       evidence=tuple(evidence),
                       details={"missing": missing, "facts": {k: _plain(v) for k, v in facts.items()}})


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def _at_least(name: str, count: int = 1) -> Callable[[Facts], bool]:
    return lambda facts: facts[name] >= count


def _true(name: str) -> Callable[[Facts], bool]:
    return lambda facts: facts[name] is True


CONNECTED = Requirement("the client held a SignalR connection before the fault", _true("connected"))
DROPPED = Requirement("the server dropped the client's connection", _at_least("drops"))

PROVOKED_BY: dict[str, Provocation] = {p.rule: p for p in (
    Provocation("C-POLL-INTERVAL", (
        Requirement("the client polled the task at least twice", _at_least("polls", 2)),)),
    Provocation("C-POLL-LIMIT", (
        Requirement("the client polled the never-ending task", _at_least("polls")),)),
    Provocation("C-POLL-STOP", (
        Requirement("a poll was answered with a terminal status", _true("terminal_served")),)),
    Provocation("C-POLL-ERRORS", (
        Requirement("a poll was answered with a server error", _at_least("failed_polls")),)),
    Provocation("C-RETRY-AFTER", (
        Requirement("a 429/503 with Retry-After was served to the client", _at_least("throttled")),
        Requirement("the client made a request after it", _at_least("after_throttle")),)),
    Provocation("C-RECONNECT-SCHEDULE", (CONNECTED, DROPPED)),
    Provocation("C-RECONNECT-CLOSE", (
        CONNECTED, Requirement("a Close message without allowReconnect was sent", _at_least("closes")),)),
    Provocation("C-RESUBSCRIBE", (
        Requirement("the client subscribed to the task before the drop", _true("subscribed")),
        DROPPED,
        Requirement("a reconnect happened", _true("reconnected")),)),
    Provocation("C-NO-LOST-TERMINAL", (
        Requirement("the client was following the task over SignalR before the drop",
                    _true("subscribed")),
        DROPPED,
        Requirement("the task's terminal event was emitted while the client was disconnected",
                    _true("ended_while_away")),
        Requirement("the client came back by an automatic reconnect after the terminal event",
                    _true("automatic_reconnect_after_end")),)),
    Provocation("C-FALLBACK", (
        Requirement("SignalR was unavailable: a connection attempt of the client was refused",
                    _at_least("refused")),
        Requirement("the task ended", _true("ended")),)),
    Provocation("C-OUTCOME", (
        Requirement("the tasks' events were sent to the client over SignalR", _at_least("delivered_tasks")),
        Requirement("every task ended on the server", _true("all_ended")),)),
    Provocation("C-LATENCY", (
        Requirement("events were emitted and the client reported them", _at_least("samples")),
        Requirement("the client used the channel being timed", _at_least("channel_used")),)),
    Provocation("C-AUTH", (
        Requirement("the client tried to connect to a hub", _at_least("attempts")),)),
    Provocation("C-POOL", (
        Requirement("the client opened a hub connection", _at_least("connections_opened")),
        Requirement("more tasks than the pool's limit were followed at once", _true("over_limit")),)),
    Provocation("C-CLEANUP", (
        Requirement("the client subscribed to each task", _true("all_subscribed")),
        Requirement("every task ended", _true("all_ended")),)),
)}


def not_provoked(rule: str, facts: Facts, observed: Statement | None = None,
                 evidence: tuple[str, ...] = ()) -> Verdict | None:
    """The INCONCLUSIVE verdict when ``rule``'s requirements do not hold on ``facts``, else None."""
    return PROVOKED_BY[rule].inconclusive(facts, observed, evidence)
