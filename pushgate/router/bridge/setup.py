"""Build the bridge's providers and worker settings from :class:`~pushgate.settings.Settings`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushgate.router.bridge.base import Provider
from pushgate.router.bridge.worker import WorkerConfig

if TYPE_CHECKING:
    from pushgate.settings import Settings


def providers(settings: Settings) -> dict[str, Provider]:
    """The configured providers (empty = no bridge). Reads and checks the key files:
    :class:`~pushgate.router.bridge.base.BridgeConfigError` names the bad setting."""
    found: dict[str, Provider] = {}
    if settings.apns_key_file:
        from pushgate.router.bridge.apns import ApnsConfig, ApnsProvider

        found["apns"] = ApnsProvider(ApnsConfig(
            key_file=settings.apns_key_file, key_id=settings.apns_key_id or "",
            team_id=settings.apns_team_id or "", topic=settings.apns_topic or "",
            url=settings.apns_url, ca_file=settings.push_ca_file))
    if settings.fcm_service_account_file:
        from pushgate.router.bridge.fcm import FcmConfig, FcmProvider

        found["fcm"] = FcmProvider(FcmConfig(
            service_account_file=settings.fcm_service_account_file,
            project_id=settings.fcm_project_id, url=settings.fcm_url,
            ca_file=settings.push_ca_file))
    return found


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        batch=settings.push_batch, pipelines=settings.push_pipelines,
        concurrency=settings.push_concurrency, rate_per_app=settings.push_rate_per_app,
        max_attempts=settings.push_max_attempts, retry_base_s=settings.push_retry_base_s,
        retry_max_s=settings.push_retry_max_s, lease_s=settings.push_lease_s)
