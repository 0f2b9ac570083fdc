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

from simulator.auth import KeyStore
from simulator.cors import cors_middleware
from simulator.hubs.lifetime import HubLifetime, run_heartbeat
from simulator.hubs.options import HubOptions
from simulator.profiles import Profile, load_profile
from simulator.recorder import Recorder
from simulator.transports.endpoint import HubEndpoint

DEFAULT_HOST = "127.0.0.1"


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
        services: Any = None,
    ) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        options: HubOptions = self.profile.hub_options
        if hub_options:
            options = replace(options, **hub_options)
        self.hub_options = options
        self.keys = KeyStore(keys)
        if not list(self.keys):
            self.keys.new_key()
        self.host = host
        self.port = port
        self.recorder = recorder or Recorder()
        self.services = services
        self.hubs: dict[str, HubLifetime] = {
            d.path: HubLifetime(d, options, self.recorder, services) for d in self.profile.hubs
        }
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task[None] | None = None

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

    # -- lifecycle ----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[cors_middleware])
        for hub in self.hubs.values():
            app.add_routes(HubEndpoint(hub, self.keys).routes())
        app[SIMULATOR_KEY] = self
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL (the real port when ``port`` was 0)."""
        self._runner = web.AppRunner(self.build_app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        opts = self.hub_options
        tick = min(opts.heartbeat_interval, opts.keep_alive_interval / 4, opts.client_timeout / 4,
                   opts.handshake_timeout / 4, opts.disconnect_timeout / 4)
        self._heartbeat = asyncio.create_task(run_heartbeat(self.hubs.values(), max(tick, 0.01)))
        self.recorder.record("server_start", url=self.url, profile=self.profile.name)
        return self.url

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for hub in self.hubs.values():
            for conn in hub.connections():
                hub.remove(conn, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.recorder.record("server_stop", url=self.url)


SIMULATOR_KEY = web.AppKey("simulator", Simulator)
