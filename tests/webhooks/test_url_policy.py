"""Which webhook URLs the simulator may call: loopback, or hosts the operator allowed."""

from __future__ import annotations

import pytest

from simulator.channels.webhooks import check_webhook_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook",
    "http://127.0.0.2:9000/x",
    "http://127.255.255.254/",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/",
    "https://LOCALHOST:443/a?b=c",
    "http://localhost.:8000/",
])
def test_loopback_is_accepted(url: str) -> None:
    assert check_webhook_url(url, ()) is None


@pytest.mark.parametrize("url", [
    "http://example.com/hook",
    "https://10.0.0.1/",
    "http://[::2]/",
    "http://0.0.0.0/",
    "http://127.1/",  # resolves to loopback, but the check is on the literal host
    "http://2130706433/",
    "http://localhost.example.com/",
    "http://127.0.0.1.nip.io/",
])
def test_other_hosts_are_refused(url: str) -> None:
    error = check_webhook_url(url, ())
    assert error is not None and "not allowed" in error


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "ws://127.0.0.1/hook",
    "127.0.0.1/hook",
])
def test_non_http_schemes_are_refused(url: str) -> None:
    error = check_webhook_url(url, ())
    assert error is not None and "http or https" in error


@pytest.mark.parametrize(("url", "fragment"), [
    ("http:///path", "host"),
    ("http://127.0.0.1:99999/", "valid URL"),
    ("http://127.0.0.1/a b", "whitespace"),
    ("", "non-empty"),
])
def test_malformed_urls_are_refused_with_a_reason(url: str, fragment: str) -> None:
    error = check_webhook_url(url, ())
    assert error is not None and fragment in error


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://hooks.example.com/x", ["hooks.example.com"]),
    ("https://HOOKS.Example.COM/x", ["hooks.example.com"]),
    ("http://hooks.example.com/x", ["HOOKS.EXAMPLE.COM"]),
    ("http://[2001:db8::1]/", ["2001:db8::1"]),
    ("http://[2001:db8::1]/", ["[2001:db8::1]"]),
    ("http://192.0.2.7:8080/", ["192.0.2.7"]),
])
def test_allowed_hosts_are_accepted(url: str, allowed: list[str]) -> None:
    assert check_webhook_url(url, allowed) is None


def test_allowing_a_host_allows_only_that_host_and_only_over_http() -> None:
    allowed = ["hooks.example.com"]
    assert check_webhook_url("http://other.example.com/", allowed) is not None
    assert check_webhook_url("http://sub.hooks.example.com/", allowed) is not None
    assert check_webhook_url("ftp://hooks.example.com/", allowed) is not None
