"""Load users speaking the ``conduit-2025.08`` dialect: a short real Locust run against the embedded
simulator serving that profile (hub names, object-shaped events, the /v1 status route)."""

from __future__ import annotations

from pathlib import Path

from loadtests import runner
from tests.load.test_runs import assert_matches_csv, run


def test_users_speak_the_as_built_dialect(tmp_path: Path) -> None:
    code, stats, summary = run(tmp_path, users=4, spawn_rate=4, run_time="6s",
                               user_classes=["SignalRUser", "PollingUser"], profile="conduit-2025.08",
                               extra_args=["--conduit-poll-interval", "0.3"],
                               thresholds=["signalr.latency.count>=2", "rest.failures==0"])
    assert code == 0, summary["thresholds"]
    for name in ("invoke SubscribeToTask", "latency ImageGenerationProgress",
                 "latency ImageGenerationCompleted", "e2e image completed"):
        count, failures = stats[("SignalR", name)]
        assert count > 0 and failures == 0, (name, stats)
    polls, failures = stats[("Poll", "GET /v1/images/generations/{id}/status")]
    assert polls > 0 and failures == 0
    assert not any(name.startswith("latency_approx") for _, name in stats)  # the header is exact
    assert summary["run"]["profile"] == "conduit-2025.08"
    assert_matches_csv(stats, summary)


def test_messagepack_is_refused_for_a_json_only_profile(tmp_path: Path, capsys) -> None:
    code = runner.run_load(report_dir=tmp_path, quiet=True, profile="conduit-2025.08", protocol="messagepack")
    assert code == 2
    assert "speaks only json, not messagepack" in capsys.readouterr().err


def test_without_the_header_the_events_own_timestamp_gives_an_approximate_latency() -> None:
    """Against a real Conduit (no emit-time header) the as-built events' own stamps are used, and
    the measurement is named as approximate."""
    from conduit_core.signalr import Invocation
    from loadtests.signalr_client import Received, SignalRClient
    from simulator.profiles import load_profile

    profile = load_profile("conduit-2025.08")

    def stamp(target: str, arguments: list) -> float | None:
        event = profile.decode_event(target, arguments) if profile.decode_event else None
        return event.emitted_ms if event is not None else None

    reports: list[tuple] = []
    signalr = SignalRClient("http://127.0.0.1:9", "/hubs/image-generation", "vk_x",
                            report=lambda *args: reports.append(args), event_time=stamp)
    payload = {"taskId": "t1", "imageUrls": [], "durationSeconds": 1.0, "cost": 0,
               "completedAt": "2025-08-28T12:00:00Z"}
    signalr._on_invocation(Invocation("ImageGenerationCompleted", [payload]),
                           Received(1756382400.25, None, 120))
    [(name, ms, length, error)] = reports
    assert (name, length, error) == ("latency_approx ImageGenerationCompleted", 120, None)
    assert abs(ms - 250.0) < 1e-3
