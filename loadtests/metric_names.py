"""What a request name means as a metric: ``<type>.<first word of the name>``.

An HTTP method as first word means ``latency`` (``GET /api/tasks/{id}/status`` under Poll is
``poll.latency``); the rest of the name is the *detail* a threshold may select
(``signalr.latency[TaskCompleted]``). Both the summary (which groups samples by metric) and the
thresholds (which select them) read names this way, so it is here, below both.
"""

from __future__ import annotations

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# request_type as Locust shows it → the selector word used in thresholds.
TYPE_WORDS = {"SignalR": "signalr", "Poll": "poll", "REST": "rest", "Webhook": "webhook"}


def metric_of(request_type: str, name: str) -> str:
    """``("Poll", "GET /api/tasks/{id}/status")`` → ``"poll.latency"``."""
    first = name.split(" ", 1)[0] if name else ""
    word = "latency" if first.upper() in HTTP_METHODS or not first else first.lower()
    return f"{TYPE_WORDS.get(request_type, request_type.lower())}.{word}"


def detail_of(name: str) -> str:
    """What follows the first word of a name (``latency TaskProgress`` → ``TaskProgress``)."""
    parts = name.split(" ", 1)
    return parts[1] if len(parts) > 1 else ""
