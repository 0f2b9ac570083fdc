"""The simulator as one object: build the aiohttp application from a profile, start, stop.

:class:`Simulator` is what the CLI, the tests and (later) the pytest plugin run. Its hubs expose
the send API and connection controls; its recorder is the run's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from aiohttp import web

from simulator.accept_errors import quiet_accept_errors
from simulator.auth import KeyStore, make_key
from simulator.channels.signalr import SignalRChannel
from simulator.channels.webhooks import WebhookDispatcher
from simulator.cors import cors_middleware, normalise_origin
from simulator.faults import FaultController
from simulator.hubs.lifetime import HubLifetime, run_heartbeat
from simulator.hubs.options import HubOptions
from simulator.loop_watch import DEFAULT_STALL_THRESHOLD_S, watch_loop
from simulator.profiles import Profile, load_profile
from simulator.recorder import Recorder, RecordKind
from simulator.scenarios import PayloadFactory, Scenario, load_scenario
from simulator.security import (
    HostPolicy,
    check_bind_host,
    check_control_token,
    control_auth_middleware,
    host_middleware,
    make_control_token,
)
from simulator.services import Services
from simulator.tasks.engine import DEFAULT_TASK_RETENTION, TaskEngine
from simulator.transports.endpoint import HubEndpoint

DEFAULT_HOST = "127.0.0.1"
# Scenario delays and webhook retries are multiplied by the time scale: beyond this a run waits
# longer than any test or load run is bounded by (a 1 s step would take over 16 minutes).
MAX_TIME_SCALE = 1000.0
# An HTTP connection with no request in progress is closed after this: one that never sends a
# request, one whose headers are still arriving, one idle between keep-alive requests (aiohttp
# has a single timer for the three). Kestrel's RequestHeadersTimeout is 30 s; its 130 s
# KeepAliveTimeout is longer, but 1,100 silent connections took every file descriptor of a
# 1,024-fd process, and every client here reconnects transparently.
DEFAULT_IDLE_TIMEOUT = 30.0
# How often finished tasks and expired realtime tokens are looked for.
SWEEP_INTERVAL = 1.0


class Simulator:
    """A fake Conduit server on one host and port."""

    def __init__(
        self,
        *,
        profile: str | Profile = "documented",
        keys: Iterable[str] = (),
        host: str = DEFAULT_HOST,
        port: int = 0,
        hub_options: dict[str, Any] | None = None,
        recorder: Recorder | None = None,
        scenario: str | Scenario = "happy-path",
        seed: int | None = None,
        time_scale: float = 1.0,
        webhook_secret: str | None = None,
        allow_webhook_hosts: Iterable[str] = (),
        webhook_options: dict[str, Any] | None = None,
        control_token: str | None = None,
        cors_origins: Iterable[str] = (),
        allow_non_loopback: bool = False,
        task_retention: float = DEFAULT_TASK_RETENTION,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        stall_threshold: float | None = DEFAULT_STALL_THRESHOLD_S,
    ) -> None:
        if not 0 < time_scale <= MAX_TIME_SCALE:  # NaN fails too
            raise ValueError(f"time scale must be above 0 and at most {MAX_TIME_SCALE:g}, not {time_scale}")
        if not 0 < idle_timeout < float("inf"):
            raise ValueError(f"idle timeout must be a finite number of seconds above 0, not {idle_timeout}")
        self.idle_timeout = idle_timeout
        # The least lateness of the event loop recorded as a loop_stall; None: not watched.
        self.stall_threshold = stall_threshold
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        options: HubOptions = self.profile.hub_options
        if hub_options:
            options = replace(options, **hub_options)
        self.hub_options = options
        self.keys = KeyStore(keys)
        if not list(self.keys):
            self.keys.new_key()
        check_bind_host(host, allow_non_loopback)
        self.host = host
        self.port = port
        # Who may use /_sim/ and which browser origins are granted: see simulator.security.
        self.control_token = check_control_token(control_token) if control_token else make_control_token()
        self.cors_origins = tuple(normalise_origin(origin) for origin in cors_origins)
        self.recorder = recorder if recorder is not None else Recorder()
        self.webhook_secret = webhook_secret or "whsec_" + make_key("", 32)
        payloads = PayloadFactory(seed)
        seed = payloads.seed  # the seed in use, drawn at random when none was given: replayable
        self.tasks = TaskEngine(self.scenario, payloads, self.recorder, time_scale=time_scale,
                                retention=task_retention)
        self.hubs: dict[str, HubLifetime] = {
            d.path: HubLifetime(d, options, self.recorder) for d in self.profile.hubs
        }
        self.faults = FaultController(
            recorder=self.recorder, hubs=list(self.hubs.values()),
            events_published=lambda: self.tasks.events_published, time_scale=time_scale,
        )
        self.webhooks = WebhookDispatcher(
            secret=self.webhook_secret, recorder=self.recorder, faults=self.faults,
            body_for=self.profile.webhook_body, dialect=self.profile.webhook, time_scale=time_scale,
            allowed_hosts=allow_webhook_hosts, **(webhook_options or {}),
        )
        self.services = Services(
            recorder=self.recorder, keys=self.keys, tasks=self.tasks, faults=self.faults,
            scenario=self.scenario, webhooks=self.webhooks, webhook_secret=self.webhook_secret,
            allowed_webhook_hosts=tuple(allow_webhook_hosts), seed=seed, time_scale=time_scale,
        )
        for hub in self.hubs.values():
            hub.services = self.services
        self.tasks.subscribe(SignalRChannel(self.hubs, self.profile.signalr_events, self.faults,
                                            self.recorder))
        self.tasks.subscribe(self.webhooks)
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    # -- lookup -------------------------------------------------------------------------------
    def hub(self, name_or_path: str) -> HubLifetime:
        for hub in self.hubs.values():
            if name_or_path in (hub.path, hub.definition.name):
                return hub
        raise KeyError(f"no hub {name_or_path!r}; hubs: {', '.join(self.hubs)}")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def default_key(self) -> str:
        return next(iter(self.keys))

    # -- faults from Python ---------------------------------------------------------------------
    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Arm (or perform) a fault now, validated as a scenario fault is: e.g.
        ``sim.inject("drop_connections", mode="close_reconnect")``. Call on the server's loop."""
        from simulator.scenarios import parse_fault

        spec = parse_fault({"kind": kind, **params}, "inject")
        if spec.at:
            self.faults.schedule([spec], "python")
            return {"kind": kind, "scheduled_in_s": spec.at * self.services.time_scale, **spec.params}
        return self.faults.apply(spec, "python")

    # -- lifecycle ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        from simulator.control import control_routes
        from simulator.rest.tasks import task_routes

        app = web.Application(middlewares=[
            host_middleware(HostPolicy(self.host, lambda: self.port)),
            cors_middleware(self.cors_origins),
            control_auth_middleware(self.control_token),
        ])
        for hub in self.hubs.values():
            app.add_routes(HubEndpoint(hub, self.keys).routes())
        app.add_routes(task_routes(self.services, self.profile.routes))
        app.add_routes(control_routes(self))
        app[SIMULATOR_KEY] = self
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL (the real port when ``port`` was 0)."""
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0, keepalive_timeout=self.idle_timeout)
        await self._runner.setup()
        quiet_accept_errors(asyncio.get_running_loop())
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        await self.webhooks.start()
        self.faults.schedule(self.scenario.faults)
        opts = self.hub_options
        tick = min(opts.heartbeat_interval, opts.keep_alive_interval / 4, opts.client_timeout / 4,
                   opts.handshake_timeout / 4, opts.disconnect_timeout / 4)
        self._heartbeat = asyncio.create_task(run_heartbeat(self.hubs.values(), max(tick, 0.01)))
        self._sweeper = asyncio.create_task(self._sweep())
        if self.stall_threshold is not None:
            self._watch = asyncio.create_task(watch_loop(self.recorder, self.stall_threshold))
        self.recorder.record(RecordKind.SERVER_START, url=self.url, profile=self.profile.name,
                             scenario=self.scenario.name, seed=self.services.seed,
                             time_scale=self.services.time_scale)
        return self.url

    async def stop(self) -> None:
        self.faults.clear()
        await self.tasks.stop()
        await self.webhooks.stop()
        for ticker in (self._heartbeat, self._sweeper, self._watch):
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        for hub in self.hubs.values():
            for conn in hub.connections():
                hub.remove(conn, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.recorder.record(RecordKind.SERVER_STOP, url=self.url)


    async def _sweep(self) -> None:
        """Forget finished tasks past their retention and expired realtime tokens."""
        interval = min(SWEEP_INTERVAL, max(self.tasks.retention / 4, 0.01))
        while True:
            await asyncio.sleep(interval)
            self.tasks.evict_finished()
            self.keys.purge_expired()


SIMULATOR_KEY = web.AppKey("simulator", Simulator)
