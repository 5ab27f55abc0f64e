"""``directory_url`` selects the Redis engine; a URL that is none is refused naming the
setting and what is wrong (the router refuses to start with it)."""

from __future__ import annotations

import pytest

from pushgate.router.directory import open_directory
from pushgate.router.directory.engines import parse
from pushgate.router.directory.keys import Keys


def test_each_scheme_selects_its_engine() -> None:
    assert parse("redis://127.0.0.1:6379/0").mode == "single"
    assert parse("unix:///run/redis.sock?db=0").mode == "single"
    c = parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001")
    assert (c.mode, c.nodes, c.password) == ("cluster", [("10.0.0.1", 7000), ("10.0.0.2", 7001)],
                                             None)
    s = parse("redis+sentinel://:s%40cret@10.0.0.1:26379,[::1]:26380/main")
    assert (s.mode, s.nodes, s.service, s.password) == (
        "sentinel", [("10.0.0.1", 26379), ("::1", 26380)], "main", "s@cret")


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://10.0.0.1:26379", "Sentinel service name is missing"),
    ("redis+sentinel://10.0.0.1:26379/", "Sentinel service name is missing"),
    ("redis+cluster://10.0.0.1:7000/0", "Redis Cluster has no database"),
    ("redis+cluster://10.0.0.1", "'10.0.0.1' is not host:port"),
    ("redis+cluster://10.0.0.1:99999", "'10.0.0.1:99999' is not host:port"),
    ("redis+cluster://", "no host:port"),
    ("mongodb://x", "unsupported scheme"),
])
def test_bad_urls_are_refused_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="directory_url") as e:
        open_directory(url)
    assert message in str(e.value)


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match=r"directory_prefix 'a\{b:'"):
        Keys("a{b:")
