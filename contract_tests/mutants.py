"""The mutant catalogue: each known-bad client or receiver and the rule it must fail.

Mirrors the tables in docs/reference-clients.md. The self-test proves the suite's worth with it:
every mutant must fail its rule while the reference implementations pass every rule.
"""

from __future__ import annotations

from contract_tests.receivers import RECEIVER_MUTANTS as RECEIVER_MUTANT_RULES

CLIENT_MUTANTS: dict[str, str] = {
    "no-backoff": "C-RECONNECT-SCHEDULE",
    "short-delays": "C-RECONNECT-SCHEDULE",
    "never-gives-up": "C-RECONNECT-SCHEDULE",
    "reconnect-after-close": "C-RECONNECT-CLOSE",
    "no-resubscribe": "C-RESUBSCRIBE",
    "misses-terminal": "C-NO-LOST-TERMINAL",
    "resubscribes-no-catchup": "C-NO-LOST-TERMINAL",
    "no-fallback": "C-FALLBACK",
    "polls-too-often": "C-POLL-INTERVAL",
    "no-poll-limit": "C-POLL-LIMIT",
    "polls-after-terminal": "C-POLL-STOP",
    "stops-on-poll-error": "C-POLL-ERRORS",
    "ignores-retry-after": "C-RETRY-AFTER",
    "progress-backwards": "C-OUTCOME",
    "reports-completion-twice": "C-OUTCOME",
    "slow-handling": "C-LATENCY",
    "no-auth-on-connect": "C-AUTH",
    "connection-per-task": "C-POOL",
    "no-cleanup": "C-CLEANUP",
}

# The receivers keep their table beside their code.
RECEIVER_MUTANTS = RECEIVER_MUTANT_RULES

# Reference clients: language -> the bundled fast profile (by name) the self-test and CI use.
REFERENCE_CLIENTS: dict[str, str] = {
    "python": "python-reference-fast",
    "node": "node-reference-fast",
}

# The numbers a client can declare, by name: ``fast`` shrinks every wait the reference clients let
# us shrink (0/300/800/1500 ms reconnects, 400 ms polls, 6 polls); ``documented`` is the guide's
# own (0/2/10/30 s, 5 s polls, 60 polls). A rule that holds only for one of them is not a rule.
CLIENT_NUMBERS: dict[str, dict[str, str]] = {
    "fast": REFERENCE_CLIENTS,
    "documented": {"python": "python-reference", "node": "node-reference"},
}
