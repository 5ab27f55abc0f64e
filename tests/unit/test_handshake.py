"""The plain upgrade path (pushgate/hub/handshake.py) against ``websockets``' own
``ServerProtocol``: whatever it accepts, the library accepts with the same 101 bytes;
what it declines is left to the library (which then accepts or refuses it itself)."""

from __future__ import annotations

import itertools

import pytest
from websockets.server import ServerProtocol

from pushgate.hub.handshake import plain_upgrade

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASE = ["Host: t", "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13"]


def request(lines: list[str], line: str = "GET /v1/ws?token=abc HTTP/1.1") -> bytes:
    return ("\r\n".join([line, *lines]) + "\r\n\r\n").encode("latin-1")


def library(data: bytes) -> tuple[int, bytes]:
    """The library's status and response bytes for ``data`` (one request)."""
    proto = ServerProtocol()
    proto.receive_data(data)
    events = proto.events_received()
    if not events:  # it could not parse the request
        return 0, b""
    response = proto.accept(events[0])
    proto.send_response(response)
    return response.status_code, b"".join(proto.data_to_send())


def without_date(head: bytes) -> bytes:
    return b"\r\n".join(x for x in head.split(b"\r\n") if not x.startswith(b"Date: "))


VARIANTS = {
    "plain": BASE,
    "case": ["host: t", "upgrade: WebSocket", "connection: keep-alive, upgrade",
             f"sec-websocket-key: {KEY}", "sec-websocket-version: 13"],
    "extensions": [*BASE, "Sec-WebSocket-Extensions: permessage-deflate"],
    "origin": [*BASE, "Origin: https://app.example"],
    "authorization": [*BASE, "Authorization: Bearer xyz"],
    "content-length-0": [*BASE, "Content-Length: 0"],
    "two-connections": [*BASE, "Connection: keep-alive"],
    "subprotocol": [*BASE, "Sec-WebSocket-Protocol: chat"],
    "two-origins": [*BASE, "Origin: a", "Origin: b"],
    "two-keys": [*BASE, f"Sec-WebSocket-Key: {KEY}"],
    "short-key": [*BASE[:3], "Sec-WebSocket-Key: c2hvcnQ=", BASE[4]],
    "bad-base64": [*BASE[:3], "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!=", BASE[4]],
    "version-8": [*BASE[:4], "Sec-WebSocket-Version: 8"],
    "no-version": BASE[:4],
    "no-key": [*BASE[:3], BASE[4]],
    "upgrade-h2c": [BASE[0], "Upgrade: h2c", *BASE[2:]],
    "two-upgrades": [*BASE, "Upgrade: websocket"],
    "connection-close": [BASE[0], BASE[1], "Connection: close", *BASE[3:]],
    "body": [*BASE, "Content-Length: 5"],
    "chunked": [*BASE, "Transfer-Encoding: chunked"],
}


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("line", ["GET /v1/ws?token=abc HTTP/1.1", "GET /v1/ws HTTP/1.0",
                                  "POST /v1/ws HTTP/1.1"])
def test_what_the_plain_path_accepts_the_library_accepts_with_the_same_101(
        name: str, line: str) -> None:
    data = request(VARIANTS[name], line)
    ours = plain_upgrade(data)
    status, theirs = library(data)
    if ours is None:
        return  # left to the library: the hub feeds it these bytes
    assert status == 101, (name, line)
    assert without_date(ours.response) == without_date(theirs)
    assert ours.rest == len(data)
    assert ours.path == "/v1/ws?token=abc"


def test_the_common_requests_take_the_plain_path() -> None:
    """The point of it: what browsers and client libraries send is answered there."""
    for name in ("plain", "case", "extensions", "origin", "authorization",
                 "content-length-0"):
        up = plain_upgrade(request(VARIANTS[name]))
        assert up is not None, name
    up = plain_upgrade(request(VARIANTS["origin"] + ["Authorization: Bearer xyz"]))
    assert up is not None
    assert (up.origin, up.authorization) == ("https://app.example", "Bearer xyz")


def test_the_bytes_after_the_head_and_a_head_cut_short() -> None:
    data = request(BASE)
    frame = b"\x89\x80abcd"  # a masked ping, in the same read as the head
    up = plain_upgrade(data + frame)
    assert up is not None and (data + frame)[up.rest:] == frame
    for cut in itertools.chain(range(1, 40), range(len(data) - 40, len(data))):
        assert plain_upgrade(data[:cut]) is None  # incomplete: the library reads on
