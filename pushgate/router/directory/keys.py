"""The Redis key schema of the session directory, in one place (all under one prefix).

=====================  ====  ==========================================================
key                    type  holds
=====================  ====  ==========================================================
``<p>u:<user>``        hash  session id -> ``hub TAB connected_at TAB ws TAB dev TAB app``
``<p>h:<hub>``         set   ``user TAB session id`` of every session the hub holds
``<p>hubs``            set   hub ids that have (had) sessions
``<p>hb:<hub>``        str   heartbeat: exists while the hub is alive (TTL)
``<p>epoch``           str   set once per Redis lifetime; missing = Redis lost its data
=====================  ====  ==========================================================

Ids never contain control characters (:func:`pushgate.auth.check_id`), so TAB is a
safe separator. The Lua scripts in ``lua/`` build the same keys from the prefix.
"""

from __future__ import annotations

from pushgate.router.directory.quota import SessionInfo

SEP = "\t"


class Keys:
    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def user(self, user: str) -> str:
        return f"{self.prefix}u:{user}"

    def hub(self, hub: str) -> str:
        return f"{self.prefix}h:{hub}"

    @property
    def hubs(self) -> str:
        return f"{self.prefix}hubs"

    def heartbeat(self, hub: str) -> str:
        return f"{self.prefix}hb:{hub}"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"


def pack(s: SessionInfo) -> str:
    return SEP.join((s.hub, repr(s.connected_at), s.workspace, s.device, s.application))


def unpack(user: str, session_id: str, value: str) -> SessionInfo:
    hub, at, ws, dev, app = value.split(SEP, 4)
    return SessionInfo(session_id, user, hub, float(at), ws, dev, app)


def member(user: str, session_id: str) -> str:
    return f"{user}{SEP}{session_id}"
