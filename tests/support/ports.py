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


def free_tcp_ports(n: int, *, plus: int = 0) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now (each with ``port + plus`` free too,
    for Redis Cluster's bus port). Only for servers that cannot bind port 0 and announce
    what they got: ``redis-server`` reads ``--port 0`` as "no TCP", and its cluster bus
    and Sentinel's peers need TCP. The caller retries with new ports when a server then
    finds its port taken (:func:`tests.redis_engines.start_with_retries`)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if plus:
                if port + plus > 65535:
                    continue
                bus = socket.socket()
                held.append(bus)
                try:
                    bus.bind(("127.0.0.1", port + plus))
                except OSError:
                    continue
            ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()
