"""The APNs and FCM providers against the fakes: auth, payload mapping, result kinds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pushgate.router.bridge.apns import ApnsConfig, ApnsProvider
from pushgate.router.bridge.base import BridgeConfigError, Outcome
from pushgate.router.bridge.fcm import FcmConfig, FcmProvider

from .conftest import KEY_ID, TEAM_ID, TOPIC, Fakes

IOS = "ab" * 32
ANDROID = "fcm-token-1"


def apns(f: Fakes, **kw: str) -> ApnsProvider:
    cfg = {"key_file": str(f.apns_key), "key_id": KEY_ID, "team_id": TEAM_ID, "topic": TOPIC,
           "url": f.apns_url, "ca_file": str(f.ca_file), **kw}
    return ApnsProvider(ApnsConfig(**cfg))


def fcm(f: Fakes, **kw: str) -> FcmProvider:
    cfg = {"service_account_file": str(f.service_account), "url": f.fcm_url,
           "ca_file": str(f.ca_file), **kw}
    return FcmProvider(FcmConfig(**cfg))


async def test_apns_push_maps_the_payload_and_headers(fakes: Fakes) -> None:
    p = apns(fakes)
    await p.start()
    try:
        push = {"title": "Hi", "body": "mail", "badge": 2, "sound": "default", "ttl": 60,
                "data": {"k": "v"}, "collapse_id": "inbox"}
        assert (await p.send(IOS, push, 7)).outcome is Outcome.OK
    finally:
        await p.close()
    got = fakes.apns.state.last[IOS]
    assert got["payload"] == {"aps": {"alert": {"title": "Hi", "body": "mail"}, "badge": 2,
                                      "sound": "default"}, "k": "v", "pushgate": {"seq": 7}}
    h = got["headers"]
    assert (h["apns-topic"], h["apns-push-type"], h["apns-priority"], h["apns-collapse-id"]) == (
        TOPIC, "alert", "10", "inbox")
    assert int(h["apns-expiration"]) > 0


async def test_apns_error_kinds(fakes: Fakes) -> None:
    p = apns(fakes)
    await p.start()
    s = fakes.apns.state
    try:
        s.gone.add(IOS)
        r = await p.send(IOS, {"body": "x"}, 1)
        assert (r.outcome, r.status, r.reason) == (Outcome.DEAD, 410, "Unregistered")
        r = await p.send("not-hex", {"body": "x"}, 1)
        assert (r.outcome, r.reason) == (Outcome.DEAD, "BadDeviceToken")
        s.fail("cd" * 32, 429, "TooManyRequests", retry_after="3")
        r = await p.send("cd" * 32, {"body": "x"}, 1)
        assert (r.outcome, r.retry_after_s) == (Outcome.RETRY, 3.0)
        s.fail("cd" * 32, 500, "InternalServerError")
        assert (await p.send("cd" * 32, {"body": "x"}, 1)).outcome is Outcome.RETRY
        assert (await p.send("cd" * 32, {"body": "x"}, 1)).outcome is Outcome.OK
    finally:
        await p.close()


async def test_apns_a_token_not_for_the_topic_is_a_failure_not_a_dead_token(
        fakes: Fakes) -> None:
    """A wrong apns_topic (or an apns-topic override of one send) makes APNs answer
    DeviceTokenNotForTopic for every token: as a dead token, every iOS device of the
    recipients was deleted by one send."""
    p = apns(fakes, topic="com.example.typo")
    await p.start()
    try:
        r = await p.send(IOS, {"body": "x"}, 1)
    finally:
        await p.close()
    assert (r.outcome, r.reason) == (Outcome.FAILED, "DeviceTokenNotForTopic")


async def test_apns_a_token_is_one_path_segment_whatever_it_holds(fakes: Fakes) -> None:
    """A registered token is any printable ASCII: "../../_fake/stats" was a request to
    the fake's stats (200: counted as pushed), "a b" a malformed path."""
    p = apns(fakes)
    await p.start()
    try:
        for token in ("../../_fake/stats", "a b", "x?y=1"):
            r = await p.send(token, {"body": "x"}, 1)
            assert (r.outcome, r.reason) == (Outcome.DEAD, "BadDeviceToken"), token
    finally:
        await p.close()


async def test_apns_bad_credentials_fail_at_start(fakes: Fakes, tmp_path: Path) -> None:
    with pytest.raises(BridgeConfigError, match="apns_key_file: cannot read"):
        apns(fakes, key_file=str(tmp_path / "missing.p8"))
    (tmp_path / "junk.p8").write_text("not a key")
    with pytest.raises(BridgeConfigError, match=r"apns_key_file: .* not a PEM"):
        apns(fakes, key_file=str(tmp_path / "junk.p8"))
    with pytest.raises(BridgeConfigError, match="apns_team_id"):
        apns(fakes, team_id="short")
    p = apns(fakes, team_id="WRONGTEAM1")  # well-formed, but not the key's team
    with pytest.raises(BridgeConfigError, match=r"InvalidProviderToken.*apns_team_id"):
        await p.start()
    await p.close()


