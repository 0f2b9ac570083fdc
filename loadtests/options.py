"""Our Locust command-line options (``--conduit-*``) and the settings the users read from them.

Every option also has an environment variable, so a locustfile run by hand, a worker started
elsewhere, or :mod:`loadtests.runner` can set it either way. Locust sends custom options from the
master to its workers, so setting them on the master is enough in a distributed run.

This module does not import Locust: :func:`add_arguments` takes whatever parser Locust hands to
its ``init_command_line_parser`` event, and :class:`Settings` reads any object with attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from conduit_core.durations import DurationError, parse_duration
from simulator.profiles import REGISTRY, Profile, load_profile

PROTOCOLS = ("json", "messagepack")
PROFILES = tuple(REGISTRY)  # the simulator's profiles: the dialects the users can speak
TASK_KINDS = ("image", "video")
SIGNALR_MODES = ("tasks", "listen")
# loadtests.shapes.SHAPES keys (kept here so the runner need not import Locust).
SHAPE_NAMES = ("steady", "ramp", "spike", "reconnect-storm")

# The TS client's withAutomaticReconnect() default, in ms; the reference clients use the same
# variable name (docs/reference-clients.md).
DEFAULT_RECONNECT_DELAYS_MS = "0,2000,10000,30000"


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    default: Any
    help: str
    type: Any = str
    choices: tuple[str, ...] | None = None
    secret: bool = False
    web_ui: bool = True
    multiple: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--conduit-key", "CONDUIT_VIRTUAL_KEY", None,
           "virtual key (vk_...) the users authenticate with; against the simulator one is asked "
           "from POST /_sim/keys when none is given", secret=True),
    Option("--conduit-profile", "CONDUIT_PROFILE", "documented",
           "dialect the users speak: documented (the guide) or conduit-2025.08 (the real server: "
           "ImageGeneration*/VideoGeneration* events, the /v1 status routes)", choices=PROFILES),
    Option("--conduit-protocol", "CONDUIT_SIGNALR_PROTOCOL", "json",
           "SignalR hub protocol of SignalRUser and AutoUser", choices=PROTOCOLS),
    Option("--conduit-task-kind", "CONDUIT_TASK_KIND", "image",
           "tasks the users create: image (/hubs/image-generation) or video (/hubs/video-generation)",
           choices=TASK_KINDS),
    Option("--conduit-signalr-mode", "CONDUIT_SIGNALR_MODE", "tasks",
           "SignalRUser: 'tasks' creates a task, subscribes and waits for its end; 'listen' only "
           "stays connected and measures the events it is sent", choices=SIGNALR_MODES),
    Option("--conduit-poll-interval", "CONDUIT_POLL_INTERVAL", 5.0,
           "seconds between status polls (the guide's 5 s)", type=float),
    Option("--conduit-task-timeout", "CONDUIT_TASK_TIMEOUT", 300.0,
           "seconds a user waits for a task to end before counting it as a failure", type=float),
    Option("--conduit-request-timeout", "CONDUIT_REQUEST_TIMEOUT", 30.0,
           "seconds for one HTTP request, WebSocket connect, handshake or hub invocation", type=float),
    Option("--conduit-reconnect-delays", "CONDUIT_RECONNECT_DELAYS_MS", DEFAULT_RECONNECT_DELAYS_MS,
           "automatic reconnect delays in ms, comma-separated (empty: no automatic reconnect)"),
    Option("--conduit-keepalive", "CONDUIT_KEEPALIVE", 15.0,
           "seconds without sending after which the SignalR client sends a Ping", type=float),
    Option("--conduit-server-timeout", "CONDUIT_SERVER_TIMEOUT", 30.0,
           "seconds of silence from the server after which the SignalR client drops the connection",
           type=float),
    Option("--conduit-webhook-secret", "CONDUIT_WEBHOOK_SECRET", None,
           "WebhookSenderUser: HMAC key for X-Conduit-Signature", secret=True),
    Option("--conduit-webhook-failure-ratio", "CONDUIT_WEBHOOK_FAILURE_RATIO", 0.1,
           "WebhookSenderUser: share of tasks that end with task.failed", type=float),
    Option("--conduit-storm-at", "CONDUIT_STORM_AT", None,
           "reconnect-storm shape: seconds into the run at which every connection is dropped "
           "(default: 40%% of --run-time)", type=float),
    Option("--conduit-storm-mode", "CONDUIT_STORM_MODE", "abort",
           "reconnect-storm shape: how the simulator drops connections",
           choices=("abort", "clean", "close", "close_reconnect")),
    Option("--conduit-control-url", "CONDUIT_CONTROL_URL", None,
           "base URL of the simulator's /_sim control API (default: the host)"),
    Option("--conduit-control-token", "CONDUIT_CONTROL_TOKEN", None,
           "token of the simulator's /_sim control API (printed by serve; the load command passes "
           "the one of the simulator it starts)", secret=True),
    Option("--conduit-report-dir", "CONDUIT_LOAD_REPORT_DIR", None,
           "write raw samples and the exact-percentile summary here when Locust quits", web_ui=False),
    Option("--conduit-threshold", "CONDUIT_THRESHOLDS", None,
           "threshold such as 'signalr.latency.p95<100ms' (repeatable; ';'-separated in the "
           "environment variable); a breach makes Locust exit 1", web_ui=False, multiple=True),
)


def add_arguments(parser: Any) -> None:
    """Add our options to Locust's parser (its ``init_command_line_parser`` event)."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"help": opt.help + f" [env {opt.env}]", "env_var": opt.env}
        if opt.multiple:
            kwargs.update(action="append", default=None)
            kwargs.pop("env_var")  # read from the environment by Settings (';'-separated)
        else:
            kwargs.update(default=opt.default, type=opt.type)
        if opt.choices:
            kwargs["choices"] = opt.choices
        try:  # Locust's parser (not an argument group: only it knows the web UI keywords)
            parser.add_argument(opt.flag, include_in_web_ui=opt.web_ui, is_secret=opt.secret, **kwargs)
        except TypeError:  # a plain argparse parser (no web UI keywords, no env_var)
            kwargs.pop("env_var", None)
            parser.add_argument(opt.flag, **kwargs)


