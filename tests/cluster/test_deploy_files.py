"""The deployment files agree with the code and with each other: nginx template
(checked by the real ``nginx -t`` after rendering), docker-compose and Kubernetes
manifests (every PUSHGATE_* variable is a setting with a valid value, ports and names
line up, probes hit real endpoints, timeouts are above the keepalive settings)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from deploy.local.nginx import TEMPLATE, PrivateNginx, RenderError, nginx_binary, render, tags
from pushgate.hub.node import wheel_period
from pushgate.models import MAX_ACK_TIMEOUT_MS
from pushgate.router.directory.engines import parse as parse_directory_url
from pushgate.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DEFAULTS = Settings.model_validate({"data_dir": "/nonexistent"})


# -- helpers ---------------------------------------------------------------------------------


def settings_from_env(env: dict[str, Any]) -> Settings:
    """Validate PUSHGATE_* variables as the process would (names and values)."""
    values = {}
    for key, value in env.items():
        assert key.startswith("PUSHGATE_"), key
        name = key.removeprefix("PUSHGATE_").lower()
        assert name in Settings.model_fields, f"{key} is not a setting"
        values[name] = str(value)
    return Settings.model_validate(values)


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value.strip())
    assert m, value
    return int(m[1]) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m[2]]


def directives(conf: str) -> list[tuple[str, list[str]]]:
    """``(name, args)`` of every simple directive (comments stripped; blocks ignored)."""
    text = re.sub(r"#[^\n]*", "", conf)
    return [(m[1], (m[2] or "").split())
            for m in re.finditer(r"(?m)^\s*([a-z_]+)(?:\s+([^;{}]*))?;", text)]


def block(conf: str, header: str) -> str:
    start = conf.index(header + " {")
    depth, i = 0, start
    while True:
        if conf[i] == "{":
            depth += 1
        elif conf[i] == "}":
            depth -= 1
            if depth == 0:
                return conf[start:i + 1]
        i += 1


def one(conf: str, name: str) -> list[str]:
    found = [args for n, args in directives(conf) if n == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def app_paths() -> set[str]:
    from pushgate.hub.app import create_app

    app = create_app(DEFAULTS)
    return {getattr(r, "path", "") for r in app.routes}


# -- nginx template --------------------------------------------------------------------------


def test_render_replaces_tagged_lines_only() -> None:
    template = ("user nginx;  #@user\n"
                "upstream u {\n"
                "    server a:80 max_fails=1;  #@hub\n"
                "    server b:80 max_fails=1;  #@hub\n"
                "}\n"
                "listen 80 backlog=10;  #@listen\n"
                "gzip off;\n")
    out = render(template, {"user": None, "hub": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
                            "listen": "127.0.0.1:9"})
    assert out == ("upstream u {\n"
                   "    server 127.0.0.1:1 max_fails=1;\n"
                   "    server 127.0.0.1:2 max_fails=1;\n"
                   "    server 127.0.0.1:3 max_fails=1;\n"
                   "}\n"
                   "listen 127.0.0.1:9;\n"
                   "gzip off;\n")
    assert tags(template) == {"user": ["nginx"], "hub": ["a:80 max_fails=1", "b:80 max_fails=1"],
                              "listen": ["80 backlog=10"]}
    with pytest.raises(RenderError, match="#@nope"):
        render(template, {"nope": "x"})
    with pytest.raises(RenderError, match="empty list"):
        render(template, {"hub": []})


def test_rendered_template_passes_nginx_t(cluster_binaries: None, tmp_path: Path) -> None:
    """What the launcher runs is the template with addresses and paths replaced, and the
    real nginx accepts it; nothing else differs from the file compose mounts."""
    nginx = PrivateNginx(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"], port=8080)  # not started
    nginx.write_conf()
    proc = subprocess.run(nginx.command("-t"), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    rendered = nginx.conf_path.read_text()
    template = TEMPLATE.read_text()
    untagged = [line for line in template.splitlines() if "#@" not in line]
    assert [line for line in rendered.splitlines() if line in untagged] == untagged
    assert nginx_binary()


def test_nginx_directives_keep_websockets_open_and_spread_without_stickiness() -> None:
    conf = TEMPLATE.read_text()
    upstream = block(conf, "upstream pushgate_hubs")
    names = [n for n, _ in directives(upstream)]
    assert "least_conn" in names
    assert not {"ip_hash", "hash", "sticky"} & set(names), "no sticky sessions"
    servers = [args for n, args in directives(upstream) if n == "server"]
    assert len(servers) >= 2
    for args in servers:  # a dead hub is taken out of rotation
        assert any(a.startswith("max_fails=") for a in args), args
        assert any(a.startswith("fail_timeout=") for a in args), args
    assert "error" in one(conf, "proxy_next_upstream")
    assert "non_idempotent" not in one(conf, "proxy_next_upstream")

    # a healthy websocket carries the hub's ping at least this often: never cut by nginx
    pings = DEFAULTS.ping_interval_s + wheel_period(DEFAULTS)
    reads = [seconds(args[0]) for n, args in directives(conf) if n == "proxy_read_timeout"]
    assert min(reads) > pings and seconds(one(conf, "proxy_send_timeout")[0]) > pings
    # but a hub that stops answering holds a request for a minute or so, not five
    assert max(reads) <= 90
    # a send with ack waits up to MAX_ACK_TIMEOUT_MS for its ack: not cut by nginx
    send = block(conf, "location = /v1/notifications")
    assert seconds(one(send, "proxy_read_timeout")[0]) > MAX_ACK_TIMEOUT_MS / 1000
    assert one(conf, "proxy_buffering") == ["off"]
    assert one(conf, "proxy_http_version") == ["1.1"]
    headers = {args[0]: args[1] for n, args in directives(conf) if n == "proxy_set_header"}
    assert headers["Upgrade"] == "$pushgate_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert "map $http_upgrade $connection_upgrade" in conf
    assert "map $http_upgrade $pushgate_upgrade" in conf
    assert headers["X-Forwarded-For"] == "$remote_addr"  # edge: overwrite, not append

    zone = one(conf, "limit_conn_zone")
    assert zone[0] == "$binary_remote_addr"
    assert one(conf, "limit_conn")[0] == zone[1].split("=")[1].split(":")[0]
    assert int(one(conf, "worker_rlimit_nofile")[0]) > int(one(conf, "worker_connections")[0])
    assert one(conf, "client_max_body_size") == [f"{DEFAULTS.max_request_bytes // 1048576}m"]


# -- docker-compose ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    service = compose["services"][name]
    env = {}
    for env_file in service.get("env_file", []):
        example = COMPOSE.parent / f"{env_file}.example"
        assert example.exists(), f"{name}: {env_file} has no {example.name} to copy"
        for line in example.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, value = line.split("=", 1)
                env[key] = value
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def by_command(compose: dict[str, Any], command: str) -> list[str]:
    return sorted(n for n, s in compose["services"].items() if s.get("command") == [command])


def test_compose_has_the_whole_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert by_command(compose, "serve") == ["hub1", "hub2"]
    assert by_command(compose, "router") == ["router1", "router2"]
    assert by_command(compose, "migrate") == ["migrate"]
    assert {"nginx", "redis", "mariadb"} <= set(services)
    for name in ("router1", "router2"):
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    build = services["hub1"]["build"]
    dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile.exists()
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["pushgate"]' in text
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE")
               for p in line.split()[1:]}
    assert {8080, 7700, 7701, 7702} <= exposed  # hub; router gRPC, metrics, HubLink
    for line in text.splitlines():  # what the image is built from exists
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (dockerfile.parent / src).exists(), line


def test_compose_settings_exist_and_line_up(compose: dict[str, Any]) -> None:
    services = compose["services"]
    hubs, routers = by_command(compose, "serve"), by_command(compose, "router")
    router_listen = {}
    for name in routers:
        s = settings_from_env(compose_env(compose, name))
        router_listen[name] = s.router_listen
        assert s.router_metrics_listen and s.router_metrics_listen.endswith(":7701")
        store = make_url(s.store_url or "")
        maria = services["mariadb"]["environment"]
        assert (store.host, store.username, store.password, store.database) == \
            ("mariadb", maria["MARIADB_USER"], maria["MARIADB_PASSWORD"],
             maria["MARIADB_DATABASE"])
        assert urlsplit(s.directory_url).hostname == "redis"
    settings_from_env(compose_env(compose, "migrate"))

    nginx = services["nginx"]
    nginx_ip = nginx["networks"]["pushgate"]["ipv4_address"]
    subnet = compose["networks"]["pushgate"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)
    mount = next(v for v in nginx["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    assert (COMPOSE.parent / mount.split(":")[0]).resolve() == TEMPLATE

    upstreams = set()
    for name in hubs:
        s = settings_from_env(compose_env(compose, name))
        assert s.routers == [f"{r}:{router_listen[r].rsplit(':', 1)[1]}" for r in routers]
        assert nginx_ip in s.trusted_proxies
        upstreams.add(f"{name}:{s.port}")
        health = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{s.port}/readyz" in health
        grace = seconds(services[name]["stop_grace_period"])
        # the session drain, then the HTTP drain (each up to shutdown_grace_s), then the
        # shutdown's own work (measured: a hub with both drains full exits at ~20.3 s)
        assert grace >= 2 * s.shutdown_grace_s + 5, grace
        assert min(seconds(args[0]) for n, args in directives(TEMPLATE.read_text())
                   if n == "proxy_read_timeout") > s.ping_interval_s + wheel_period(s)
    for tag in ("hub", "send_hub"):  # both upstream blocks list every hub
        assert {args.split()[0] for args in tags(TEMPLATE.read_text())[tag]} == upstreams
    assert "/readyz" in app_paths()


def test_compose_commands_exist(compose: dict[str, Any]) -> None:
    from pushgate.cli import app

    commands = {s["command"][0] for s in compose["services"].values()
                if s.get("image") == "pushgate:dev"}
    assert commands == {"serve", "router", "migrate"}
    assert commands <= set(app.commands)


# -- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} twice"
            objects[key] = doc
    return objects


def pod_env(k8s: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    secret = k8s[("Secret", "pushgate-secrets")]["stringData"]
    for source in container.get("envFrom", []):
        env.update(k8s[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for item in container.get("env", []):
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "pushgate-secrets"
        env[item["name"]] = secret[ref["key"]]  # KeyError: the Secret lacks the key
    return env


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_k8s_manifests_are_valid_kubernetes_objects(version: str) -> None:
    """Every object of deploy/k8s against the Kubernetes OpenAPI schemas bundled by
    kubernetes-validate (strict: an unknown or misspelt field is an error)."""
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: "
                            f"{e.message} at {'.'.join(map(str, e.path))}")


def test_k8s_node_tuning_sets_the_plans_kernel_settings(
        k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The sysctls docs/deploy.md's 1M-session plan asks for, as the DaemonSet writes them."""
    pod = k8s[("DaemonSet", "pushgate-node-tuning")]["spec"]["template"]["spec"]
    script = pod["initContainers"][0]["command"][-1]
    values = dict(line.split(" ", 2)[2].split("=", 1) for line in script.splitlines()
                  if line.strip().startswith("sysctl -w"))
    assert int(values["net.core.somaxconn"]) >= 4096  # the hub's listen backlog
    assert int(values["net.netfilter.nf_conntrack_max"]) >= 2 * 1_000_000
    low, high = map(int, values["net.ipv4.ip_local_port_range"].strip('"').split())
    assert high - low >= 60000
    assert int(values["fs.nr_open"]) >= 1_048_576
    hub = k8s[("Deployment", "pushgate-hub")]["spec"]
    assert hub["replicas"] * 40_000 >= 1_000_000
    memory = hub["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert memory.endswith("Mi") and int(memory[:-2]) * 1024 >= 48_000 * 6.7 * 2 + 100 * 1024  # 2x: queued frames


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_hub(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = k8s[("Deployment", "pushgate-hub")]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["serve"]
    s = settings_from_env(pod_env(k8s, container))
    assert s.store_url is None  # cluster hubs have no store
    http = port_number(container, "http")
    assert http == s.port
    paths = app_paths()
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/readyz", "/healthz")
    assert {ready["path"], live["path"]} <= paths
    assert port_number(container, ready["port"]) == port_number(container, live["port"]) == http

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(pre_stop[1]) + 2 * s.shutdown_grace_s

    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = k8s[("PodDisruptionBudget", "pushgate-hub")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]
    service = k8s[("Service", "pushgate-hub")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert port_number(container, service["spec"]["ports"][0]["targetPort"]) == http

    statefulset = k8s[("StatefulSet", "pushgate-router")]
    headless = k8s[("Service", statefulset["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    router = statefulset["spec"]["template"]["spec"]["containers"][0]
    router_port = port_number(router, "grpc")
    expected = [f"{statefulset['metadata']['name']}-{i}.{headless['metadata']['name']}:{router_port}"
                for i in range(statefulset["spec"]["replicas"])]
    assert s.routers == expected  # a HubLink to every router


def test_k8s_router(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    statefulset = k8s[("StatefulSet", "pushgate-router")]
    pod = statefulset["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["router"]
    s = settings_from_env(pod_env(k8s, container))
    grpc = port_number(container, "grpc")
    assert s.router_listen == f"0.0.0.0:{grpc}"
    assert s.router_metrics_listen == f"0.0.0.0:{port_number(container, 'metrics')}"
    link = port_number(container, "link")  # HubLink's framed transport, named by the Service
    assert s.router_link_address() == f"0.0.0.0:{link}"
    headless = k8s[("Service", statefulset["spec"]["serviceName"])]
    assert {p["targetPort"] for p in headless["spec"]["ports"]} >= {"grpc", "link"}
    assert s.store_url and make_url(s.store_url).drivername == "mysql+asyncmy"
    assert parse_directory_url(s.directory_url).mode == "cluster"  # the 1M plan's engine
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]
        target = check.get("tcpSocket") or check.get("grpc")
        assert target is not None, probe
        assert port_number(container, target["port"]) == grpc
    assert pod["spec"]["terminationGracePeriodSeconds"] > s.shutdown_grace_s
    labels = pod["metadata"]["labels"]
    for kind, name in (("Service", "pushgate-router"), ("Service", "pushgate-router-api")):
        service = k8s[(kind, name)]
        assert service["spec"]["selector"].items() <= labels.items()
        assert port_number(container, service["spec"]["ports"][0]["targetPort"]) == grpc
    pdb = k8s[("PodDisruptionBudget", "pushgate-router")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    job = k8s[("Job", "pushgate-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]
    assert settings_from_env(pod_env(k8s, job)).store_url == s.store_url


def test_k8s_ingress(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    ingress = k8s[("Ingress", "pushgate")]
    notes = ingress["metadata"]["annotations"]
    hub_env = k8s[("ConfigMap", "pushgate-hub")]["data"]
    hub = settings_from_env(hub_env)
    # above the hubs' pings and a send's longest ack wait, not minutes for a stalled hub
    least = max(hub.ping_interval_s + wheel_period(hub), MAX_ACK_TIMEOUT_MS / 1000)
    prefix = "nginx.ingress.kubernetes.io/"
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert least < float(notes[prefix + name]) <= 90
    assert notes[prefix + "proxy-buffering"] == "off"
    assert int(notes[prefix + "limit-connections"]) > 0
    assert not {prefix + "affinity", prefix + "upstream-hash-by"} & set(notes), "no stickiness"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = k8s[("Service", backend["name"])]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
