"""The rules ``check`` knows: IDs, the labels of their cases, one line each and the citation.

``check --list-rules`` prints it, and ``--rules`` is validated against it before anything starts
(a pattern that matches no rule is a usage error listing the known IDs, not "0 selected").
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from contract_tests.citations import Citation, citation


def case_label(rule: str, variant: str, cases: int) -> str:
    """A case's label: the rule ID, with ``[variant]`` when the rule has several cases (the same
    labels the checks put on their verdicts)."""
    return f"{rule}[{variant}]" if cases > 1 else rule


@dataclass(frozen=True)
class Entry:
    rule: str
    labels: tuple[str, ...]
    cited: Citation | None

    def line(self, width: int = 22) -> str:
        labels = ", ".join(self.labels) if self.labels != (self.rule,) else ""
        what = self.cited.line if self.cited else ""
        text = f"{self.rule:<{width}} {what}"
        if labels:
            text += f"\n{'':<{width}} cases: {labels}"
        if self.cited:
            text += f"\n{'':<{width}} {self.cited}"
        return text


def catalogue() -> list[Entry]:
    """Every C-* rule (with its cases), then every W-* rule, in the order they run."""
    from contract_tests.client_rules import CHECKS
    from contract_tests.webhook_rules import RULE_IDS

    entries = [Entry(rule, tuple(case_label(rule, v, len(cases)) for v, _c, _k in cases), citation(rule))
               for rule, cases in CHECKS.items()]
    entries += [Entry(rule, (rule,), citation(rule)) for rule in RULE_IDS]
    return entries


def known_rules() -> list[str]:
    return [entry.rule for entry in catalogue()]


def known_names() -> list[str]:
    """What ``--rules`` may name: every rule ID and every case label."""
    return list(dict.fromkeys(name for entry in catalogue() for name in (entry.rule, *entry.labels)))


def selects(pattern: str, rule: str, label: str) -> bool:
    """Whether a ``--rules`` pattern picks this case: a glob over the rule ID, or the case's label
    exactly (``C-RETRY-AFTER[503]``, whose brackets a glob would read as a set of characters)."""
    return pattern == label or fnmatch.fnmatchcase(rule, pattern)


def unknown_patterns(patterns: list[str], names: list[str]) -> list[str]:
    """The patterns that pick nothing among ``names`` (rule IDs and labels): a typo must not pass
    as "nothing to check"."""
    return [p for p in patterns if not any(p == name or fnmatch.fnmatchcase(name, p) for name in names)]


def split_patterns(raw: str | None) -> list[str]:
    return [p.strip() for p in (raw or "").split(",") if p.strip()]
