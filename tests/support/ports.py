"""A port that refuses connections, for tests of "the server is down".

Servers of the tests bind port 0 themselves and announce the port (see
``tests/support/server.py``); no test picks a free port for another process.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port bound but not listening for as long as the block runs: connecting to it
    is refused at once, and no other process can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
