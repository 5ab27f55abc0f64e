"""The common websocket opening handshake, answered without ``websockets``' HTTP stack.

:func:`plain_upgrade` takes the first bytes of a connection the guard handed over as an
upgrade. When they hold the whole head of a request that ``websockets``'
``ServerProtocol.accept`` would answer with ``101`` and nothing else to negotiate — GET,
HTTP/1.1, one ``Upgrade: websocket``, ``upgrade`` among the ``Connection`` tokens, one
``Sec-WebSocket-Key`` of 16 bytes in base64, one ``Sec-WebSocket-Version: 13``, at
most one ``Origin``, no ``Sec-WebSocket-Protocol``, no body, within ``websockets``'
line and header limits — it returns what the connection needs to go on: the path, the
headers the hub reads, the ``101`` (the same bytes ``accept`` + ``send_response`` write:
``Date``, ``Upgrade``, ``Connection``, ``Sec-WebSocket-Accept``) and where the
websocket bytes begin. For anything else it returns ``None`` and the caller gives the
bytes to ``ServerProtocol`` as before, so every refusal keeps ``websockets``' checks
and messages. Extensions offered (``Sec-WebSocket-Extensions``: browsers offer
permessage-deflate) are declined, as the hub's ``ServerProtocol`` declines them.

The head is parsed by llhttp (``httptools``), as the guard parses it; nothing here
parses HTTP. The accept key is RFC 6455 §4.2.2's (SHA-1 of the key and the GUID, in
base64).

Why: a connect spent ~30 % of its CPU in ``websockets``' handshake (its
generator-based parser, ``Headers``, ``accept``'s checks and response object); see
docs/design-notes.md §12 and docs/benchmarks.md.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass

import httptools

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: ``websockets.http11``'s limits (a line, the number of headers)
MAX_LINE = 8192
MAX_HEADERS = 128
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# the headers whose count or presence decides; any other header is only checked
_WATCHED = frozenset({b"connection", b"upgrade", b"sec-websocket-key", b"sec-websocket-version",
                      b"origin", b"authorization", b"sec-websocket-protocol",
                      b"content-length", b"transfer-encoding"})


@dataclass(slots=True)
class Upgrade:
    """A plain websocket upgrade, accepted."""

    path: str
    origin: str | None
    authorization: str | None
    response: bytes  # the 101
    rest: int  # offset in the data of the first byte after the head


class _Head:
    """llhttp's callbacks: the URL and the watched headers (lower-case name -> values)."""

    __slots__ = ("complete", "count", "headers", "ok", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, list[bytes]] = {}
        self.count = 0
        self.ok = True
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count += 1
        # as websockets.http11.parse_headers checks each line
        if (len(name) + len(value) + 4 > MAX_LINE or not _TOKEN.fullmatch(name)
                or not _VALUE.fullmatch(value)):
            self.ok = False
            return
        key = name.lower()
        if key in _WATCHED:
            self.headers.setdefault(key, []).append(value.strip(b" \t"))

    def on_headers_complete(self) -> None:
        self.complete = True


_date = (0, b"")


def _http_date() -> bytes:
    """``Date`` as ``websockets`` writes it, made once per second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date[1]


def plain_upgrade(data: bytes) -> Upgrade | None:
    """The accepted upgrade at the start of ``data``, or ``None`` (see the module
    docstring): then ``websockets`` is to handle the bytes."""
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade as e:
        rest = int(e.args[0]) if e.args else len(data)
    except httptools.HttpParserError:
        return None
    else:
        return None  # not a complete upgrade head in this read
    if (not head.complete or not head.ok or head.count > MAX_HEADERS
            or parser.get_method() != b"GET" or parser.get_http_version() != "1.1"
            or len(head.url) + 14 > MAX_LINE or not head.url.isascii()):
        return None
    h = head.headers
    if b"sec-websocket-protocol" in h or b"transfer-encoding" in h or any(
            v != b"0" for v in h.get(b"content-length", ())):
        return None
    connection = h.get(b"connection", ())
    upgrade = h.get(b"upgrade", ())
    key = h.get(b"sec-websocket-key", ())
    version = h.get(b"sec-websocket-version", ())
    origin = h.get(b"origin", ())
    if len(upgrade) != 1 or upgrade[0].lower() != b"websocket" or len(key) != 1 \
            or version != [b"13"] or len(origin) > 1 or len(connection) != 1:
        return None
    tokens = [t.strip(b" \t") for t in connection[0].split(b",")]
    if not all(_TOKEN.fullmatch(t) for t in tokens) or \
            not any(t.lower() == b"upgrade" for t in tokens):
        return None
    try:
        if len(base64.b64decode(key[0], validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    accept = base64.b64encode(hashlib.sha1(key[0] + GUID).digest())
    response = b"".join((b"HTTP/1.1 101 Switching Protocols\r\nDate: ", _http_date(),
                         b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: ", accept, b"\r\n\r\n"))
    auth = h.get(b"authorization")
    return Upgrade(head.url.decode("ascii"), origin[0].decode("latin-1") if origin else None,
                   auth[0].decode("latin-1") if auth else None, response, rest)
