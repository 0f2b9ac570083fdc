"""Client profiles: the numbers a client declares, which the suite then holds it to.

A profile is a TOML file. Every value defaults to the documented one (the C-* table of the
contract), so an empty profile means "this client follows the guide". The ``[env]`` table is
passed to the client's process: that is how a client that offers knobs lets the suite shrink its
waits (the declared values must then say what the knobs make it do).

The package bundles the reference clients' profiles (``client_profiles/*.toml``, read as package
data); :func:`find_profile` takes one of their names (``python-reference-fast``) or a file path,
so a user names a bundled client without knowing where the package is installed. In ``command``,
``{python}`` stands for the interpreter running the suite, ``{node_client}`` for the bundled
Node reference client (see :mod:`contract_tests.node`) and ``{node_receiver}`` for the bundled
Node webhook receiver, so bundled commands work from any folder.
"""

from __future__ import annotations

import math
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
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
        """The command as argv, placeholders replaced (see the module doc).

        ``{node_client}`` may install the Node client's npm packages on first use, and raises
        :class:`contract_tests.node.NodeUnavailable` when Node.js is missing.
        """
        if not self.command:
            raise ProfileError(f"{self.source}: command: no client command given (use --client)")
        return [_expand(word) for word in shlex.split(self.command)]

    @property
    def needs_node(self) -> bool:
        return bool(self.command) and "{node_client}" in (self.command or "")

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


def _expand(word: str) -> str:
    if word == "{python}":
        return sys.executable
    if word == "{node_client}":
        from contract_tests.node import node_client_script

        return str(node_client_script())
    if word == "{node_receiver}":
        from contract_tests.node import node_executable
        from contract_tests.receivers import NODE_RECEIVER

        node_executable()  # a clear message when Node.js is missing
        return str(NODE_RECEIVER.resolve())
    return word


def _bundled_folder() -> Traversable:
    return resources.files("contract_tests") / "client_profiles"


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped with the package (the reference clients)."""
    return sorted(entry.name.removesuffix(".toml") for entry in _bundled_folder().iterdir()
                  if entry.name.endswith(".toml"))


def find_profile(name_or_path: str | Path) -> ClientProfile:
    """A profile from a file, or a bundled one by name (a file of that name wins)."""
    path = Path(name_or_path)
    if path.is_file():
        return load_profile(path)
    name = str(name_or_path)
    if name in bundled_profiles():
        text = (_bundled_folder() / f"{name}.toml").read_text(encoding="utf-8")
        try:
            return parse_profile(tomllib.loads(text), f"bundled profile {name}")
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"bundled profile {name}: invalid TOML: {exc}") from exc
    raise ProfileError(f"{name}: no such file, and no bundled profile of that name "
                       f"(bundled: {', '.join(bundled_profiles())})")


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
        if isinstance(formula, bool) or not isinstance(formula, int) \
                or not 1 <= formula <= MAX_RECONNECT_ATTEMPTS:
            raise ProfileError(f"{source}: reconnect.formula: must be the number of attempts "
                               f"(1 to {MAX_RECONNECT_ATTEMPTS})")
        values["reconnect_delays_ms"] = guide_formula_delays(formula)
    return ClientProfile(**values)


# Every number's range: (lowest, highest, whole numbers only). Finite by construction; the upper
# bounds are far beyond any real client and keep every rule's wait (declared value × a few) finite
# and short enough to report: an hour for a delay or an interval, ten minutes for a latency bound.
HOUR_MS = 3_600_000
MAX_RECONNECT_ATTEMPTS = 100
RANGES: dict[str, tuple[float, float, bool]] = {
    "reconnect_delays_ms": (0, HOUR_MS, True),
    "manual_restart_ms": (0, HOUR_MS, True),
    "poll_interval_ms": (1, HOUR_MS, True),
    "poll_limit": (1, 100_000, True),
    "max_connections": (1, 1000, True),
    "signalr_p95_ms": (0, 600_000, False),
    "webhook_p95_ms": (0, 600_000, False),
    "polling_slack_ms": (0, 600_000, False),
}


def _in_range(value: Any, field_name: str) -> bool:
    low, high, whole = RANGES[field_name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if whole and not isinstance(value, int):
        return False
    return math.isfinite(value) and low <= value <= high


def _range_text(field_name: str) -> str:
    low, high, whole = RANGES[field_name]
    return f"{'a whole number' if whole else 'a finite number'} from {low:,} to {high:,}"


def _number(value: Any, where: str, field_name: str) -> Any:
    if field_name == "reconnect_delays_ms":
        if not isinstance(value, list) or not value or len(value) > MAX_RECONNECT_ATTEMPTS or not all(
                _in_range(v, field_name) for v in value):
            raise ProfileError(f"{where}: must be a non-empty list of at most {MAX_RECONNECT_ATTEMPTS} "
                               f"delays in milliseconds, each {_range_text(field_name)}")
        return tuple(value)
    if not _in_range(value, field_name):
        raise ProfileError(f"{where}: must be {_range_text(field_name)}, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, bool | int | float | str) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
