"""Seeded payloads: the same seed and task index give the same content, whatever the timing."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from simulator.scenarios import PayloadFactory
from simulator.tasks.model import TaskRequest

IMAGE = TaskRequest(kind="image", prompt="A red fox in snow.", model="dall-e-3", key="vk_test",
                    params={"n": 3})
VIDEO = TaskRequest(kind="video", prompt="Waves", model="video-slow", key="vk_test", params={"duration": 8})
UUID_PNG = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.png$")


def content(seed: int | None, index: int) -> tuple:
    payloads = PayloadFactory(seed).for_task(index)
    image = payloads.image_result(IMAGE, created=0)
    return (payloads.task_id(), image, payloads.video_result(VIDEO), payloads.error("failed"),
            payloads.error("timedout"), payloads.prompt(), payloads.rng.random())


def test_same_seed_same_content() -> None:
    assert content(42, 5) == content(42, 5)


def test_content_is_independent_of_call_order_and_other_tasks() -> None:
    factory = PayloadFactory(42)
    later = factory.for_task(5)
    for index in range(5):  # other tasks drawing in between change nothing
        factory.for_task(index).image_result(IMAGE)
    prompt_first = later.prompt()
    assert (later.task_id(), later.image_result(IMAGE, created=0), later.video_result(VIDEO),
            later.error("failed"), later.error("timedout"), prompt_first) == content(42, 5)[:6]
    assert later.image_result(IMAGE, created=0) == later.image_result(IMAGE, created=0)


def test_different_seeds_or_tasks_differ() -> None:
    base = content(42, 5)
    for other in (content(43, 5), content(42, 6)):
        assert all(mine != theirs for mine, theirs in zip(base[:3], other[:3], strict=True))
    assert content(None, 0)[0] != content(None, 0)[0]  # no seed: a random one


def test_task_ids() -> None:
    factory = PayloadFactory(1)
    ids = {factory.for_task(index).task_id() for index in range(500)}
    assert len(ids) == 500
    assert all(re.fullmatch(r"task_[0-9a-f]{32}", task_id) for task_id in ids)


def test_image_result_shape() -> None:
    result = PayloadFactory(1).for_task(0).image_result(IMAGE)
    assert set(result) == {"images", "model", "created"}
    assert result["model"] == "dall-e-3" and isinstance(result["created"], int)
    assert len(result["images"]) == 3
    urls = [image["url"] for image in result["images"]]
    assert len(set(urls)) == 3
    for image in result["images"]:
        assert urlsplit(image["url"]).netloc == "cdn.example.test"
        assert UUID_PNG.search(image["url"])
        assert image["revised_prompt"].startswith("A red fox in snow")
    single = TaskRequest(kind="image", prompt="x", model="m", key="vk_test")
    assert len(PayloadFactory(1).for_task(0).image_result(single)["images"]) == 1


def test_video_result_shape() -> None:
    result = PayloadFactory(1).for_task(0).video_result(VIDEO)
    assert result["duration"] == 8 and result["model"] == "video-slow" and result["resolution"] == "1280x720"
    assert urlsplit(result["video_url"]).netloc == "cdn.example.test"
    assert result["video_url"].endswith(".mp4")
    default = TaskRequest(kind="video", prompt="x", model="m", key="vk_test")
    assert PayloadFactory(1).for_task(0).video_result(default)["duration"] == 5


def test_errors_and_prompts_read_like_text() -> None:
    payloads = PayloadFactory(9).for_task(0)
    for kind in ("failed", "content_policy", "rate_limit", "timedout", "anything-else"):
        message = payloads.error(kind)
        assert isinstance(message, str) and len(message) > 20 and "{" not in message
    policy = payloads.error("content_policy").lower()
    assert "policy" in policy or "safety" in policy
    prompt = payloads.prompt()
    assert prompt.endswith(".") and len(prompt.split()) >= 5
