"""Where each rule comes from: the passage of Conduit's real-time guide it enforces, or why it goes
beyond the guide.

A verdict that says only "FAIL" invites the question "says who?". Every rule the suite checks
has an entry here, keyed by rule ID: one line of what it checks, the guide's section, and a few
words quoted from that section (kept short: enough to find the passage, not a copy of it). A
rule the guide does not state carries ``beyond`` instead: why the suite holds clients to it
anyway (Conduit as built, HTTP semantics, robustness). ``check --list-rules`` prints this table,
and the console and the JSON verdicts cite it beside each row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Citation:
    """One rule's source: ``section`` and ``quote`` from the guide, or ``beyond`` (why not)."""

    rule: str
    line: str
    section: str = ""
    quote: str = ""
    beyond: str = ""

    def __str__(self) -> str:
        if self.quote:
            return f'guide, {self.section}: "{self.quote}"'
        return f"beyond the guide: {self.beyond}"

    def to_json(self) -> dict[str, str]:
        data = {"section": self.section, "quote": self.quote} if self.quote else {"beyond": self.beyond}
        return {"line": self.line, **data}


_POLLING = "Quick Start › Polling for Task Status"
_RECONNECT = "Error Handling & Resilience › Connection Error Handling"
_RELIABILITY = "Best Practices › Reliability"

CITATIONS: dict[str, Citation] = {c.rule: c for c in (
    Citation("PREFLIGHT", "the client connects at all: negotiate and handshake with its key, or a poll",
             "SignalR Hub Architecture › Connection Authentication", "Virtual key authentication"),
    Citation("C-POLL-INTERVAL", "polls of one task are at least the declared interval apart",
             _POLLING, "Wait 5 seconds before next poll"),
    Citation("C-POLL-LIMIT", "polling gives up after the declared number of polls and reports a timeout",
             _POLLING, "const maxAttempts = 60"),
    Citation("C-POLL-STOP", "no poll once a terminal status has been seen",
             "Error Handling & Resilience › Fallback Strategies", "clearInterval(interval)"),
    Citation("C-POLL-ERRORS", "a failed poll (5xx, network error) does not end tracking",
             _RELIABILITY, "Add retry logic for failed operations"),
    Citation("C-RETRY-AFTER", "after a 429 or 503 with Retry-After, the next request waits that long",
             beyond="the guide never mentions 429/503; HTTP says Retry-After is how long to wait "
                    "(RFC 9110 §10.2.3), and Conduit's rate limiter sends it"),
    Citation("C-RECONNECT-SCHEDULE", "reconnect attempts follow the declared delays, never sooner, "
             "and stop when the schedule ends", _RECONNECT, "Exponential backoff: 0, 2, 10, 30 seconds"),
    Citation("C-RECONNECT-CLOSE", "no automatic reconnect after a Close without allowReconnect; a manual "
             "restart waits the declared delay", _RECONNECT, "Attempt manual reconnection after delay"),
    Citation("C-RESUBSCRIBE", "after a reconnect every still-active task is subscribed again",
             _RECONNECT, "Resubscribe to active tasks"),
    Citation("C-NO-LOST-TERMINAL", "a task that ends while the client is away is still reported, "
             "with the right outcome", "Real-Time Architecture › Event Flow",
             "Final result delivered via both webhook and SignalR"),
    Citation("C-FALLBACK", "when SignalR cannot connect, tasks are tracked by polling",
             _RELIABILITY, "Implement fallback to polling when SignalR unavailable"),
    Citation("C-OUTCOME", "one completion or failure per task, with the server's result or error; "
             "progress never goes back", "SignalR Hub Architecture › Available Hubs",
             "TaskCompleted(taskId, result)"),
    Citation("C-LATENCY", "from emit to the client's report stays within the declared budget",
             "Communication Methods Comparison", "Very Low (< 100ms)"),
    Citation("C-AUTH", "the key is sent on negotiate and on the connection",
             "SignalR Hub Architecture › Connection Authentication", "accessTokenFactory: () =>"),
    Citation("C-POOL", "at most the declared number of concurrent hub connections",
             "Performance Optimization › Connection Pooling", "this.maxConnections = 5"),
    Citation("C-CLEANUP", "a finished task is unsubscribed",
             "Best Practices › Connection Management", "Clean up subscriptions"),
    Citation("W-ACCEPT", "a correctly signed delivery is answered 2xx",
             "Quick Start › Webhook Notifications", "res.status(200)"),
    Citation("W-RAW-BODY", "the signature is checked over the exact bytes received",
             beyond="the guide's example signs JSON.stringify(req.body), which differs from the bytes "
                    "Conduit signed whenever key order, spacing or escapes differ"),
    Citation("W-REJECT", "a wrong, missing or placeholder signature or secret gets 401/403, never 2xx",
             "Security Considerations › Webhook Security", "return res.status(401)"),
    Citation("W-NO-CRASH", "what a sender without the secret can send gets a 4xx, never a 5xx or a "
             "dropped connection", beyond="the guide says to verify signatures but not before parsing; "
             "a receiver that crashes on unsigned input can be knocked over by anyone"),
    Citation("W-DUPLICATE", "a repeated delivery is acknowledged and processed once",
             "Communication Methods Comparison › When to Use Each Method", "retry logic needed"),
    Citation("W-FAST-ACK", "every delivery is answered within the budget",
             beyond="the guide sets no time; Conduit as built gives up on a delivery after 30 s "
                    "and retries it"),
    Citation("W-METHOD", "non-POST and non-JSON requests get a 4xx, not a 5xx",
             "Quick Start › Webhook Notifications", "app.post('/webhooks/conduit'"),
)}


def citation(rule: str) -> Citation | None:
    return CITATIONS.get(rule)
