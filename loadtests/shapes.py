"""Load shapes: steady, ramp, spike and reconnect storm.

All read Locust's common options (``-u`` users, ``-r`` spawn rate, ``-t`` run time; 60 s when no
run time is given). The locustfile exposes the one named by ``CONDUIT_LOAD_SHAPE`` (Locust uses
the first shape class it finds, so only the chosen one may be visible), e.g.::

    CONDUIT_LOAD_SHAPE=spike locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 60s

==================  ==========================================================================
shape               users over the run time T
==================  ==========================================================================
steady              ``-u`` users (spawned at ``-r``/s) for the whole run
ramp                rises linearly from 1 to ``-u`` over the first 80 % of T, then holds
spike               ``-u``/5 users, ``-u`` from 30 % to 60 % of T (spawned within a second),
                    then back to ``-u``/5
reconnect-storm     steady, and at ``--conduit-storm-at`` s (default 40 % of T, after the ramp)
                    asks the simulator (``POST /_sim/faults``) to drop every connection; the
                    summary then reports how many were dropped, when the last client was back
                    (recovery), each client's own recovery time and the peak reconnect rate
                    (clients' reconnects and the simulator's negotiates per second)
==================  ==========================================================================
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import gevent
import locust  # noqa: F401  (before requests: Locust monkey-patches ssl and sockets)
import requests
from locust import LoadTestShape

from loadtests import metrics
from loadtests.options import SHAPE_NAMES
from simulator.security import control_headers

log = logging.getLogger(__name__)

DEFAULT_RUN_TIME = 60.0
SHAPE_ENV = "CONDUIT_LOAD_SHAPE"


class CommonOptionsShape(LoadTestShape):
    abstract = True
    use_common_options = True

    def params(self) -> tuple[int, float, float]:
        options = getattr(self.runner.environment, "parsed_options", None) if self.runner else None
        users = int(getattr(options, "num_users", None) or 1)
        rate = float(getattr(options, "spawn_rate", None) or users)
        run_time = float(getattr(options, "run_time", None) or DEFAULT_RUN_TIME)
        return users, rate, run_time


class SteadyShape(CommonOptionsShape):
    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self.params()
        if self.get_run_time() >= run_time:
            return None
        return users, rate


class RampShape(CommonOptionsShape):
    RAMP_SHARE = 0.8

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self.params()
        t = self.get_run_time()
        if t >= run_time:
            return None
        share = min(1.0, t / (run_time * self.RAMP_SHARE))
        return max(1, math.ceil(users * share)), max(rate, users / (run_time * self.RAMP_SHARE))


class SpikeShape(CommonOptionsShape):
    SPIKE = (0.3, 0.6)

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self.params()
        t = self.get_run_time()
        if t >= run_time:
            return None
        base = max(1, users // 5)
        start, end = self.SPIKE
        if run_time * start <= t < run_time * end:
            return users, max(rate, float(users))
        return base, max(rate, float(users))


class ReconnectStormShape(CommonOptionsShape):
    """Steady load, then every connection dropped at once by the simulator's fault API."""

    def __init__(self) -> None:
        super().__init__()
        self._scheduled = False
        self._control: str | None = None
        self._control_headers: dict[str, str] = {}

    def reset_time(self) -> None:
        super().reset_time()
        self._scheduled = False
        metrics.clear_storm()

    def tick(self) -> tuple[int, float] | None:
        users, rate, run_time = self.params()
        t = self.get_run_time()
        if t >= run_time:
            return None
        if not self._scheduled:
            self._scheduled = True
            settings = metrics.settings(self.runner.environment)
            at = settings.conduit_storm_at
            if at is None:
                at = max(run_time * 0.4, users / rate + 1.0)
            if at >= run_time:
                log.warning("reconnect storm at %.1f s is not within the run time (%.1f s)", at, run_time)
            self._control = (settings.conduit_control_url or self.runner.environment.host or "").rstrip("/")
            self._control_headers = control_headers(settings.conduit_control_token or "")
            metrics.record_storm({"planned_at_s": at, "mode": settings.conduit_storm_mode})
            gevent.spawn_later(max(0.0, at - t), self._drop, settings.conduit_storm_mode)
        return users, rate

    def _drop(self, mode: str) -> None:
        started = time.time()
        info: dict[str, Any] = {"drop_at": started, "at_s": self.get_run_time(),
                                "connected_users_before": self.runner.user_count if self.runner else None}
        try:
            response = requests.post(f"{self._control}/_sim/faults",
                                     json={"kind": "drop_connections", "mode": mode}, timeout=10,
                                     headers=self._control_headers)
            response.raise_for_status()
            applied = response.json().get("applied", [{}])
            info["dropped"] = int(applied[0].get("hits", 0)) if applied else 0
        except (requests.RequestException, ValueError) as exc:
            info["error"] = f"drop_connections failed: {exc}"
            log.error("reconnect storm: %s", info["error"])
        info["drop_request_ms"] = (time.time() - started) * 1000.0
        metrics.record_storm(info)

    def finish_storm(self) -> None:
        """Read the simulator's negotiate records (called when the reports are written)."""
        if not self._control:
            return
        walls: list[float] = []
        params = {"kind": "negotiate", "since": "0", "limit": "10000"}
        for _page in range(1000):  # the timeline answers in bounded pages: follow them to the end
            response = requests.get(f"{self._control}/_sim/timeline", params=params, timeout=10,
                                    headers=self._control_headers)
            response.raise_for_status()
            page = response.json()
            walls += [float(r["wall"]) for r in page.get("records", []) if "wall" in r]
            if not page.get("more"):
                break
            params["since"] = str(page["last_seq"])
        metrics.record_storm({"server_negotiates": walls})


SHAPES: dict[str, type[LoadTestShape]] = {
    "steady": SteadyShape,
    "ramp": RampShape,
    "spike": SpikeShape,
    "reconnect-storm": ReconnectStormShape,
}
assert tuple(SHAPES) == SHAPE_NAMES


def selected_shape(name: str | None = None) -> type[LoadTestShape] | None:
    """The shape class named by ``name`` or ``$CONDUIT_LOAD_SHAPE``; None when neither is set."""
    name = (name if name is not None else os.environ.get(SHAPE_ENV, "")).strip().lower()
    if not name:
        return None
    try:
        return SHAPES[name]
    except KeyError:
        raise SystemExit(f"{SHAPE_ENV}={name!r} is not a shape; choose one of: {', '.join(SHAPES)}") from None
