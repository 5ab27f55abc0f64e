"""The rules for a JSON request body, one place for both servers of the API: the
Starlette routes (:func:`pushgate.hub.api.read_json`) and the send route served
outside Starlette (:mod:`pushgate.hub.sendpath`). Same checks, same messages."""

from __future__ import annotations

from typing import Any

import orjson

from pushgate.errors import InvalidRequest, PayloadTooLarge


def too_large(limit: int) -> PayloadTooLarge:
    """The body grew over ``limit`` bytes while it was read."""
    return PayloadTooLarge(f"request body is over the limit of {limit} bytes", field="body")


def check_length(length: str | None, limit: int) -> None:
    """A declared ``Content-Length`` over ``limit``: 413 before any of the body is read.
    Anything that is not ASCII digits is left to the body's own count."""
    if length is not None and length.isascii() and length.isdigit():
        if len(length) > 18:  # (no int() of thousands of digits)
            raise too_large(limit)
        if int(length) > limit:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}",
                                  field="body")


def decode(body: bytes | bytearray) -> Any:
    """The complete body as JSON: 400 when it is empty or not JSON."""
    if not body:
        raise InvalidRequest("request body is empty; send a JSON object", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if body[:2] == b"\x1f\x8b" or body[:4] == b"\x28\xb5\x2f\xfd":  # gzip, zstd
            raise InvalidRequest("request body is compressed (gzip or zstd): Content-Encoding "
                                 "is not supported; send the JSON uncompressed",
                                 field="body") from None
        raise InvalidRequest(f"request body is not valid JSON: {e}", field="body") from None
