"""Run a fake provider until SIGTERM/SIGINT (``pushgate fake-apns`` / ``fake-fcm``)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from pushgate._h2.server import H2Server


async def _until_stopped(server: H2Server) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def apns_key(directory: Path, key_id: str) -> Path:
    """The fake's .p8 key in ``directory`` (created on first use)."""
    from pushgate.fakes.apns import generate_key

    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"AuthKey_{key_id}.p8"
    if not key.exists():
        generate_key(key)
    return key


def fcm_account(directory: Path) -> dict[str, Any] | None:
    """The service account a previous run wrote to ``directory``, if any."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "service-account.json"
    return json.loads(path.read_text()) if path.exists() else None


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


async def fake_apns(host: str, port: int, directory: Path, key_id: str, team_id: str,
                    topic: str | None, record: bool) -> None:
    from pushgate.fakes.apns import FakeApns

    key = await asyncio.to_thread(apns_key, directory, key_id)
    fake = FakeApns(key, key_id, team_id, topic)
    fake.state.record = record
    server, bound, cert = await fake.serve(host, port, directory / "tls")
    url = f"https://{host}:{bound}"
    print(f"FAKE_APNS_LISTENING {url}", flush=True)
    print(f"# bridge settings:\nPUSHGATE_APNS_URL={url}\nPUSHGATE_APNS_KEY_FILE={key}\n"
          f"PUSHGATE_APNS_KEY_ID={key_id}\nPUSHGATE_APNS_TEAM_ID={team_id}\n"
          f"PUSHGATE_APNS_TOPIC={topic or 'com.example.app'}\nPUSHGATE_PUSH_CA_FILE={cert}",
          file=sys.stderr, flush=True)
    await _until_stopped(server)


async def fake_fcm(host: str, port: int, directory: Path, project_id: str, record: bool) -> None:
    from pushgate.fakes.fcm import FakeFcm

    sa_path = directory / "service-account.json"
    existing = await asyncio.to_thread(fcm_account, directory)
    fake = FakeFcm.from_service_account(existing) if existing else FakeFcm(project_id)
    fake.state.record = record
    server, bound, cert = await fake.serve(host, port, directory / "tls")
    url = f"https://{host}:{bound}"
    await asyncio.to_thread(_write_private, sa_path,
                            json.dumps(fake.service_account(f"{url}/token"), indent=2))
    print(f"FAKE_FCM_LISTENING {url}", flush=True)
    print(f"# bridge settings:\nPUSHGATE_FCM_URL={url}\nPUSHGATE_FCM_SERVICE_ACCOUNT_FILE="
          f"{sa_path}\nPUSHGATE_PUSH_CA_FILE={cert}", file=sys.stderr, flush=True)
    await _until_stopped(server)
