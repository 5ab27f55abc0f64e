"""HPACK (RFC 7541): :class:`FieldEncoder` for a connection's sending side,
:class:`FieldDecoder` for its receiving side, one of each per connection.

Contract:

* both keep a dynamic table that must mirror the peer's, so every header block of a
  connection goes through them, in the order it is sent or received, and nothing may
  be encoded between encoding a block and queueing it;
* :meth:`FieldEncoder.block` never fails; the peer's ``SETTINGS_HEADER_TABLE_SIZE``
  reaches it through :meth:`FieldEncoder.resize` and is announced at the start of the
  next block;
* :meth:`FieldDecoder.decode` raises :class:`HeaderBlockError` for anything a decoder
  must refuse (RFC 9113: a connection error of type ``COMPRESSION_ERROR``); its table
  is then unusable, and so is the connection.

The encoder indexes a field from its second use; names in its ``not_indexed`` set
(values that change from message to message) always go as literals without indexing.
The default set holds only protocol names; a provider adds its own (APNs:
``apns-id``, ...), so that no provider's names live in this layer.

Why an own decoder: ``hpack.Decoder`` builds an object per field, slices a memoryview
and logs at debug level per field (16 µs for an APNs request's block, a quarter of a
fake provider's CPU); :class:`FieldDecoder` takes 2.8 µs (docs/design-notes.md §7).
It still uses ``hpack``'s Huffman decoder and static table, which are not that
library's documented API: pyproject.toml pins ``hpack`` below the next minor version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Set

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

TABLE_SIZE = 4_096  # HPACK default; used unless the peer allows less
MAX_HEADER_LIST = 65_536  # decoded size (RFC 7541 section 4.1 sizes) of one block's fields

# static table (RFC 7541 appendix A): names this code sends, and whole fields
STATIC_NAMES = {":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
                "content-length": 28, "content-type": 31, "authorization": 23,
                "retry-after": 53}
STATIC_FIELDS = {(":method", "GET"): 2, (":method", "POST"): 3, (":scheme", "http"): 6,
                 (":scheme", "https"): 7, (":status", "200"): 8, (":status", "204"): 9,
                 (":status", "206"): 10, (":status", "304"): 11, (":status", "400"): 12,
                 (":status", "404"): 13, (":status", "500"): 14}
# values that change from message to message: never put in the dynamic table
NOT_INDEXED = frozenset({":path", ":status", "content-length", "retry-after"})


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK integer (RFC 7541 section 5.1) with ``first``'s high bits set."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return hpack_int(len(raw), 7) + raw  # not Huffman-coded


def literal(name: str, value: str, first: int = 0x00, prefix: int = 4) -> bytes:
    """A literal field (``first``: 0x00 without indexing, 0x10 never indexed, 0x40 with
    incremental indexing; ``prefix``: bits of the name index)."""
    raw = value.encode("latin-1")
    index = STATIC_NAMES.get(name)
    if index is not None:
        return hpack_int(index, prefix, first) + _string(raw)
    return bytes((first,)) + _string(name.encode("ascii")) + _string(raw)


class FieldEncoder:
    """HPACK encoding for one connection's sending side: fields that repeat
    (authorization, topic, content type, ...) go into the dynamic table on their second
    use and are one byte from then on; the fields named in ``not_indexed`` (default
    :data:`NOT_INDEXED`) and values seen once are literals without indexing.
    The table mirrors the peer's decoder (RFC 7541 section 4): entries of ``len(name) +
    len(value) + 32`` bytes, newest first, oldest evicted."""

    def __init__(self, max_size: int = TABLE_SIZE, not_indexed: Set[str] = NOT_INDEXED) -> None:
        self.max_size = max_size
        self.not_indexed = frozenset(not_indexed)
        self.size = 0
        self.inserted = 0
        self._entries: deque[tuple[tuple[str, str], int, int]] = deque()  # newest first
        self._where: dict[tuple[str, str], int] = {}  # field -> insertion number
        self._seen: set[tuple[str, str]] = set()  # fields sent once, not indexed yet
        self._smallest: int | None = None  # smallest size since the last block, if changed
        # field -> its one-byte (or few-byte) index representation: static entries, and
        # dynamic ones until the next insertion moves every relative index
        self._encoded: dict[tuple[str, str], bytes] = {}

    def resize(self, peer_max: int) -> None:
        """The peer's ``SETTINGS_HEADER_TABLE_SIZE``: use at most that (and at most
        :data:`TABLE_SIZE`), announced at the start of the next header block (the
        smallest size since the last block first, then the new one: RFC 7541 4.2)."""
        size = min(peer_max, TABLE_SIZE)
        if size != self.max_size:
            self.max_size = size
            self._smallest = size if self._smallest is None else min(size, self._smallest)
            self._evict(0)

    def _evict(self, room: int) -> None:
        self._encoded.clear()
        while self._entries and self.size + room > self.max_size:
            key, size, number = self._entries.pop()
            self.size -= size
            if self._where.get(key) == number:
                del self._where[key]

    def field(self, name: str, value: str) -> bytes:
        key = (name, value)
        encoded = self._encoded.get(key)
        if encoded is not None:
            return encoded
        static = STATIC_FIELDS.get(key)
        if static is not None:
            encoded = self._encoded[key] = bytes((0x80 | static,))
            return encoded
        if name in self.not_indexed:
            return literal(name, value)
        number = self._where.get(key)
        if number is not None:
            encoded = self._encoded[key] = hpack_int(62 + self.inserted - 1 - number, 7, 0x80)
            return encoded
        if key not in self._seen:  # indexed from its second use: one-off values (a
            if len(self._seen) >= 4096:  # per-event collapse id) do not churn the table
                self._seen.clear()
            self._seen.add(key)
            return literal(name, value)
        size = len(name.encode("ascii")) + len(value.encode("latin-1")) + 32
        if size > self.max_size:
            return literal(name, value)
        self._evict(size)  # (clears the encoded indexes: they all move by one)
        self._entries.appendleft((key, size, self.inserted))
        self._where[key] = self.inserted
        self.inserted += 1
        self.size += size
        return literal(name, value, 0x40, 6)

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        """A header block (the caller puts pseudo-headers first)."""
        field = self.field
        if self._smallest is not None:  # size updates come before the first field
            updates = [hpack_int(self._smallest, 5, 0x20)]
            if self._smallest != self.max_size:
                updates.append(hpack_int(self.max_size, 5, 0x20))
            self._smallest = None
            return b"".join(updates + [field(k, v) for k, v in fields])
        return b"".join([field(k, v) for k, v in fields])


class HeaderBlockError(Exception):
    """A header block that cannot be decoded (RFC 9113: a connection error of type
    ``COMPRESSION_ERROR``)."""


_STATIC: tuple[tuple[bytes, bytes], ...] = tuple(HeaderTable.STATIC_TABLE)


class FieldDecoder:
    """HPACK decoding (RFC 7541) for one connection's receiving side, ~5x cheaper than
    ``hpack.Decoder`` here (no per-field objects, logging or memoryviews), which took a
    quarter of each fake provider's CPU. Fields come back as raw ``(name, value)``
    bytes. The dynamic table holds at most ``max_size`` bytes (our
    ``SETTINGS_HEADER_TABLE_SIZE``: the default 4,096, we never announce another)."""

    def __init__(self, max_size: int = TABLE_SIZE) -> None:
        self.max_allowed = max_size  # what the peer's size updates may ask for
        self.max_size = max_size
        self.size = 0
        self._table: deque[tuple[bytes, bytes]] = deque()  # newest first

    def _evict_to(self, limit: int) -> None:
        """Drop the oldest entries until the table holds at most ``limit`` bytes."""
        table = self._table
        while table and self.size > limit:
            old_name, old_value = table.pop()
            self.size -= len(old_name) + len(old_value) + 32

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        self._evict_to(self.max_size - size)
        if size <= self.max_size:  # larger than the table: it empties it (4.4)
            self._table.appendleft((name, value))
            self.size += size

    def _resize(self, size: int) -> None:
        if size > self.max_allowed:
            raise HeaderBlockError(f"table size update to {size} over {self.max_allowed}")
        self.max_size = size
        self._evict_to(size)

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= 61:
            return _STATIC[index - 1]
        if 61 < index <= 61 + len(self._table):
            return self._table[index - 62]
        raise HeaderBlockError(f"field index {index} not in the table")

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        pos, end, total = 0, len(block), 0
        try:
            while pos < end:
                b = block[pos]
                if b & 0x80:  # indexed field (6.1)
                    index = b & 0x7F
                    pos += 1
                    if index == 0x7F:
                        index, pos = _integer(block, pos, index)
                    name, value = self._entry(index)
                elif b & 0x40 or not b & 0x20:  # literal (6.2): indexing, without, never
                    bits = 0x3F if b & 0x40 else 0x0F
                    index = b & bits
                    pos += 1
                    if index == bits:
                        index, pos = _integer(block, pos, index)
                    if index:
                        name = self._entry(index)[0]
                    else:
                        name, pos = _text(block, pos)
                    value, pos = _text(block, pos)
                    if b & 0x40:
                        self._add(name, value)
                else:  # dynamic table size update (6.3): only before the first field
                    if fields:
                        raise HeaderBlockError("table size update after a field")
                    size = b & 0x1F
                    pos += 1
                    if size == 0x1F:
                        size, pos = _integer(block, pos, size)
                    self._resize(size)
                    continue
                total += len(name) + len(value) + 32
                if total > MAX_HEADER_LIST:
                    raise HeaderBlockError(f"header list over {MAX_HEADER_LIST} bytes")
                fields.append((name, value))
        except IndexError:
            raise HeaderBlockError("header block truncated") from None
        return fields


def _integer(block: bytes, pos: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was full (5.1)."""
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:  # beyond 2^32: no field or table is that large
            raise HeaderBlockError("integer too large")


def _text(block: bytes, pos: int) -> tuple[bytes, int]:
    """A string literal (5.2): the bytes, Huffman-decoded if so marked."""
    b = block[pos]
    n = b & 0x7F
    pos += 1
    if n == 0x7F:
        n, pos = _integer(block, pos, n)
    if pos + n > len(block):
        raise HeaderBlockError("string past the end of the header block")
    raw = block[pos:pos + n]
    if b & 0x80:
        try:
            raw = decode_huffman(raw)
        except HPACKDecodingError as e:
            raise HeaderBlockError(f"bad Huffman code: {e}") from None
    return bytes(raw), pos + n
