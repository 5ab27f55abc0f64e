"""The kernel's view of a loopback TCP connection (``/proc/net/tcp``), for tests that
must know what reached a socket or what state it is in without asking the server."""

from __future__ import annotations


def socket_row(local_port: int, remote_port: int) -> list[str] | None:
    """The ``/proc/net/tcp`` fields of the IPv4 socket from ``local_port`` to
    ``remote_port`` (``[3]`` is the state in hex, ``[4]`` ``tx_queue:rx_queue``), or
    ``None`` when there is none (closed, or its process let go of it)."""
    local, remote = f":{local_port:04X}", f":{remote_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(local) and fields[2].endswith(remote):
                return fields
    return None
