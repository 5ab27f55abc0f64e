"""The Redis key schema of the session directory, in one place (all under one prefix).

The same layout serves a single Redis, a Sentinel-managed primary and Redis Cluster.
Every key a script touches carries the hash tag of one *bucket* (``{b<n>}``, ``n`` in
0..1023, from the user id), so each script runs in one cluster slot:

=========================  ====  ========================================================
key                        type  holds
=========================  ====  ========================================================
``<p>{b<n>}:u:<user>``     hash  session id -> ``hub TAB connected_at TAB ws TAB dev TAB app``
``<p>{b<n>}:h:<hub>``      set   ``user TAB session id`` of the hub's sessions whose user
                                 falls in bucket ``n`` (a hub's membership is 1024 sets)
``<p>hubs``                set   hub ids that have (had) sessions
``<p>hb:<hub>``            str   heartbeat: exists while the hub is alive (TTL)
``<p>epoch:b1024``         str   set once per data set; missing = Redis lost its data (or
                                 holds an older key layout)
=========================  ====  ========================================================

A user's hash and the hub sets its sessions are listed in share the bucket's tag, so
the quota check + insert + kick list and the compare-and-delete are one-slot scripts; a
dead hub's cleanup and a hub re-sync run one script per bucket. Ids never contain
control characters (:func:`pushgate.auth.check_id`), so TAB is a safe separator. The
prefix may not contain ``{`` or ``}`` (it would move the hash tag).
"""

from __future__ import annotations

import binascii

from pushgate.router.directory.quota import SessionInfo

SEP = "\t"
BUCKETS = 1024  # a power of two


def bucket(user: str) -> int:
    """The user's bucket: CRC16 (the one Redis Cluster hashes keys with) modulo 1024."""
    return binascii.crc_hqx(user.encode(), 0) & (BUCKETS - 1)


class Keys:
    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"directory_prefix {prefix!r}: '{{' and '}}' are not allowed "
                             "(they would change the Redis Cluster hash tag)")
        self.prefix = prefix

    def base(self, b: int) -> str:
        """What every key of bucket ``b`` starts with (the scripts append ``u:`` / ``h:``)."""
        return f"{self.prefix}{{b{b}}}:"

    def user(self, user: str) -> str:
        return f"{self.base(bucket(user))}u:{user}"

    def hub(self, hub: str, b: int) -> str:
        """The set of ``hub``'s sessions whose users fall in bucket ``b``."""
        return f"{self.base(b)}h:{hub}"

    @property
    def hubs(self) -> str:
        return f"{self.prefix}hubs"

    def heartbeat(self, hub: str) -> str:
        return f"{self.prefix}hb:{hub}"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch:b{BUCKETS}"


def pack(s: SessionInfo) -> str:
    return SEP.join((s.hub, repr(s.connected_at), s.workspace, s.device, s.application))


def unpack(user: str, session_id: str, value: str) -> SessionInfo:
    hub, at, ws, dev, app = value.split(SEP, 4)
    return SessionInfo(session_id, user, hub, float(at), ws, dev, app)


def member(user: str, session_id: str) -> str:
    return f"{user}{SEP}{session_id}"
