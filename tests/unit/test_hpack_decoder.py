"""``pushgate._h2.hpack.FieldDecoder`` (HPACK decoding) against RFC 7541's examples and,
differentially, against the ``hpack`` library's encoder and decoder: random header
lists with Huffman coding on and off, never-indexed fields, evictions and table size
updates must decode to the same fields and leave the same table; broken blocks must
be refused."""

from __future__ import annotations

import random

import hpack
import pytest

from pushgate._h2.hpack import FieldDecoder, FieldEncoder, HeaderBlockError


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def test_rfc7541_c3_requests_without_huffman() -> None:
    d = FieldDecoder()
    assert d.decode(_hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
        (b":authority", b"www.example.com")]
    assert d.size == 57
    assert d.decode(_hex("8286 84be 5808 6e6f 2d63 6163 6865")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
        (b":authority", b"www.example.com"), (b"cache-control", b"no-cache")]
    assert d.size == 110
    assert d.decode(_hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"
                         )) == [
        (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
        (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")]
    assert d.size == 164


def test_rfc7541_c4_requests_with_huffman() -> None:
    d = FieldDecoder()
    assert d.decode(_hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
        (b":authority", b"www.example.com")]
    assert d.decode(_hex("8286 84be 5886 a8eb 1064 9cbf")) == [
        (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
        (b":authority", b"www.example.com"), (b"cache-control", b"no-cache")]


def _random_fields(rng: random.Random) -> list[tuple[bytes, bytes]]:
    names = [b":status", b":path", b"content-type", b"authorization", b"apns-id",
             b"x-custom", b"retry-after", b"apns-topic"]
    out = []
    for _ in range(rng.randint(0, 8)):
        name = rng.choice(names) if rng.random() < 0.8 else f"x-{rng.randrange(50)}".encode()
        size = rng.choice([0, 1, 5, 30, 200, 1500])
        value = bytes(rng.randrange(32, 127) for _ in range(size))
        if rng.random() < 0.3:
            value = rng.choice([b"200", b"application/json", b"bearer abc"])
        out.append((name, value))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_decodes_what_hpack_encodes_like_hpack_decodes_it(seed: int) -> None:
    rng = random.Random(seed)
    encoder, reference, ours = hpack.Encoder(), hpack.Decoder(), FieldDecoder()
    reference.max_header_list_size = 1 << 20
    for _ in range(300):
        if rng.random() < 0.05:  # the encoder shrinks its table (a size update follows)
            encoder.header_table_size = rng.choice([0, 64, 256, 1000, 4096])
        fields = _random_fields(rng)
        sensitive = rng.random() < 0.2
        block = encoder.encode([hpack.HeaderTuple(k, v) if not sensitive else
                                hpack.NeverIndexedHeaderTuple(k, v) for k, v in fields],
                               huffman=rng.random() < 0.5)
        assert ours.decode(block) == [tuple(f) for f in reference.decode(block, raw=True)] \
            == fields
        assert list(ours._table) == list(reference.header_table.dynamic_entries)
        assert ours.max_size == reference.header_table_size


def test_decodes_our_encoder_with_peer_table_size_changes() -> None:
    rng = random.Random(7)
    encoder, ours = FieldEncoder(), FieldDecoder()
    for _ in range(400):
        if rng.random() < 0.05:
            encoder.resize(rng.choice([0, 100, 4096]))
        fields = [(k.decode(), v.decode("latin-1")) for k, v in _random_fields(rng)]
        got = ours.decode(encoder.block(fields))
        assert [(k.decode(), v.decode("latin-1")) for k, v in got] == fields
        assert ours.size == encoder.size


@pytest.mark.parametrize("block, message", [
    (b"\x80", "index 0"),  # indexed field 0
    (b"\xbe", "index 62"),  # first dynamic entry of an empty table
    (b"\x40\x05ab", "past the end"),  # name literal longer than the block
    (b"\x00\x01a", "truncated"),  # name without its value
    (b"\xff", "truncated"),  # integer prefix full, continuation missing
    (b"\xff\xff\xff\xff\xff\xff\x01", "too large"),
    (b"\x3f\xe2\x1f", "over 4096"),  # size update to 31 + 98 + 31 * 128 = 4,097
    (b"\x82\x20", "after a field"),
    (b"\x00\x81\xff\x00", "Huffman"),  # 8 one-bits: an EOS prefix longer than padding
])
def test_refuses_broken_blocks(block: bytes, message: str) -> None:
    with pytest.raises(HeaderBlockError, match=message):
        FieldDecoder().decode(block)


def test_refuses_a_header_list_over_64_kib() -> None:
    value = b"v" * 20_000
    block = hpack.Encoder().encode([(f"x-{i}".encode(), value) for i in range(4)])
    with pytest.raises(HeaderBlockError, match="header list"):
        FieldDecoder().decode(block)


def test_an_entry_larger_than_the_table_empties_it() -> None:
    d = FieldDecoder(max_size=100)
    d.decode(b"\x40\x01a\x01b")  # 34 bytes
    assert d.size == 34
    d.decode(b"\x40\x01c" + bytes([0x7F, 0x01]) + b"x" * 128)  # 161 bytes
    assert d.size == 0
    with pytest.raises(HeaderBlockError, match="index 62"):
        d.decode(b"\xbe")
