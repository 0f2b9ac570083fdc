"""The driver reads a client's output safely and notices a dead or silent client at once.

The clients here are tiny Python programs (real processes, real pipes) that misbehave in one
way each: exit before ready, stay silent, write non-UTF-8 bytes, write stderr without newlines,
write an over-long line, die in the middle of a wait.
"""

from __future__ import annotations

import io
import sys
import time

import pytest

from contract_tests.driver import (
    MAX_LINE_BYTES,
    STDERR_TAIL_BYTES,
    ClientUnderTest,
    DriverError,
    read_lines,
)

READY = 'sys.stdout.buffer.write(b\'{"obs": "ready", "roles": ["signalr"]}\\n\'); sys.stdout.flush()'


def client(code: str) -> ClientUnderTest:
    return ClientUnderTest([sys.executable, "-c", "import sys, time\n" + code], {})


def test_read_lines_cuts_and_flags_long_lines() -> None:
    stream = io.BufferedReader(io.BytesIO(b"short\n" + b"x" * 50 + b"\nlast"))  # type: ignore[arg-type]
    assert list(read_lines(stream, limit=16)) == [(b"short\n", 6), (b"x" * 16, 51), (b"last", 4)]


def test_a_client_that_exits_before_ready_is_reported_at_once() -> None:
    c = client('sys.stderr.write("boom: cannot connect\\n"); sys.exit(3)')
    started = time.monotonic()
    with pytest.raises(DriverError) as caught:
        c.start(ready_timeout=60)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message
    assert "exited with code 3 before its ready line" in message and "boom: cannot connect" in message


def test_a_silent_client_is_reported_after_the_ready_deadline() -> None:
    c = client("time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"sent no ready line within 1 s; stderr: \(empty\)"):
        c.start(ready_timeout=1)
    assert time.monotonic() - started < 5
    assert not c.alive


def test_a_missing_command_is_one_line() -> None:
    c = ClientUnderTest(["/no/such/client-binary"], {})
    with pytest.raises(DriverError, match="cannot start client '/no/such/client-binary': ") as caught:
        c.start()
    assert "\n" not in str(caught.value)


def test_non_utf8_output_is_decoded_leniently() -> None:
    c = client('sys.stdout.buffer.write(b"\\xff\\xfe not json\\n"); sys.stderr.buffer.write(b"\\xc3(\\n"); '
               + READY + "; sys.stdin.readline()")
    try:
        ready = c.start(ready_timeout=20)
        assert ready.get("roles") == ["signalr"]
        assert any("\ufffd" in error for error in c.protocol_errors)
        deadline = time.monotonic() + 10  # stderr is another pipe: it may arrive after ready
        while "\ufffd" not in c.stderr_tail and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "\ufffd(" in c.stderr_tail
    finally:
        c.stop(timeout=2)


def test_stderr_without_newlines_keeps_only_a_tail() -> None:
    c = client('sys.stderr.buffer.write(b"e" * 5_000_000 + b"END"); sys.stderr.flush(); '
               + READY + "; sys.stdin.readline()")
    try:
        c.start(ready_timeout=20)
        deadline = time.monotonic() + 10
        while not c.stderr_tail.endswith("END") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.stderr_tail.endswith("END") and len(c.stderr_tail) <= STDERR_TAIL_BYTES
        assert c.stderr_dropped >= 5_000_000 - STDERR_TAIL_BYTES
    finally:
        c.stop(timeout=2)


def test_an_over_long_stdout_line_is_cut_and_flagged() -> None:
    size = 3 * MAX_LINE_BYTES
    long_line = f'sys.stdout.buffer.write(b"{{" + b"a" * {size} + b"\\n"); '
    c = client(long_line + READY + "; sys.stdin.readline()")
    try:
        c.start(ready_timeout=20)
        assert len(c.protocol_errors) == 1
        assert f"{size + 2:,} bytes is over the" in c.protocol_errors[0]
        assert len(c.protocol_errors[0]) < 400
    finally:
        c.stop(timeout=2)


def test_a_client_that_dies_mid_wait_ends_the_wait_at_once() -> None:
    c = client(READY + '; time.sleep(0.3); sys.stderr.write("segfault-ish\\n"); sys.exit(139)')
    c.start(ready_timeout=20)
    started = time.monotonic()
    with pytest.raises(DriverError) as caught:
        c.wait_for("completed", timeout=60)
    assert time.monotonic() - started < 5
    assert "exited with code 139" in str(caught.value) and "segfault-ish" in str(caught.value)
    with pytest.raises(DriverError):
        c.outcome("task_x", timeout=60)
    assert time.monotonic() - started < 6


def test_observations_printed_just_before_exit_still_count() -> None:
    c = client(READY + '; print(\'{"obs": "completed", "task_id": "t"}\', flush=True)')
    c.start(ready_timeout=20)
    assert c.wait_for("completed", timeout=10).get("task_id") == "t"
