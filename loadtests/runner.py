"""``conduit-harness load``: one bounded, headless Locust run with our summary and thresholds.

:func:`run_load` (and :func:`main` / :func:`configure_parser` for the CLI):

1. reads the thresholds (a bad one is a usage error, exit 2, before anything starts);
2. without ``host``, starts the simulator in a thread on 127.0.0.1 (port 0) with the given
   scenario and a fresh virtual key; with ``host``, uses ``key`` / ``$CONDUIT_VIRTUAL_KEY`` or asks
   the host's ``POST /_sim/keys`` (a simulator) for one;
3. runs ``locust -f loadtests/locustfile.py --headless -u -r -t --host --csv --html ...`` as a
   subprocess (the key goes in its environment, never on its command line), plus the extra
   arguments given after ``--``;
4. writes under the report directory (default ``reports/load/<timestamp>/``): Locust's CSV files
   (``locust_stats.csv``, ...), ``locust.html``, ``locust.log``, the raw ``samples.json`` and our
   ``summary.json`` / ``summary.md`` (exact p50/p90/p95/p99 per name and per metric, threshold
   verdicts).

Exit codes: 0 every threshold held (or none was given), 1 a threshold was breached, 2 usage or
harness error (bad arguments, the simulator or Locust could not run, no samples written).

This module imports neither Locust nor gevent (Locust monkey-patches the process that imports it),
so the CLI can import it freely.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from conduit_core.durations import DurationError, parse_duration
from loadtests.options import PROFILES, PROTOCOLS, SHAPE_NAMES
from loadtests.summary import build_summary, to_markdown
from loadtests.thresholds import ThresholdError, parse_all
from simulator.profiles import load_profile
from simulator.security import CONTROL_TOKEN_ENV, control_headers

EXIT_OK = 0
EXIT_BREACH = 1
EXIT_USAGE = 2

PACKAGE_DIR = Path(__file__).resolve().parent
# The folder holding our packages (the checkout, or site-packages): put on the Locust child's
# PYTHONPATH so it imports the very code this process runs. Never a place for output.
PROJECT_ROOT = PACKAGE_DIR.parent
LOCUSTFILE = PACKAGE_DIR / "locustfile.py"
WEBHOOK_LOCUSTFILE = PACKAGE_DIR / "webhook_locustfile.py"
SIMULATOR_USERS = ("PollingUser", "SignalRUser", "AutoUser")
WEBHOOK_USERS = ("WebhookSenderUser",)
DEFAULT_USERS = 10
DEFAULT_SPAWN_RATE = 5.0
DEFAULT_RUN_TIME = "30s"
# Time Locust gets beyond --run-time to stop its users and write its reports.
STOP_GRACE_S = 60.0



class UsageError(Exception):
    """A problem with the arguments; the message says how to fix it (exit 2)."""


class HarnessError(Exception):
    """The run could not be carried out (exit 2)."""


def parse_timespan(value: str | int | float) -> int:
    """Locust's run-time syntax: ``90``, ``30s``, ``5m``, ``1h30m``; whole seconds (what ``-t`` takes).

    Read by :mod:`conduit_core.durations`, the grammar every duration in the harness uses; a
    plain number means seconds here, as it does to Locust.
    """
    try:
        seconds = parse_duration(value, bare_unit="s")
    except DurationError as exc:
        raise UsageError(f"run time {value!r} is not a time span: {exc}; use e.g. 30s, 5m, 1h30m or 90") \
            from None
    if seconds != int(seconds):
        raise UsageError(f"run time {value!r} must be whole seconds (Locust's -t takes no fractions)")
    if seconds <= 0:
        raise UsageError(f"run time {value!r} must be above 0: every load run is bounded in time")
    return int(seconds)


def default_report_dir() -> Path:
    """``reports/load/<time>`` under the current folder (the run prints where it went)."""
    return Path("reports") / "load" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _ask_simulator_for_key(host: str, control_token: str | None) -> str | None:
    headers = {"Content-Type": "application/json", **control_headers(control_token or "")}
    request = urllib.request.Request(host.rstrip("/") + "/_sim/keys", data=b"{}", method="POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status == 201:
                return json.loads(response.read()).get("key")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return None


class _Simulator:
    """The simulator on its own loop in a thread, when no host was given."""

    def __init__(self, scenario: str, time_scale: float, seed: int | None, key: str,
                 webhook_secret: str | None, profile: str = "documented") -> None:
        from simulator.app import Simulator
        from simulator.background import BackgroundSimulator
        from simulator.scenarios import ScenarioError

        try:
            simulator = Simulator(keys=[key], scenario=scenario, time_scale=time_scale, seed=seed,
                                  port=0, webhook_secret=webhook_secret, profile=profile)
        except ScenarioError as exc:
            raise UsageError(f"scenario: {exc}") from exc
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        self.background = BackgroundSimulator(simulator)

    def start(self) -> str:
        try:
            return self.background.start()
        except OSError as exc:
            raise HarnessError(f"the simulator could not listen on 127.0.0.1: {exc}") from exc

    def stop(self) -> None:
        self.background.stop()


def _tee(stream: TextIO, log: TextIO, echo: bool) -> None:
    for line in stream:
        log.write(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()


def run_load(
    users: int = DEFAULT_USERS,
    spawn_rate: float = DEFAULT_SPAWN_RATE,
    run_time: str | int = DEFAULT_RUN_TIME,
    scenario: str = "happy-path",
    host: str | None = None,
    thresholds: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    report_dir: str | Path | None = None,
    user_classes: Sequence[str] | None = None,
    shape: str | None = None,
    *,
    key: str | None = None,
    protocol: str | None = None,
    time_scale: float = 1.0,
    seed: int | None = None,
    webhook_secret: str | None = None,
    quiet: bool = False,
    env: dict[str, str] | None = None,
    profile: str = "documented",
) -> int:
    """One load run; returns the exit code (0 pass, 1 threshold breached, 2 usage/harness error)."""
    try:
        return _run(users, spawn_rate, run_time, scenario, host, thresholds, extra_args, report_dir,
                    user_classes, shape, key=key, protocol=protocol, time_scale=time_scale, seed=seed,
                    webhook_secret=webhook_secret, quiet=quiet, env=env, profile=profile)
    except (UsageError, ThresholdError) as exc:
        print(f"conduit-harness load: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as exc:
        print(f"conduit-harness load: harness error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(users: int, spawn_rate: float, run_time: str | int, scenario: str, host: str | None,
         thresholds: Sequence[str], extra_args: Sequence[str], report_dir: str | Path | None,
         user_classes: Sequence[str] | None, shape: str | None, *, key: str | None, protocol: str | None,
         time_scale: float, seed: int | None, webhook_secret: str | None, quiet: bool,
         env: dict[str, str] | None, profile: str = "documented") -> int:
    parsed_thresholds = parse_all(thresholds)
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    if protocol in PROTOCOLS and protocol not in load_profile(profile).hub_options.protocols:
        raise UsageError(f"the {profile} profile speaks only "
                         f"{', '.join(load_profile(profile).hub_options.protocols)}, not {protocol}")
    env = {**(env or {}), "CONDUIT_PROFILE": profile}
    if not isinstance(users, int) or users < 1:
        raise UsageError(f"users must be a whole number of at least 1, not {users!r}")
    if not spawn_rate > 0:
        raise UsageError(f"spawn rate must be above 0, not {spawn_rate!r}")
    seconds = parse_timespan(run_time)
    if shape is not None and shape not in SHAPE_NAMES:
        raise UsageError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPE_NAMES)}")
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; choose json or messagepack")
    classes = list(user_classes or [])
    unknown = sorted(set(classes) - set(SIMULATOR_USERS) - set(WEBHOOK_USERS))
    if unknown:
        raise UsageError(f"unknown user class {unknown[0]!r}; choose from: "
                         f"{', '.join(SIMULATOR_USERS + WEBHOOK_USERS)}")
    webhook = any(c in WEBHOOK_USERS for c in classes)
    if webhook and any(c in SIMULATOR_USERS for c in classes):
        raise UsageError("WebhookSenderUser targets your webhook receiver, the others a Conduit: run them "
                         "separately")
    webhook_secret = webhook_secret or os.environ.get("CONDUIT_WEBHOOK_SECRET")
    if webhook:
        if not host:
            raise UsageError("WebhookSenderUser needs --host: the full URL of the webhook receiver "
                             "under test")
        if not webhook_secret:
            raise UsageError("WebhookSenderUser needs --webhook-secret (or CONDUIT_WEBHOOK_SECRET): the "
                             "receiver's HMAC key")
        if shape == "reconnect-storm":
            raise UsageError("the reconnect-storm shape drops SignalR connections; "
                             "WebhookSenderUser has none")
    # Absolute before Locust (run in the report folder) is told where to write: a relative one
    # means the user's current folder, for us and for it alike.
    directory = (Path(report_dir) if report_dir is not None else default_report_dir()).resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report directory {directory}: {exc.strerror or exc}") from exc
    for stale in ("samples.json", "summary.json", "summary.md"):
        (directory / stale).unlink(missing_ok=True)

    simulator: _Simulator | None = None
    if host is None:
        from simulator.auth import make_key

        if scenario is None:
            scenario = "happy-path"
        key = key or make_key()
        simulator = _Simulator(scenario, time_scale, seed, key, webhook_secret, profile)
    elif not webhook:
        key = key or os.environ.get("CONDUIT_VIRTUAL_KEY") or _ask_simulator_for_key(
            host, os.environ.get(CONTROL_TOKEN_ENV))
        if not key:
            raise UsageError(f"no virtual key for {host}: pass --key (or set CONDUIT_VIRTUAL_KEY)")
    try:
        if simulator is not None:
            host = simulator.start()
        assert host is not None
        locust_rc, log_path = _run_locust(
            directory, host, users, spawn_rate, seconds, classes, shape, extra_args, key, protocol,
            webhook_secret, quiet,
            # the simulator started here: its control token for the reconnect-storm shape
            {**(env or {}), CONTROL_TOKEN_ENV: simulator.background.control_token}
            if simulator is not None else env, webhook)
    finally:
        if simulator is not None:
            simulator.stop()

    samples_path = directory / "samples.json"
    if not samples_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise HarnessError(f"Locust exited with {locust_rc} and wrote no samples; end of {log_path}:\n"
                           + "\n".join(tail))
    doc = json.loads(samples_path.read_text(encoding="utf-8"))
    run = {"host": host, "simulator": simulator is not None, "profile": profile,
           "scenario": scenario if simulator else None,
           "time_scale": time_scale if simulator else None, "users": users, "spawn_rate": spawn_rate,
           "run_time": seconds, "shape": shape, "user_classes": classes or None,
           "protocol": protocol, "extra_args": list(extra_args) or None, "locust_exit_code": locust_rc,
           "report_dir": str(directory)}
    summary = build_summary(doc, run, parsed_thresholds)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    markdown = to_markdown(summary)
    (directory / "summary.md").write_text(markdown, encoding="utf-8")
    if not quiet:
        print(markdown)
    print(f"reports: {directory}")
    if locust_rc != 0:
        raise HarnessError(f"Locust exited with {locust_rc}; see {log_path}")
    if summary["verdict"] == "fail":
        failed = [v["expression"] for v in summary["thresholds"] if not v["ok"]]
        print(f"conduit-harness load: threshold breached: {', '.join(failed)}", file=sys.stderr)
        return EXIT_BREACH
    return EXIT_OK


def locust_command(directory: Path, host: str, users: int, spawn_rate: float, seconds: int,
                   classes: Sequence[str], extra_args: Sequence[str], protocol: str | None,
                   webhook: bool, quiet: bool) -> list[str]:
    locustfile = WEBHOOK_LOCUSTFILE if webhook else LOCUSTFILE
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "-u", str(users), "-r", f"{spawn_rate:g}", "-t", f"{seconds}s", "--host", host,
           "--csv", str(directory / "locust"), "--html", str(directory / "locust.html"),
           "--exit-code-on-error", "0", "--conduit-report-dir", str(directory)]
    if quiet:
        cmd.append("--only-summary")
    if protocol:
        cmd += ["--conduit-protocol", protocol]
    cmd += list(extra_args)
    cmd += list(classes)
    return cmd


def _run_locust(directory: Path, host: str, users: int, spawn_rate: float, seconds: int,
                classes: Sequence[str], shape: str | None, extra_args: Sequence[str], key: str | None,
                protocol: str | None, webhook_secret: str | None, quiet: bool,
                env: dict[str, str] | None, webhook: bool) -> tuple[int, Path]:
    cmd = locust_command(directory, host, users, spawn_rate, seconds, classes, extra_args, protocol,
                         webhook, quiet)
    child_env = dict(os.environ)
    child_env.update(env or {})
    paths = (str(PROJECT_ROOT), child_env.get("PYTHONPATH"))
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    child_env.pop("CONDUIT_LOAD_SHAPE", None)
    if shape:
        child_env["CONDUIT_LOAD_SHAPE"] = shape
    if key:
        child_env["CONDUIT_VIRTUAL_KEY"] = key
    if webhook_secret:
        child_env["CONDUIT_WEBHOOK_SECRET"] = webhook_secret
    log_path = directory / "locust.log"
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        try:
            # In the report folder: no locust.conf or pyproject.toml of the user's project is read.
            process = subprocess.Popen(cmd, cwd=directory, env=child_env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as exc:
            raise HarnessError(f"cannot start Locust ({cmd[0]} -m locust): {exc}") from exc
        assert process.stdout is not None
        reader = threading.Thread(target=_tee, args=(process.stdout, log, not quiet), daemon=True)
        reader.start()
        deadline = seconds + STOP_GRACE_S
        try:
            rc = process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            reader.join(5)
            raise HarnessError(f"Locust did not finish within {deadline:g} s (run time + "
                               f"{STOP_GRACE_S:g} s); killed it; see {log_path}") from None
        except KeyboardInterrupt:
            process.terminate()
            process.wait(30)
            raise
        reader.join(10)
    return rc, log_path


# ---------------------------------------------------------------------------------------------
# Command line

def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``load`` arguments to ``parser`` (a subcommand parser or a new one) and set
    ``run`` to :func:`run_command` (the ``args.run(args)`` convention of simulator/cli.py)."""
    parser.add_argument("-u", "--users", type=int, default=DEFAULT_USERS, metavar="N",
                        help="peak number of concurrent users (default %(default)s)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=DEFAULT_SPAWN_RATE, metavar="R",
                        help="users started per second (default %(default)s)")
    parser.add_argument("-t", "--run-time", default=DEFAULT_RUN_TIME, metavar="T",
                        help="how long: 30s, 5m, 1h30m (default %(default)s); every run is bounded")
    parser.add_argument("--scenario", default="happy-path", metavar="NAME|FILE",
                        help="scenario of the simulator started when no --host is given "
                             "(default %(default)s)")
    parser.add_argument("--host", default=None, metavar="URL",
                        help="load this Conduit (or running simulator) instead of starting one; for "
                             "WebhookSenderUser, the receiver's full URL")
    parser.add_argument("--threshold", action="extend", nargs="+", default=[], metavar="EXPR",
                        help="pass/fail rule, e.g. 'signalr.latency.p95<100ms' 'poll.latency.p99<=2s' "
                             "'failures<1%%' 'requests>=10' (repeatable); a breach exits 1")
    parser.add_argument("--report-dir", type=Path, default=None, metavar="DIR",
                        help="where the CSV, HTML and summary go "
                             "(default reports/load/<timestamp>/ under the current folder)")
    parser.add_argument("--user-class", dest="user_classes", action="extend", nargs="+", default=[],
                        metavar="NAME", help="users to run: PollingUser, SignalRUser, AutoUser "
                                             "(default: all three), or WebhookSenderUser")
    parser.add_argument("--shape", choices=SHAPE_NAMES, default=None,
                        help="load shape (default: -u users at -r per second for the run time)")
    parser.add_argument("--profile", choices=PROFILES, default="documented",
                        help="dialect: of the simulator started here, and the one the users speak "
                             "(to a --host too); default %(default)s")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="SignalR hub protocol (default json)")
    parser.add_argument("--key", default=None, metavar="KEY",
                        help="virtual key for --host (default $CONDUIT_VIRTUAL_KEY, or one from the "
                             "simulator's /_sim/keys)")
    parser.add_argument("--webhook-secret", default=None, metavar="SECRET",
                        help="WebhookSenderUser's HMAC key (default $CONDUIT_WEBHOOK_SECRET)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="F",
                        help="time scale of the simulator started here (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the simulator started here")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not echo Locust's output (it is still in locust.log)")
    parser.add_argument("locust_args", nargs="*", metavar="-- LOCUST_ARG",
                        help="anything after -- goes to Locust unchanged (e.g. -- --processes 2)")
    parser.set_defaults(run=run_command)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conduit-harness load",
        description="Run a bounded headless Locust load test (against a simulator started here unless "
                    "--host is given) and check thresholds on exact percentiles.",
    )
    return configure_parser(parser)


def run_command(args: argparse.Namespace) -> int:
    return run_load(
        users=args.users, spawn_rate=args.spawn_rate, run_time=args.run_time, scenario=args.scenario,
        host=args.host, thresholds=args.threshold, extra_args=args.locust_args, report_dir=args.report_dir,
        user_classes=args.user_classes or None, shape=args.shape, key=args.key, protocol=args.protocol,
        time_scale=args.time_scale, seed=args.seed, webhook_secret=args.webhook_secret, quiet=args.quiet,
        profile=args.profile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
