"""deploy/monitoring: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``); after real traffic through a cluster (hub, router with its
bridge worker on the APNs/FCM fakes) every metric that the rules, the Grafana
dashboard and docs/operations.md name is one the processes export, and every metric
they export is documented."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import services
from tests.bridge.conftest import TOPIC, Fakes, fakes  # noqa: F401 - the fixture
from tests.cluster.conftest import direct_cluster, started_from_a_thread
from tests.support.api import api
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "pushgate-alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
DOCS = [ROOT / "docs" / "operations.md", ROOT / "docs" / "offline-push.md"]
METRIC = re.compile(r"\bpushgate_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    return services.require("alert rule tests", services.provision_promtool)


def test_promtool_check_rules(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_promtool_rule_unit_tests(promtool: str) -> None:
    out = subprocess.run([promtool, "test", "rules", "pushgate-alerts.test.yml"],
                         capture_output=True, text=True, timeout=60, cwd=MONITORING)
    assert out.returncode == 0, out.stdout + out.stderr


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    def targets(panels: list[dict[str, Any]]) -> list[str]:
        out: list[str] = []
        for p in panels:
            out += [t["expr"] for t in p.get("targets", [])]
            out += targets(p.get("panels", []))
        return out

    return targets(json.loads(DASHBOARD.read_text())["panels"])


def test_every_alert_has_a_runbook_line() -> None:
    ops = (ROOT / "docs" / "operations.md").read_text()
    for rule in _rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
        assert re.search(rf"^#### {name}$", ops, re.M), f"no runbook section for {name}"


def _exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return {n for n in names if n.startswith("pushgate_")}


async def test_rules_and_dashboard_name_only_exported_metrics(
        tmp_path: Path, shared: dict[str, Any], fakes: Fakes) -> None:  # noqa: F811
    router_env = {"PUSHGATE_PUSH_ENABLED": "true", **fakes.settings_env()}
    async with started_from_a_thread(
            direct_cluster(tmp_path, shared, hubs=1, router_env=router_env)) as c:
        hub = c.hub(0)
        async with api(hub) as http:
            r = await http.put("/v1/users/away/devices",
                               json={"platform": "apns", "token": "ab" * 32, "app": TOPIC})
            assert r.status_code == 200, r.text
            async with ws_client(hub, "here") as here:
                r = await http.post("/v1/notifications", json={
                    "users": ["here", "away"], "body": {"n": 1}, "push": {"title": "hi"}})
                assert r.status_code == 200, r.text
                event = await here.recv_type("event")
                await here.send({"type": "ack", "seq": event["seq"]})
                r = await http.post("/v1/notifications", json={"users": ["x"], "ttl": -1})
                assert r.status_code == 400
        router_metrics = c.router_metrics_urls[0]
        assert router_metrics is not None
        async with httpx.AsyncClient(timeout=10) as http:
            async def router_text() -> str:
                return (await http.get(router_metrics)).text

            await wait_for(router_text, 20, "the push accepted",
                           until=lambda t: 'pushgate_push_sent_total{provider="apns"} 1.0' in t)
            text = await router_text() + (await http.get(f"{hub.base_url}/metrics")).text
    exported = _exported(text)
    assert {"pushgate_acks_total", "pushgate_router_links", "pushgate_linked_hubs",
            "pushgate_push_queue", "pushgate_push_sent_total",
            "pushgate_delivery_latency_seconds_bucket"} <= exported

    for where, exprs in (("alert rules", [r["expr"] for r in _rules()]),
                         ("Grafana dashboard", _dashboard_exprs())):
        named = {m for e in exprs for m in METRIC.findall(e)}
        assert named, where
        assert named <= exported, f"{where} name unknown metrics: {sorted(named - exported)}"
    docs = "\n".join(p.read_text() for p in DOCS)
    undocumented = {n for n in _families(text) if f"`{n}`" not in docs}
    assert not undocumented, f"exported but not in {[p.name for p in DOCS]}: {sorted(undocumented)}"


def _families(text: str) -> set[str]:
    """The metrics as the docs name them: counters with ``_total``, no ``_created``."""
    return {f.name + ("_total" if f.type == "counter" else "")
            for f in text_string_to_metric_families(text)
            if f.name.startswith("pushgate_") and not f.name.endswith("_created")}
