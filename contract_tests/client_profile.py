"""Client profiles: the numbers a client declares, which the suite then holds it to.

A profile is a TOML file (``contract_tests/client_profiles/*.toml``). Every value defaults to the documented
one (contract.md, C-* table), so an empty profile means "this client follows the guide". The
``[env]`` table is passed to the client's process: that is how a client that offers knobs lets
the suite shrink its waits (the declared values must then say what the knobs make it do).
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCUMENTED_RECONNECT_DELAYS_MS = (0, 2000, 10000, 30000)


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


def guide_formula_delays(max_attempts: int = 6) -> tuple[int, ...]:
    """The guide's custom policy, ``min(1000·2^n, 30000)``, for ``max_attempts`` attempts."""
    return tuple(min(1000 * 2**n, 30000) for n in range(max_attempts))


@dataclass(frozen=True)
class ClientProfile:
    name: str = "documented"
    command: str | None = None
    # The dialect the client speaks, a simulator profile (``profile = "conduit-2025.08"``): the
    # suite serves it and the client is told it in CONDUIT_PROFILE.
    dialect: str = "documented"
    reconnect_delays_ms: tuple[int, ...] = DOCUMENTED_RECONNECT_DELAYS_MS
    manual_restart_ms: int = 5000
    poll_interval_ms: int = 5000
    poll_limit: int = 60
    max_connections: int = 5
    signalr_p95_ms: float = 100.0
    webhook_p95_ms: float = 1000.0
    polling_slack_ms: float = 1000.0
    env: dict[str, str] = field(default_factory=dict)
    source: str = "<defaults>"

    def command_argv(self) -> list[str]:
        """The command as argv; ``{python}`` stands for the interpreter running the suite."""
        if not self.command:
            raise ProfileError(f"{self.source}: command: no client command given (use --client)")
        return [sys.executable if word == "{python}" else word for word in shlex.split(self.command)]

    @property
    def reconnect_delays_s(self) -> tuple[float, ...]:
        return tuple(d / 1000 for d in self.reconnect_delays_ms)


_SECTIONS: dict[str, dict[str, str]] = {
    # section → key → ClientProfile field
    # formula = N: the guide's min(1000·2^n, 30000) for N attempts, instead of delays_ms.
    "reconnect": {"delays_ms": "reconnect_delays_ms", "manual_restart_ms": "manual_restart_ms",
                  "formula": "reconnect_formula"},
    "polling": {"interval_ms": "poll_interval_ms", "limit": "poll_limit"},
    "pool": {"max_connections": "max_connections"},
    "latency": {"signalr_p95_ms": "signalr_p95_ms", "webhook_p95_ms": "webhook_p95_ms",
                "polling_slack_ms": "polling_slack_ms"},
}


def load_profile(path: str | Path) -> ClientProfile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: invalid TOML: {exc}") from exc
    return parse_profile(data, str(path))


def parse_profile(data: dict[str, Any], source: str) -> ClientProfile:
    values: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key in ("name", "command"):
            if not isinstance(value, str) or not value.strip():
                raise ProfileError(f"{source}: {key}: must be a non-empty string")
            values[key] = value
        elif key == "profile":
            from simulator.profiles import REGISTRY

            if value not in REGISTRY:
                raise ProfileError(f"{source}: profile: {value!r} is not a simulator profile; known: "
                                   f"{', '.join(REGISTRY)}")
            values["dialect"] = value
        elif key == "env":
            if not isinstance(value, dict) or not all(
                    isinstance(v, str | int | float) for v in value.values()):
                raise ProfileError(f"{source}: env: must be a table of NAME = \"value\"")
            values["env"] = {str(k): str(v) for k, v in value.items()}
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ProfileError(f"{source}: {key}: must be a table")
            for sub, sub_value in value.items():
                field_name = _SECTIONS[key].get(sub)
                if field_name is None:
                    raise ProfileError(f"{source}: {key}.{sub}: unknown setting; known: "
                                       f"{', '.join(_SECTIONS[key])}")
                if field_name != "reconnect_formula":
                    values[field_name] = _number(sub_value, f"{source}: {key}.{sub}", field_name)
        elif key == "reconnect_formula":
            raise ProfileError(f"{source}: {key}: put it under [reconnect] as formula")
        else:
            raise ProfileError(f"{source}: {key}: unknown setting; known: name, command, profile, env, "
                               f"{', '.join(_SECTIONS)}")
    formula = data.get("reconnect", {}).get("formula") if isinstance(data.get("reconnect"), dict) else None
    if formula is not None:
        if isinstance(formula, bool) or not isinstance(formula, int) or formula < 1:
            raise ProfileError(f"{source}: reconnect.formula: must be the number of attempts (≥ 1)")
        values["reconnect_delays_ms"] = guide_formula_delays(formula)
    return ClientProfile(**values)


def _number(value: Any, where: str, field_name: str) -> Any:
    if field_name == "reconnect_delays_ms":
        if not isinstance(value, list) or not value or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise ProfileError(f"{where}: must be a non-empty list of milliseconds (integers ≥ 0)")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProfileError(f"{where}: must be a number ≥ 0")
    return value