async def test_fcm_push_maps_the_message_and_handles_errors(fakes: Fakes) -> None:
    p = fcm(fakes)
    await p.start()
    s = fakes.fcm.state
    try:
        push = {"title": "Hi", "body": "mail", "data": {"n": 1, "s": "x"}, "ttl": 60,
                "android": {"notification": {"channel_id": "c"}}, "sound": "ding"}
        assert (await p.send(ANDROID, push, 9)).outcome is Outcome.OK
        msg = s.last[ANDROID]
        assert msg["notification"] == {"title": "Hi", "body": "mail"}
        assert msg["data"] == {"n": "1", "s": "x", "pushgate_seq": "9"}
        assert msg["android"] == {"priority": "HIGH", "collapse_key": "pushgate-9", "ttl": "60s",
                                  "notification": {"sound": "ding", "channel_id": "c"}}
        s.gone.add("dead")
        r = await p.send("dead", {"body": "x"}, 1)
        assert (r.outcome, r.status, r.reason) == (Outcome.DEAD, 404, "UNREGISTERED")
        s.fail("busy", 429, "QUOTA_EXCEEDED", retry_after="2")
        r = await p.send("busy", {"body": "x"}, 1)
        assert (r.outcome, r.retry_after_s) == (Outcome.RETRY, 2.0)
        fakes.fcm.access_tokens.clear()  # the token was revoked: refreshed once, then sent
        assert (await p.send(ANDROID, {"body": "again"}, 10)).outcome is Outcome.OK
        assert fakes.fcm.tokens_issued == 2
    finally:
        await p.close()


async def test_fcm_pushes_share_one_token_refresh_and_its_failure(
        fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pushes waiting for the access token share one refresh: its failure fails them
    all with the fixed reason ``token_refresh`` and the token endpoint is not asked
    again for each (a stalling endpoint cost one timeout per push, one after another);
    it is asked again ``TOKEN_RETRY_S`` after the failure."""
    from pushgate.fakes.state import json_reply
    from pushgate.router.bridge import fcm as fcm_module

    p = fcm(fakes)
    await p.start()
    asked = 0

    def refusing(req: object) -> object:
        nonlocal asked
        asked += 1
        return json_reply(400, {"error": "invalid_grant", "error_description": "down"})

    try:
        fakes.fcm._token = refusing  # type: ignore[assignment,method-assign]
        fakes.fcm.access_tokens.clear()  # revoked: every push gets a 401, then refreshes
        results = await asyncio.gather(*(p.send(ANDROID, {"body": str(i)}, i) for i in range(8)))
        assert {(r.outcome, r.reason) for r in results} == {(Outcome.RETRY, "token_refresh")}
        assert asked == 1
        assert (await p.send(ANDROID, {"body": "x"}, 9)).reason == "token_refresh"
        assert asked == 1  # within TOKEN_RETRY_S of the failure: not asked
        del fakes.fcm._token  # the endpoint is back
        monkeypatch.setattr(fcm_module, "TOKEN_RETRY_S", 0.0)
        assert (await p.send(ANDROID, {"body": "y"}, 10)).outcome is Outcome.OK
    finally:
        await p.close()


async def test_fcm_bad_credentials_fail_at_start(fakes: Fakes, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BridgeConfigError, match=r"fcm_service_account_file: .* not JSON"):
        fcm(fakes, service_account_file=str(bad))
    bad.write_text(json.dumps({"type": "service_account", "client_email": "x"}))
    with pytest.raises(BridgeConfigError, match=r"fcm_service_account_file: .*bad service-account"):
        fcm(fakes, service_account_file=str(bad))
    other = json.loads(fakes.service_account.read_text())
    from pushgate.fakes.fcm import FakeFcm

    other["private_key"] = FakeFcm().private_key  # a key the token endpoint does not know
    bad.write_text(json.dumps(other))
    p = fcm(fakes, service_account_file=str(bad))
    with pytest.raises(BridgeConfigError, match="token endpoint refused"):
        await p.start()
    await p.close()


@pytest.mark.parametrize("make", [apns, fcm], ids=["apns", "fcm"])
async def test_an_unreachable_provider_is_a_retry_with_a_fixed_reason(
        fakes: Fakes, make: object) -> None:
    """The reason of a transport failure is a fixed word (it labels
    ``pushgate_push_failed_total`` and counts in reports), not the OS error's text with
    an address in it: a provider down for a campaign adds one label value, not many."""
    from tests.support.ports import refused_port

    with refused_port() as port:
        p = make(fakes, url=f"https://127.0.0.1:{port}")  # type: ignore[operator]
        await p.start()  # unreachable at start: only logged
        try:
            r = await p.send(IOS, {"body": "x"}, 1)
        finally:
            await p.close()
    assert (r.outcome, r.reason) == (Outcome.RETRY, "connect_failed")