def _from_env(opt: Option) -> Any:
    raw = os.environ.get(opt.env)
    if raw is None or raw == "":
        return opt.default
    if opt.multiple:
        return [part.strip() for part in raw.split(";") if part.strip()]
    return opt.type(raw)


def parse_delays(text: str | None) -> tuple[float, ...]:
    """``"0,2000,10000"`` (ms) → seconds; empty means no automatic reconnect.

    Each delay is a duration (:mod:`conduit_core.durations`): a plain number is milliseconds, as
    the environment variable's name says, and ``"2s"`` works too.
    """
    if not text or not text.strip():
        return ()
    delays = []
    for part in text.split(","):
        try:
            delays.append(parse_duration(part.strip(), number_unit="ms", bare_unit="ms"))
        except DurationError as exc:
            raise ValueError(f"reconnect delay {part.strip()!r}: {exc}") from None
    return tuple(delays)


@dataclass(frozen=True)
class Settings:
    """What the users and shapes read; one instance per process is enough."""

    conduit_key: str | None = None
    conduit_profile: str = "documented"
    conduit_protocol: str = "json"
    conduit_task_kind: str = "image"
    conduit_signalr_mode: str = "tasks"
    conduit_poll_interval: float = 5.0
    conduit_task_timeout: float = 300.0
    conduit_request_timeout: float = 30.0
    conduit_reconnect_delays: str = DEFAULT_RECONNECT_DELAYS_MS
    conduit_keepalive: float = 15.0
    conduit_server_timeout: float = 30.0
    conduit_webhook_secret: str | None = None
    conduit_webhook_failure_ratio: float = 0.1
    conduit_storm_at: float | None = None
    conduit_storm_mode: str = "abort"
    conduit_control_url: str | None = None
    conduit_control_token: str | None = None
    conduit_report_dir: str | None = None
    conduit_threshold: list[str] | None = None

    @classmethod
    def load(cls, parsed_options: Any = None) -> Settings:
        """From Locust's parsed options when present, else from the environment variables."""
        values: dict[str, Any] = {}
        by_dest = {opt.dest: opt for opt in OPTIONS}
        for f in fields(cls):
            opt = by_dest[f.name]
            value = getattr(parsed_options, f.name, None) if parsed_options is not None else None
            if value is None:
                value = _from_env(opt)
            values[f.name] = value
        return cls(**values)

    @property
    def profile(self) -> Profile:
        """The dialect's tables: hub names, event decoding, status routes."""
        return load_profile(self.conduit_profile)

    @property
    def reconnect_delays(self) -> tuple[float, ...]:
        return parse_delays(self.conduit_reconnect_delays)

    @property
    def thresholds(self) -> list[str]:
        return list(self.conduit_threshold or [])
