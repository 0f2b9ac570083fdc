"""Seeded content for tasks: ids, result payloads, error messages, prompts.

Everything a task shows is a pure function of ``(seed, task_index, what was asked)``: each method
reseeds Faker from those values, so the same seed and the same task order give the same ids,
URLs and messages however the run's timing interleaves tasks, and calling a method twice gives
the same answer. Only ``created`` (a wall-clock time) differs between runs.

All hosts are under ``example.test`` (RFC 2606): generated URLs never point at a real server.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from faker import Faker

from simulator.tasks.model import TaskRequest

CDN = "https://cdn.example.test"
VIDEO_RESOLUTION = "1280x720"
DEFAULT_VIDEO_DURATION = 5

# Provider-style messages for error(kind); {req} and {seconds} are filled in from the seeded Faker.
ERROR_MESSAGES: dict[str, tuple[str, ...]] = {
    "failed": (
        "Provider returned 500: internal error while generating (request {req})",
        "Upstream provider unavailable: the model is overloaded, try again later",
        "Generation failed: the provider closed the connection unexpectedly (request {req})",
    ),
    "content_policy": (
        "Content policy violation: the prompt was rejected by the provider's safety system",
        "Your request was rejected as a result of our safety system (request {req})",
    ),
    "rate_limit": (
        "Rate limit exceeded: too many requests for this model, retry later",
        "Provider quota exhausted for this virtual key (request {req})",
    ),
    "timedout": (
        "Generation timed out after {seconds} seconds",
        "The provider did not finish the task in time (request {req})",
    ),
}


class PayloadFactory:
    """Hands each task (by creation order) its own seeded :class:`TaskPayloads`."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        # Building a Faker costs ~2 ms; one is shared and reseeded under a lock for every value.
        self._faker = Faker()
        self._lock = threading.Lock()

    def for_task(self, task_index: int) -> TaskPayloads:
        return TaskPayloads(self, task_index)

    def _with_faker(self, seed: str, build: Any) -> Any:
        with self._lock:
            self._faker.seed_instance(seed)
            return build(self._faker)


class TaskPayloads:
    """The content of one task. Build it with :meth:`PayloadFactory.for_task`."""

    def __init__(self, factory: PayloadFactory, task_index: int) -> None:
        self.factory = factory
        self.task_index = task_index
        self._seed = f"{factory.seed}:{task_index}"
        # Separate streams, so drawing a script does not shift ids or URLs, and the other way round.
        self._id = f"task_{random.Random(f'{self._seed}:id').getrandbits(128):032x}"
        self._rng = random.Random(f"{self._seed}:choice")

    @property
    def rng(self) -> random.Random:
        """The task's RNG for the scenario's weighted choice (``Scenario.choose_script``)."""
        return self._rng

    def task_id(self) -> str:
        return self._id

    def _fake(self, purpose: str, build: Any) -> Any:
        return self.factory._with_faker(f"{self._seed}:{purpose}", build)

    def image_result(self, request: TaskRequest, created: float | None = None) -> dict[str, Any]:
        count = request.params.get("n", 1)
        count = count if isinstance(count, int) and not isinstance(count, bool) and count >= 1 else 1

        def build(fake: Faker) -> list[dict[str, Any]]:
            return [{
                "url": f"{CDN}/images/{fake.hexify('^^')}/{fake.uuid4()}.png",
                "revised_prompt": f"{request.prompt.rstrip(' .')}, {fake.sentence(nb_words=6).lower()}",
            } for _ in range(count)]

        return {
            "images": self._fake("image", build),
            "model": request.model,
            "created": int(created if created is not None else time.time()),
        }

    def video_result(self, request: TaskRequest) -> dict[str, Any]:
        duration = request.params.get("duration")
        return {
            "video_url": self._fake("video", lambda fake: f"{CDN}/videos/{fake.uuid4()}.mp4"),
            "duration": duration if duration is not None else DEFAULT_VIDEO_DURATION,
            "model": request.model,
            "resolution": VIDEO_RESOLUTION,
        }

    def error(self, kind: str = "failed") -> str:
        """A plausible provider error for ``kind``: failed, content_policy, rate_limit, timedout
        (anything else gets a ``failed`` message)."""
        templates = ERROR_MESSAGES.get(kind, ERROR_MESSAGES["failed"])

        def build(fake: Faker) -> str:
            template = fake.random_element(templates)
            return template.format(req=f"req_{fake.hexify('^' * 24)}",
                                   seconds=fake.random_element((60, 120, 300, 600)))

        return self._fake(f"error:{kind}", build)

    def prompt(self) -> str:
        """A Faker sentence, as the prompt of a generated (load-test) task."""
        return self._fake("prompt", lambda fake: fake.sentence(nb_words=10))
