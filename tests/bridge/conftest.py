"""Fake APNs / FCM servers (real HTTP/2 + TLS on port 0, in the test's event loop)
and the credentials to reach them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pushgate.fakes.apns import FakeApns, generate_key
from pushgate.fakes.fcm import FakeFcm
from tests.support.server import ServerProcess, server_env

KEY_ID, TEAM_ID, TOPIC = "ABC123DEFG", "TEAM123456", "com.example.app"


@dataclass
class Fakes:
    apns: FakeApns
    fcm: FakeFcm
    apns_url: str
    fcm_url: str
    apns_key: Path
    service_account: Path
    ca_file: Path

    async def wait(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds, checked whenever either fake answered (a
        predicate over both fakes must not wait on one fake's answers only)."""
        changed = asyncio.Event()
        self.apns.state.changed = self.fcm.state.changed = changed
        async with asyncio.timeout(timeout_s):
            while not predicate():
                changed.clear()
                await changed.wait()

    def settings_env(self) -> dict[str, str]:
        """``pushgate serve`` environment pointing the bridge at these fakes."""
        return {
            "PUSHGATE_APNS_KEY_FILE": str(self.apns_key),
            "PUSHGATE_APNS_KEY_ID": KEY_ID,
            "PUSHGATE_APNS_TEAM_ID": TEAM_ID,
            "PUSHGATE_APNS_TOPIC": TOPIC,
            "PUSHGATE_APNS_URL": self.apns_url,
            "PUSHGATE_FCM_SERVICE_ACCOUNT_FILE": str(self.service_account),
            "PUSHGATE_FCM_URL": self.fcm_url,
            "PUSHGATE_PUSH_CA_FILE": str(self.ca_file),
        }


@pytest.fixture
async def fakes(tmp_path: Path) -> AsyncIterator[Fakes]:
    key = tmp_path / "AuthKey.p8"
    generate_key(key)
    apns = FakeApns(key, KEY_ID, TEAM_ID, TOPIC)
    apns_server, apns_port, cert = await apns.serve("127.0.0.1", 0, tmp_path / "apns-tls")
    fcm = FakeFcm("demo-project")
    fcm_server, fcm_port, fcm_cert = await fcm.serve("127.0.0.1", 0, tmp_path / "fcm-tls")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.read_bytes() + fcm_cert.read_bytes())
    sa = tmp_path / "service-account.json"
    sa.write_text(json.dumps(fcm.service_account(f"https://127.0.0.1:{fcm_port}/token")))
    try:
        yield Fakes(apns, fcm, f"https://127.0.0.1:{apns_port}", f"https://127.0.0.1:{fcm_port}",
                    key, sa, ca)
    finally:
        for server in (apns_server, fcm_server):
            server.close()
            await server.wait_closed()


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *args: str, **env: str) -> AsyncIterator[ServerProcess]:
    """``pushgate serve`` started and stopped from a thread, so that the fakes (in this
    event loop) answer its start-up credential checks."""
    srv = ServerProcess(tmp_path / "data", server_env(**env), list(args))
    await asyncio.to_thread(srv.start)
    try:
        yield srv
    finally:
        await asyncio.to_thread(srv.stop)
