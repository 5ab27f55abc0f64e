"""Process limits raised at start: the open-file limit (one descriptor per websocket).

A hub holds one descriptor per session, so the soft ``RLIMIT_NOFILE`` (often 1024, or
the container runtime's default) caps its sessions long before memory does. Every
server command (``serve``, ``router``, ``bridge``) raises the soft limit to the hard
limit at start, which needs no privilege; the hard limit itself is the operator's
(``ulimit -Hn``, systemd ``LimitNOFILE=``, the container runtime's ``nofile``; see
docs/deploy.md, "A 1M-session plan").
"""

from __future__ import annotations

import resource
from pathlib import Path

NR_OPEN = Path("/proc/sys/fs/nr_open")  # the kernel's ceiling for RLIMIT_NOFILE


def raise_nofile() -> tuple[int, int]:
    """Set the soft open-file limit to the hard one (bounded by ``fs.nr_open`` when the
    hard limit is unlimited). Returns (before, after) soft limits; a refusal leaves the
    limit as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(NR_OPEN.read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target
