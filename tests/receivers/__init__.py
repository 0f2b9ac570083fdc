"""Tests of the webhook-receiver half of the contract suite: the W-* checks, their strategies, the
reference receivers (Python and Node, started through the driver protocol) and their mutants."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from contract_tests.receivers import RECEIVER_COMMANDS, ReceiverProcess

SECRET = "whsec_receiver_tests_0123456789"
LANGUAGES = ("python", "node")

# What each mutant fails, all W-* rules run (docs/reference-clients.md names the first; the others
# follow from the same bug: e.g. a receiver that never accepts anything also fails W-RAW-BODY).
EXPECTED_FAILURES: dict[str, set[str]] = {
    # A forgery answered 2xx is a forgery not refused (W-REJECT, case by case) and an outsider's
    # request without a 4xx (W-NO-CRASH) - both, for the mutants that accept what W-NO-CRASH sends.
    "no-verification": {"W-REJECT", "W-NO-CRASH"},
    # Verifying the re-serialised body also accepts whitespace appended after signing.
    "reserialised": {"W-RAW-BODY", "W-REJECT", "W-NO-CRASH"},
    "bytes-eq": {"W-ACCEPT", "W-RAW-BODY", "W-DUPLICATE"},
    "prefix-compare": {"W-REJECT", "W-NO-CRASH"},
    # The 500s on a missing / wrong-length header are also not 401s, and an unsigned invalid-JSON
    # POST (W-METHOD) has no header.
    "crash-on-length": {"W-NO-CRASH", "W-REJECT", "W-METHOD"},
    "accepts-missing-header": {"W-REJECT", "W-NO-CRASH"},
    # The placeholder secret is public: a forgery signed with it is accepted.
    "hardcoded-secret": {"W-ACCEPT", "W-RAW-BODY", "W-REJECT", "W-DUPLICATE", "W-NO-CRASH"},
    "slow-ack": {"W-FAST-ACK"},
    "processes-duplicates": {"W-DUPLICATE"},
    "crash-on-get": {"W-METHOD"},
    "accepts-placeholder-secret": {"W-REJECT"},
    # The unsigned invalid-JSON POST of W-METHOD is parsed first too.
    "parses-before-verifying": {"W-NO-CRASH", "W-METHOD"},
}
# What each mutant leaves INCONCLUSIVE: a receiver that accepts nothing refuses every forgery, which
# shows nothing about its signature check (W-REJECT's control delivery is not accepted).
EXPECTED_INCONCLUSIVE: dict[str, set[str]] = {
    "bytes-eq": {"W-REJECT"},
}
# Mutants whose bug is an exception in the handler (logged on stderr).
CRASHING_MUTANTS = frozenset({"crash-on-length", "crash-on-get", "parses-before-verifying"})


def need_node(language: str) -> None:
    if language == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")


@contextmanager
def receiver(language: str, mutant: str | None = None, **kwargs: object) -> Iterator[ReceiverProcess]:
    """A bundled receiver started through the driver protocol (ready line read), stopped after."""
    need_node(language)
    process = ReceiverProcess(RECEIVER_COMMANDS[language](mutant), secret=SECRET, **kwargs)  # type: ignore[arg-type]
    process.start()
    try:
        yield process
    finally:
        process.stop()
