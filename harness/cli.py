"""The ``conduit-harness`` console script.

Exit codes: 0 pass, 1 contract violations, 2 usage or harness error, 3 (``check``) no violation
but a rule could not be judged (INCONCLUSIVE). Errors say what was wrong and how to fix it, on one
line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conduit_core.durations import MAX_SECONDS
from simulator import __version__
from simulator.app import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, MAX_TIME_SCALE, Simulator
from simulator.auth import key_problem
from simulator.hubs.options import HubOptions
from simulator.recorder import DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS, Recorder
from simulator.scenarios import ScenarioError, bundled_scenarios
from simulator.security import CONTROL_TOKEN_ENV, is_loopback
from simulator.tasks.engine import DEFAULT_TASK_RETENTION

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


class UsageError(Exception):
    """A problem with the command line; the message says how to fix it."""


def _number(*, above: float | None = None, at_least: float | None = None, at_most: float = math.inf,
            whole: bool = False, what: str = "a number", example: str) -> Callable[[str], float]:
    """An argparse type for a finite number in a range; the error names the range and an example.

    One parser for every numeric option, so none of them takes NaN or infinity (``--time-scale
    inf`` once made every task creation fail while the task was created anyway)."""

    def parse(value: str) -> float:
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}, e.g. {example}") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{value} is not a finite number, e.g. {example}")
        low_ok = (above is None or number > above) and (at_least is None or number >= at_least)
        if not low_ok or number > at_most:
            low = f"above {above:g}" if above is not None else f"at least {at_least:g}"
            high = f" and at most {at_most:g}" if at_most < math.inf else ""
            raise argparse.ArgumentTypeError(f"{value} must be {low}{high}, e.g. {example}")
        return number

    return parse


_time_scale = _number(above=0, at_most=MAX_TIME_SCALE, what="a number",
                      example="0.1 (ten times faster)")
_positive_seconds = _number(above=0, at_most=MAX_SECONDS, what="a number of seconds", example="30")
_non_negative_float = _number(at_least=0, at_most=1e6, what="a number", example="0.2")
_byte_count = _number(at_least=1024, at_most=2**40, whole=True, what="a whole number of bytes",
                      example="1048576")


def _virtual_key(value: str) -> str:
    problem = key_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{value!r} refused: {problem}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conduit-harness",
        description="Testing and load-simulation harness for Conduit's real-time API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser(
        "serve", help="run the fake Conduit server until interrupted",
        description="Serve the simulated Conduit API (SignalR hubs) until Ctrl-C or SIGTERM.",
    )
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help="address to bind (default %(default)s; keep to loopback)")
    serve.add_argument("--port", type=int, default=0,
                       help="port to bind; 0 picks a free one (default)")
    serve.add_argument("--virtual-key", dest="virtual_keys", action="append", default=[],
                       type=_virtual_key, metavar="KEY",
                       help="accept this virtual key (repeatable); one is made when none is given")
    serve.add_argument("--profile", default="documented", help="what to serve (default %(default)s)")
    serve.add_argument("--scenario", default="happy-path", metavar="NAME|FILE",
                       help=f"task scripts and faults: a bundled name ({', '.join(bundled_scenarios())}) "
                            "or a YAML file (default %(default)s)")
    serve.add_argument("--seed", type=int, default=None,
                       help="make the run reproducible: same seed, same scripts, ids and payloads")
    serve.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="F",
                       help="multiply every scenario delay and webhook retry delay by F (default 1)")
    serve.add_argument("--webhook-secret", default=None, metavar="SECRET",
                       help="HMAC key for X-Conduit-Signature (one is made and printed when not given)")
    serve.add_argument("--allow-webhook-host", dest="allow_webhook_hosts", action="append", default=[],
                       metavar="HOST", help="also deliver webhooks to HOST (default: loopback only)")
    serve.add_argument("--control-token", default=None, metavar="TOKEN",
                       help="token /_sim/ requires (X-Conduit-Control-Token header; default "
                            "$CONDUIT_CONTROL_TOKEN, else one is made and printed)")
    serve.add_argument("--cors-origin", dest="cors_origins", action="append", default=[],
                       metavar="ORIGIN", help="grant CORS to this browser origin, e.g. "
                                              "http://localhost:3000 (repeatable; default none)")
    serve.add_argument("--allow-non-loopback", action="store_true",
                       help="allow a --host other than loopback (reachable from other machines)")
    serve.add_argument("--record", type=Path, default=None, metavar="FILE",
                       help="write the timeline to FILE as JSON Lines while serving")
    serve.add_argument("--outbox-limit", type=_byte_count, default=None, metavar="BYTES",
                       help="abort a SignalR connection with this much queued for it: the client is "
                            f"not reading (default {HubOptions.max_outbox_bytes})")
    serve.add_argument("--send-timeout", type=_positive_seconds, default=None, metavar="S",
                       help="abort a SignalR connection whose queued messages have not reached the "
                            f"client for S seconds (default {HubOptions.send_timeout:g})")
    serve.add_argument("--task-retention", type=_positive_seconds, default=DEFAULT_TASK_RETENTION,
                       metavar="S", help="forget a finished task S seconds after it finished; polling "
                                         "it then answers as for an unknown task (default %(default)g)")
    serve.add_argument("--idle-timeout", type=_positive_seconds, default=DEFAULT_IDLE_TIMEOUT, metavar="S",
                       help="close an HTTP connection with no request for S seconds, including one "
                            "still sending its headers (default %(default)g)")
    serve.add_argument("--recorder-max-records", type=int, default=DEFAULT_MAX_RECORDS, metavar="N",
                       help="timeline records kept in memory (default %(default)s); older ones are "
                            "read back from the --record file, or a temporary file, when asked for")
    serve.add_argument("--recorder-max-mib", type=int, default=DEFAULT_MAX_BYTES // 2**20, metavar="MIB",
                       help="MiB of timeline JSON kept in memory (default %(default)s), as above")
    serve.set_defaults(run=run_serve)

    check = commands.add_parser(
        "check", help="check a client (or a webhook receiver) against the documented contract",
        description="Run the contract suite: every C-* rule against a client started with --client "
                    "(driver protocol), and every W-* rule against a receiver at --webhook-url. "
                    "A pre-flight first checks that the client connects at all. Exit 0 when every "
                    "judged rule holds, 1 on any violation (a failed pre-flight included), 2 on "
                    "usage or harness errors (the client cannot start, sends no ready line, ...), "
                    "3 when nothing failed but a rule was INCONCLUSIVE.",
    )
    check.add_argument("--list-rules", action="store_true",
                       help="print the rules (ID, cases, what each checks, the guide passage) and exit")
    check.add_argument("--client", metavar="CMD", help="command that starts the client under test")
    check.add_argument("--client-profile", metavar="NAME|FILE",
                       help="TOML with the numbers the client declares, or a bundled profile by name "
                            "(python-reference-fast runs the bundled Python reference client)")
    check.add_argument("--profile", metavar="NAME",
                       help="dialect the client speaks: documented or conduit-2025.08 (default: the "
                            "client profile's profile = key, else documented)")
    check.add_argument("--rules", metavar="PATTERN", help="only these rule IDs (glob, comma-separated)")
    check.add_argument("--seed", type=int, default=None,
                       help="seed for the simulators and generated webhook bodies; each failure "
                            "prints the command that replays it with its seed")
    check.add_argument("-v", "--verbose", action="count", default=0,
                       help="pytest's own per-test output and short tracebacks (quiet by default)")
    check.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    check.add_argument("--report", metavar="DIR", type=Path,
                       help="write junit.xml and verdicts.json into DIR")
    check.add_argument("--webhook-url", metavar="URL", help="a running webhook receiver to check (W-*)")
    check.add_argument("--webhook-secret", metavar="SECRET", help="the secret that receiver verifies with")
    check.add_argument("--max-rule-seconds", type=_positive_seconds, default=None, metavar="S",
                       help="skip rules that would wait longer than S with the declared numbers")
    check.add_argument("--late-tolerance", type=_non_negative_float, default=None, metavar="FRACTION",
                       help="how late a timed action may be, as a fraction of its delay, with a 500 ms "
                            "floor (default 0.20)")
    check.add_argument("--early-tolerance-ms", type=_non_negative_float, default=None, metavar="MS",
                       help="how early a timed action may be, in ms (default 50)")
    check.add_argument("--jobs", type=_number(at_least=1, at_most=256, whole=True, what="a whole number",
                                              example="4"), default=None, metavar="N",
                       help="run up to N rules at once, each with its own simulator and client "
                            "(default: 4 per CPU core, which leaves half of each core idle so "
                            "timings are not skewed; 1 runs them one after another)")
    check.add_argument("--max-stall-ms", type=_non_negative_float, default=None, metavar="MS",
                       help="judge a FAIL or INCONCLUSIVE again, on a run with no other rule beside "
                            "it, when the simulator's own event loop stalled longer than MS during "
                            "it (a busy machine; default 50, the tightest tolerance; 0: never)")
    check.set_defaults(run=run_check)

    selftest = commands.add_parser(
        "selftest", help="prove the suite catches bugs: every mutant must fail its rule",
        description="Run each known-bad client (mutant) against the rule it breaks, and the whole "
                    "C-* suite against the reference clients; print the mutation score. Exit 0 when "
                    "every mutant is caught and every reference passes.",
    )
    selftest.add_argument("--clients", default="python,node",
                          help="reference clients whose mutants to run (default %(default)s)")
    selftest.add_argument("--mutants", default="*", metavar="PATTERN", help="only mutants matching (glob)")
    selftest.add_argument("--profile", default=None, metavar="NAME",
                          help="run the client rules in this simulator profile's dialect "
                               "(e.g. conduit-2025.08)")
    selftest.add_argument("--numbers", default="fast,documented", metavar="fast,documented",
                          help="the declared numbers every mutant and reference runs under: fast (shrunk "
                               "waits) and/or documented (the guide's 0/2/10/30 s reconnects, 5 s polls; "
                               "minutes per mutant) (default %(default)s)")
    selftest.add_argument("--no-references", action="store_true",
                          help="skip the full suite against the reference clients")
    selftest.add_argument("--no-receivers", action="store_true",
                          help="skip the webhook receivers and their mutants")
    selftest.set_defaults(run=run_selftest)

    demo = commands.add_parser(
        "demo", help="the main job: contract checks of the bundled clients, a load run, one report",
        description="Run the contract suite against the reference clients, a handful of mutants and "
                    "the webhook receivers, a signed-webhook session, a short load run, and write "
                    "reports/latest/index.html under the current folder. Node steps are skipped "
                    "(saying so) without Node.js. Steps run a few at a time, each saying when it "
                    "starts and ends. Exit 0 when everything holds, 1 when a reference fails, a "
                    "mutant is not caught or a load threshold is breached, 2 when a step did not run.",
    )
    from harness.demo import DEFAULT_JOBS, DEFAULT_LOAD_SECONDS  # light: no simulator, no Locust

    demo.add_argument("--load-seconds", type=int, default=DEFAULT_LOAD_SECONDS,
                      help="length of the load run (default %(default)s)")
    demo.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                      help="steps run at the same time (default %(default)s; they mostly wait)")
    demo.add_argument("--reports", type=Path, default=Path("reports"),
                      help="where runs go (default reports/ under the current folder)")
    demo.set_defaults(run=run_demo)

    from simulator.profiles import diff as profiles_diff

    profiles_diff.configure_parser(commands.add_parser(
        "profiles", help="list the simulator's profiles, or diff two of them",
    ))

    from loadtests import runner as load_runner  # imports neither Locust nor gevent

    load_runner.configure_parser(commands.add_parser(
        "load", help="a bounded headless Locust run against the simulator or a Conduit",
    ))
    return parser


async def _serve(simulator: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        url = await simulator.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {simulator.host}:{simulator.port}: {exc.strerror or exc}. "
            "Choose another --port (0 picks a free one) or --host."
        ) from exc
    print(f"listening on {url}", flush=True)
    for key in simulator.keys:
        print(f"virtual key: {key}", flush=True)
    print(f"profile: {simulator.profile.name}", flush=True)
    if simulator.profile.webhook.signature is not None:
        print(f"webhook secret: {simulator.webhook_secret}", flush=True)
    else:
        print("webhooks: not signed (as this profile's server sends them)", flush=True)
    print(f"control token: {simulator.control_token}", flush=True)
    print(f"scenario: {simulator.scenario.name} (seed {simulator.services.seed}, "
          f"time scale {simulator.services.time_scale})", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
        print("stopped", flush=True)


def run_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range: use 0-65535 (0 picks a free port)")
    try:
        recorder = Recorder(path=args.record, max_records=args.recorder_max_records,
                            max_bytes=args.recorder_max_mib * 2**20)
    except OSError as exc:
        raise UsageError(f"cannot write --record {args.record}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"--recorder-max-records and --recorder-max-mib: {exc}") from exc
    try:
        simulator = Simulator(
            profile=args.profile, keys=args.virtual_keys, host=args.host, port=args.port,
            scenario=args.scenario, seed=args.seed, time_scale=args.time_scale,
            webhook_secret=args.webhook_secret, allow_webhook_hosts=args.allow_webhook_hosts,
            recorder=recorder, cors_origins=args.cors_origins,
            control_token=args.control_token or os.environ.get(CONTROL_TOKEN_ENV) or None,
            allow_non_loopback=args.allow_non_loopback,
            task_retention=args.task_retention, idle_timeout=args.idle_timeout,
            hub_options={name: value for name, value in (
                ("max_outbox_bytes", args.outbox_limit), ("send_timeout", args.send_timeout))
                if value is not None},
        )
    except ScenarioError as exc:
        raise UsageError(f"scenario: {exc}") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not is_loopback(args.host):
        print(f"conduit-harness: warning: listening on {args.host}, not loopback: other machines can "
              "reach the task API, and /_sim/ with the control token", file=sys.stderr, flush=True)
    try:
        asyncio.run(_serve(simulator))
    finally:
        recorder.close()
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    from contract_tests.check import list_rules
    from contract_tests.check import run_check as check

    if args.list_rules:
        print(list_rules())
        return EXIT_OK
    junit = args.junit
    verdicts = None
    if args.report is not None:
        args.report.mkdir(parents=True, exist_ok=True)
        junit = junit or str(args.report / "junit.xml")
        verdicts = str(args.report / "verdicts.json")
    started = _now()
    try:
        code = check(client=args.client, client_profile=args.client_profile, profile=args.profile,
                     rules=args.rules, seed=args.seed, verbose=args.verbose, junit=junit,
                     verdicts_json=verdicts, webhook_url=args.webhook_url,
                     webhook_secret=args.webhook_secret, max_rule_seconds=args.max_rule_seconds,
                     late_tolerance=args.late_tolerance, early_tolerance_ms=args.early_tolerance_ms,
                     jobs=args.jobs, max_stall_ms=args.max_stall_ms)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.report is not None and verdicts is not None and Path(verdicts).exists():
        _write_check_manifest(args, Path(junit) if junit else None, started)
    return code


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_check_manifest(args: argparse.Namespace, junit: Path | None, started: str) -> None:
    """``check --report DIR`` describes its one subject in ``DIR/manifest.json``: above all the
    dialect it was judged in, which the report needs to show the profile facts beside its rules."""
    import json
    import shlex

    from contract_tests.client_profile import ProfileError, find_profile

    dialect = args.profile
    if dialect is None and args.client_profile:
        with contextlib.suppress(ProfileError):
            dialect = find_profile(args.client_profile).dialect
    words = ["conduit-harness", "check"]
    for option in ("client", "client_profile", "profile", "rules", "seed", "webhook_url"):
        value = getattr(args, option)
        if value is not None:  # never the webhook secret
            words += ["--" + option.replace("_", "-"), str(value)]
    report: Path = args.report
    # A receiver is what only W-* rules judged (a client declaring the webhook role is one too).
    try:
        rules = {str(v.get("rule", "")) for v in json.loads((report / "verdicts.json").read_text("utf-8"))}
    except (OSError, ValueError, AttributeError):
        rules = set()
    kind = "receiver" if rules and all(r.startswith("W-") for r in rules) else "client"
    subject = {"name": report.name, "kind": kind, "profile": args.client_profile,
               "dialect": dialect or "documented", "verdicts": "verdicts.json",
               "junit": None if junit is None or not junit.exists() else
               (junit.name if junit.parent.resolve() == report.resolve() else str(junit.resolve()))}
    manifest = {"run": report.name, "started": started, "finished": _now(), "command": shlex.join(words),
                "simulator": {"profile": dialect or "documented"}, "subjects": [subject]}
    (report / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def run_selftest(args: argparse.Namespace) -> int:
    from contract_tests.mutants import CLIENT_NUMBERS, REFERENCE_CLIENTS
    from contract_tests.selftest import run_selftest as selftest

    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in clients if c not in REFERENCE_CLIENTS]
    if unknown:
        raise UsageError(f"unknown client(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(REFERENCE_CLIENTS)}")
    if args.profile is not None:
        from simulator.profiles import REGISTRY

        if args.profile not in REGISTRY:
            raise UsageError(f"unknown profile {args.profile!r}; choose from {', '.join(REGISTRY)}")
    numbers = [n.strip() for n in args.numbers.split(",") if n.strip()]
    bad = [n for n in numbers if n not in CLIENT_NUMBERS]
    if bad or not numbers:
        raise UsageError(f"--numbers {args.numbers!r}: choose from {', '.join(CLIENT_NUMBERS)} "
                         "(comma-separated)")
    outcomes = selftest(clients, args.mutants, references=not args.no_references,
                        receivers=not args.no_receivers, dialect=args.profile, numbers=numbers)
    if not outcomes:
        raise UsageError(f"nothing ran: no mutant matches {args.mutants!r}, or every chosen client was "
                         "skipped (the line above says why)")
    return EXIT_OK if all(o.as_expected for o in outcomes) else EXIT_VIOLATIONS


def run_demo(args: argparse.Namespace) -> int:
    from harness.demo import run_demo as demo

    if args.load_seconds < 5:
        raise UsageError("--load-seconds must be at least 5")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return demo(args.reports, args.load_seconds, jobs=args.jobs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"conduit-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
