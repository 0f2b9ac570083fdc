"""The webhook client's HTTP/1.1 exchange (sans-I/O, h11 reads the answers): framing, keep-alive, bad answers."""

from __future__ import annotations

import pytest

from simulator.channels.webhook_http import (
    MAX_HEAD,
    Endpoint,
    Http1Client,
    ResponseError,
    ServerDisconnected,
    post_request,
)

ENDPOINT = Endpoint(host="127.0.0.1", port=8080, tls=False, target="/hook?a=1", host_header="127.0.0.1:8080")
REQUEST = post_request(ENDPOINT, [("Content-Type", "application/json"), ("X-Tenant", "t\u00e9")], b'{"a":1}')


def exchange(data: bytes, *, byte_by_byte: bool = False, eof: bool = False,
             client: Http1Client | None = None) -> tuple[Http1Client, int | None]:
    """Send the request, feed ``data`` (then the end of the connection if ``eof``); the last status seen."""
    client = client or Http1Client()
    client.send(REQUEST)
    status = None
    for piece in [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]:
        status = client.receive(piece) or status
    if eof:
        status = client.receive(b"") or status
    return client, status


def test_the_request_is_framed_by_content_length_with_the_host_first() -> None:
    assert Http1Client().send(REQUEST) == (
        b"POST /hook?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"X-Tenant: t\xc3\xa9\r\nContent-Length: 7\r\n\r\n{\"a\":1}")


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_content_length_body_is_read_to_its_end_and_the_connection_kept(byte_by_byte: bool) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
    client, status = exchange(data, byte_by_byte=byte_by_byte)
    assert (status, client.reusable) == (200, True)


def test_not_done_until_the_last_body_byte() -> None:
    client, status = exchange(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nab")
    assert status is None and not client.reusable
    assert client.receive(b"c") == 500 and client.reusable


def test_a_kept_connection_carries_the_next_request_byte_for_byte() -> None:
    client = Http1Client()
    first = client.send(REQUEST)
    assert client.receive(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n") == 503
    assert client.send(REQUEST) == first  # a retry re-sends the same bytes on the same connection
    assert client.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == 200 and client.reusable


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_chunked_body_with_extensions_and_trailers(byte_by_byte: bool) -> None:
    data = (b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;name=value\r\nWiki\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
    client, status = exchange(data, byte_by_byte=byte_by_byte)
    assert (status, client.reusable) == (202, True)


def test_informational_answers_before_the_final_one_are_skipped() -> None:
    client, status = exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                              b"HTTP/1.1 204 No Content\r\n\r\n")
    assert (status, client.reusable) == (204, True)


def test_a_body_ended_by_closing_the_connection() -> None:
    client, status = exchange(b"HTTP/1.0 200 OK\r\n\r\nsome body")
    assert status is None
    assert client.receive(b" and more") is None
    assert client.receive(b"") == 200 and not client.reusable


@pytest.mark.parametrize(("head", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\n", False),
    (b"HTTP/1.0 200 OK\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", False),  # h11 never keeps HTTP/1.0 connections
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", True),
])
def test_keep_alive_follows_the_version_and_connection_header(head: bytes, reusable: bool) -> None:
    client, status = exchange(head + b"Content-Length: 0\r\n\r\n")
    assert status == 200 and client.reusable is reusable


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    client, status = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert status == 200 and not client.reusable


@pytest.mark.parametrize("data", [
    b"HTTP/2 200\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Content-Length: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",  # h11 decodes no other coding
])
def test_malformed_answers_are_errors(data: bytes) -> None:
    with pytest.raises(ResponseError):
        exchange(data)


def test_a_head_that_never_ends_is_cut_off() -> None:
    client = Http1Client()
    client.send(REQUEST)
    client.receive(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ResponseError, match="too long"):
        for _ in range(MAX_HEAD // 1000 + 2):
            client.receive(b"X-Filler: " + b"a" * 990 + b"\r\n")


@pytest.mark.parametrize("data", [
    b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
])
def test_the_server_closing_before_the_end_is_a_disconnect(data: bytes) -> None:
    with pytest.raises(ServerDisconnected):
        exchange(data, eof=True)
