"""The keyless Pushca ``/open-connection`` (``pushca_public_open_connection``, off by
default).

Pushca lets browsers call ``/open-connection`` directly, with no credential. pushgate
keeps its API key by default; this opt-in mode takes a request without
``Authorization`` when the client's ``workSpaceId`` and ``applicationId`` are in the
configured allow lists, at most ``pushca_public_rate_per_ip`` per second per client IP
(burst ``pushca_public_burst``). Its tokens carry ``scope: "pushca"``: they open Pushca
connections (``/{jwt}``) only, not ``/v1/ws`` nor ``/v1/devices``. A request with an
``Authorization`` header is an API-key request as always. The risk (anyone who reaches
the server connects as any account of those workspaces) is in docs/http-api.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pushgate.auth import Identity
from pushgate.errors import Forbidden
from pushgate.ratelimit import Buckets
from pushgate.settings import Settings


class PublicOpen:
    """The keyless mode's decisions: who may ask (:meth:`admit`) and for what (:meth:`check`)."""

    def __init__(self, enabled: bool, workspaces: list[str], applications: list[str],
                 rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.workspaces = frozenset(workspaces)
        self.applications = frozenset(applications)
        self.buckets = Buckets(rate, burst)
        self.clock = clock

    @classmethod
    def of(cls, settings: Settings) -> PublicOpen:
        return cls(settings.pushca_public_open_connection, settings.pushca_public_workspaces,
                   settings.pushca_public_applications, settings.pushca_public_rate_per_ip,
                   settings.pushca_public_burst)

    def keyless(self, authorization: str | None) -> bool:
        """Whether a request with this ``Authorization`` header is a keyless one."""
        return self.enabled and authorization is None

    def admit(self, ip: str | None) -> float:
        """Ration keyless requests of client ``ip``: 0.0 when allowed, else the seconds
        until the next one is. (Without an IP, a unix socket, the API key's own limits
        apply: nothing is rationed here.)"""
        if not ip:
            return 0.0
        return self.buckets.take(ip, self.clock())

    def check(self, identity: Identity) -> None:
        """:class:`Forbidden` naming the field unless the workspace and the application
        are open to keyless requests."""
        if identity.workspace not in self.workspaces:
            raise Forbidden(f"workSpaceId {identity.workspace!r} is not open to keyless "
                            "/open-connection; call it with an API key",
                            field="client.workSpaceId")
        if identity.application not in self.applications:
            raise Forbidden(f"applicationId {identity.application!r} is not open to keyless "
                            "/open-connection; call it with an API key",
                            field="client.applicationId")
