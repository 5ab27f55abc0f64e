"""h2 connections tuned for many small requests (the bridge's client, the fakes).

h2 and hpack are pure Python: per request, Huffman coding of the header block, header
validation and debug-logging calls were most of the CPU (profiled: ~60 %). Headers
here are built by our own code, so validation is off; header blocks are sent without
Huffman coding (valid HPACK, a few bytes longer, and the peer skips decoding too).

h2 remembers how each closed stream ended (to answer late frames correctly) in a dict
of up to 65,536 entries per connection; over a campaign of millions of requests that is
several MB per connection that never shrinks. 4,096 covers every stream that can still
see a late frame here (at most ``max_streams`` are open at once).
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
from hpack import Encoder


class _PlainEncoder(Encoder):
    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class _Connection(h2.connection.H2Connection):
    MAX_CLOSED_STREAMS = 4096


class _QuietLogger:
    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def trace(self, *args: Any, **kwargs: Any) -> None:
        pass


def new_connection(client_side: bool) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(
        client_side=client_side, header_encoding="utf-8",
        validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False, normalize_inbound_headers=False,
        logger=_QuietLogger())  # type: ignore[arg-type]
    conn = _Connection(config)
    conn.encoder = _PlainEncoder()
    return conn
