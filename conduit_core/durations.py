"""The one way a duration is written anywhere in the harness: ``250ms``, ``1.5s``, ``2m``, ``1h30m``.

A written duration is one or more terms, each a decimal number and a unit (``ms``, ``s``, ``m``,
``h``), optionally separated by spaces: ``"90s"``, ``"1m30s"``, ``" 1.5 s "``. No exponents, no
signs, ASCII digits only. A number (``int`` or ``float``, never ``bool``) is taken in the caller's
``number_unit``; a bare number written as a string (``"90"``) only when the caller names a
``bare_unit`` for it (Locust's ``-t 90`` means seconds; a threshold ``<100`` means milliseconds).
Callers that must refuse some units (a scenario file does not take hours) pass ``units``.

Every duration is finite, not negative and at most :data:`MAX_SECONDS` (a month): a value beyond
that is a typo, and an infinite one would hang whatever waits for it. Mistakes raise
:class:`DurationError`, a ``ValueError`` whose message says what was written and how to write it;
callers add where it was written. This module is sans-I/O and imports nothing of ours.
"""

from __future__ import annotations

import math
import re
from typing import Any

UNIT_SECONDS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# One month: longer than any run, wait or delay the harness has a use for.
MAX_SECONDS = 30 * 24 * 3600.0

_TERM = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?", re.ASCII)
_EXAMPLES = '"250ms", "1.5s", "2m"'


class DurationError(ValueError):
    """A duration that is not one; the message says what was given and what is accepted."""


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # e.g. an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _terms(text: str) -> list[tuple[str, str | None]]:
    """``"1m 30s"`` → ``[("1", "m"), ("30", "s")]``; ``[]`` when the text is not that shape."""
    terms: list[tuple[str, str | None]] = []
    pos = 0
    stripped = text.strip()
    while pos < len(stripped):
        found = _TERM.match(stripped, pos)
        if found is None or found.end() == pos:
            return []
        terms.append((found[1], found[2]))
        pos = found.end()
    return terms


def parse_duration(value: Any, *, number_unit: str = "s", bare_unit: str | None = None,
                   units: tuple[str, ...] = tuple(UNIT_SECONDS), max_seconds: float = MAX_SECONDS) -> float:
    """Seconds from a number (in ``number_unit``) or a written duration; see the module docstring."""
    allowed = ", ".join(units)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(f"must be a duration (a number, or a string like {_EXAMPLES}), "
                            f"not {type(value).__name__} {_show(value)}")
    if isinstance(value, str):
        if value.strip().startswith("-") and _terms(value.strip()[1:]):
            raise DurationError(f"duration {_show(value)} is negative")
        terms = _terms(value)
        bare = len(terms) == 1 and terms[0][1] is None
        if not terms or (bare and bare_unit is None) or (not bare and any(u is None for _, u in terms)):
            plain = f" or a plain number of {bare_unit}" if bare_unit else ""
            raise DurationError(f"bad duration {_show(value)}: write a number with a unit {allowed} "
                                f"({_EXAMPLES}){plain}")
        seconds = 0.0
        for number, unit in terms:
            unit = unit or bare_unit
            assert unit is not None
            if unit not in units:
                raise DurationError(f"bad duration {_show(value)}: unit {unit} is not accepted here; "
                                    f"use one of {allowed}")
            seconds += float(number) * UNIT_SECONDS[unit]
    else:
        try:
            seconds = float(value) * UNIT_SECONDS[number_unit]
        except OverflowError:
            seconds = math.inf
    if not math.isfinite(seconds):
        raise DurationError(f"duration {_show(value)} is not a finite number")
    if seconds < 0:
        raise DurationError(f"duration {_show(value)} is negative")
    if seconds > max_seconds:
        raise DurationError(f"duration {_show(value)} is longer than the limit of {max_seconds:g} s "
                            f"({max_seconds / 86400:g} days)")
    return seconds
