"""The Python reference client speaking the ``conduit-2025.08`` dialect (``CONDUIT_PROFILE``):
it follows ImageGeneration*/VideoGeneration* objects over SignalR and the /v1 status routes by
polling, and still subscribes again after a reconnect."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from simulator.background import BackgroundSimulator
from tests.clients.test_python_client import (
    SCENARIO,
    ClientProcess,
    assert_reported_once,
    create,
    inject,
    polls,
    progress_values,
    subscribes,
    task,
    wait_until,
)
from tests.support.simulator import TEST_KEY

PROFILE = "conduit-2025.08"


@pytest.fixture
def sim(make_simulator: Callable[..., BackgroundSimulator]) -> BackgroundSimulator:
    return make_simulator(profile=PROFILE, scenario=SCENARIO, seed=11)


@pytest.fixture
def client(sim: BackgroundSimulator) -> Iterator[ClientProcess]:
    process = ClientProcess(sim.url, None, TEST_KEY, CONDUIT_PROFILE=PROFILE)
    assert process.ready
    yield process
    assert process.shutdown() == 0, process.stderr[-10:]
    assert not process.bad_lines


def test_signalr_in_the_as_built_dialect(sim: BackgroundSimulator, client: ClientProcess) -> None:
    image, video, failing = create(sim, "quick", "image"), create(sim, "quick", "video"), create(sim, "fail")
    for task_id, kind in ((image, "image"), (video, "video"), (failing, "image")):
        client.track(task_id, kind)
    completed = client.wait("completed", task_id=video, timeout=10)
    assert completed["result"]["videoUrl"] == task(sim, video).result["video_url"]
    assert progress_values(client, video) == [10, 40, 80]  # VideoGenerationProgress.progress
    done = client.wait("completed", task_id=image, timeout=10)
    assert done["result"]["imageUrls"] == [i["url"] for i in task(sim, image).result["images"]]
    assert progress_values(client, image) == [0]  # one image: counted, not percent, until the end
    assert assert_reported_once(client, image) == done
    failed = client.wait("failed", task_id=failing)
    assert failed["error"] == "Model overloaded"
    assert len(subscribes(sim, video, "SubscribeToTask")) == 1  # not SubscribeToRequest
    wait_until(lambda: subscribes(sim, image, "UnsubscribeFromTask"), 3)


def test_polling_uses_the_real_status_routes(sim: BackgroundSimulator, client: ClientProcess) -> None:
    image, video = create(sim, "quick", "image"), create(sim, "quick", "video")
    client.track(image, "image", via="polling")
    client.track(video, "video", via="polling")
    assert client.wait("completed", task_id=image)["result"]["images"][0]["Url"]
    assert client.wait("completed", task_id=video)["result"].startswith('{"videoUrl":')
    assert {p.get("route") for p in polls(sim, image)} == {"/v1/images/generations/{task_id}/status"}
    assert {p.get("route") for p in polls(sim, video)} == {"/v1/videos/generations/tasks/{task_id}"}


def test_resubscribes_after_a_reconnect(sim: BackgroundSimulator, client: ClientProcess) -> None:
    task_id = create(sim, "away", "image")
    client.track(task_id)
    wait_until(lambda: subscribes(sim, task_id, "SubscribeToTask"), 5)
    inject(sim, "drop_connections", mode="close_reconnect")
    client.wait("state", state="reconnected", timeout=10)
    wait_until(lambda: len(subscribes(sim, task_id, "SubscribeToTask")) == 2, 5)
    client.wait("completed", task_id=task_id, timeout=10)
