"""The webhook client's HTTP/1.1 response reader (sans-I/O): framing, keep-alive and bad answers."""

from __future__ import annotations

import pytest

from simulator.channels.webhook_http import MAX_HEAD, ResponseError, ResponseReader, ServerDisconnected


def read(data: bytes, *, byte_by_byte: bool = False, eof: bool = False) -> ResponseReader:
    reader = ResponseReader()
    pieces = [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]
    for piece in pieces:
        reader.feed(piece)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_content_length_body_is_read_to_its_end_and_the_connection_kept(byte_by_byte: bool) -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
                  byte_by_byte=byte_by_byte)
    assert (reader.done, reader.status, reader.keep_alive, reader.leftover) == (True, 200, True, False)


def test_not_done_until_the_last_body_byte() -> None:
    reader = read(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nab")
    assert not reader.done
    reader.feed(b"c")
    assert reader.done and reader.status == 500


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_chunked_body_with_extensions_and_trailers(byte_by_byte: bool) -> None:
    data = (b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"4;name=value\r\nWiki\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
    reader = read(data, byte_by_byte=byte_by_byte)
    assert (reader.done, reader.status, reader.keep_alive) == (True, 202, True)


def test_informational_answers_before_the_final_one_are_skipped() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                  b"HTTP/1.1 204 No Content\r\n\r\n")
    assert (reader.done, reader.status, reader.keep_alive) == (True, 204, True)


def test_a_body_ended_by_closing_the_connection() -> None:
    reader = read(b"HTTP/1.0 200 OK\r\n\r\nsome body")
    assert not reader.done
    reader.feed(b" and more")
    reader.feed_eof()
    assert (reader.done, reader.status, reader.keep_alive) == (True, 200, False)


@pytest.mark.parametrize(("head", "keep_alive"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\n", False),
    (b"HTTP/1.0 200 OK\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", True),
])
def test_keep_alive_follows_the_version_and_connection_header(head: bytes, keep_alive: bool) -> None:
    reader = read(head + b"Content-Length: 0\r\n\r\n")
    assert reader.done and reader.keep_alive is keep_alive


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert reader.done and reader.leftover


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
])
def test_malformed_answers_are_errors(data: bytes) -> None:
    with pytest.raises(ResponseError):
        read(data)


def test_a_head_that_never_ends_is_cut_off() -> None:
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ResponseError, match="longer than"):
        for _ in range(MAX_HEAD // 1000 + 2):
            reader.feed(b"X-Filler: " + b"a" * 990 + b"\r\n")


@pytest.mark.parametrize("data", [
    b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
])
def test_the_server_closing_before_the_end_is_a_disconnect(data: bytes) -> None:
    with pytest.raises(ServerDisconnected):
        read(data, eof=True)
