"""deploy/compose.yaml: two Tongxin nodes on one Redis with AOF, coturn sharing the nodes' TURN
secret, Prometheus scraping both nodes, Grafana; pinned images, files that exist, secrets that
come from deploy/.env (listed in .env.example) and never from the file itself."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]*\}")


def tongxin_nodes() -> dict[str, Any]:
    return {name: s for name, s in SERVICES.items() if s.get("image", "").startswith("tongxin:")}


def test_two_tongxin_nodes_share_one_redis() -> None:
    nodes = tongxin_nodes()
    assert sorted(nodes) == ["tongxin-a", "tongxin-b"]
    urls = {node["environment"]["TONGXIN_REDIS_URL"] for node in nodes.values()}
    assert len(urls) == 1
    url = urlparse(REQUIRED_VARIABLE.sub("password", urls.pop()))
    assert url.scheme == "redis" and url.hostname == "redis" and url.port == 6379
    for node in nodes.values():
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_keeps_waiting_consults_across_a_restart() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in command
    assert re.search(r"--appendfsync (always|everysec)", command)
    assert "--maxmemory-policy noeviction" in command
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])
    assert "redis-data" in COMPOSE["volumes"]


def test_nodes_and_coturn_share_the_turn_secret() -> None:
    node_secret = {n["environment"]["TONGXIN_TURN_SECRET"] for n in tongxin_nodes().values()}
    assert len(node_secret) == 1
    (variable,) = REQUIRED_VARIABLE.findall(node_secret.pop())
    assert variable == "TONGXIN_TURN_SECRET"
    coturn_args = SERVICES["coturn"]["command"]
    secret_args = [a for a in coturn_args if a.startswith("--static-auth-secret=")]
    assert len(secret_args) == 1 and REQUIRED_VARIABLE.findall(secret_args[0]) == [variable]


def test_secrets_come_from_the_env_file() -> None:
    required = set(REQUIRED_VARIABLE.findall(COMPOSE_TEXT))
    assert {"TONGXIN_TOKEN_SECRET", "TONGXIN_TURN_SECRET", "REDIS_PASSWORD"} <= required
    example = (DEPLOY / ".env.example").read_text()
    listed = {line.split("=", 1)[0] for line in example.splitlines() if re.match(r"^\w+=", line)}
    assert required <= listed, f"missing from .env.example: {sorted(required - listed)}"


def test_each_node_publishes_its_own_udp_range_one_to_one() -> None:
    ranges = []
    for name, node in tongxin_nodes().items():
        env = node["environment"]
        low, high = int(env["TONGXIN_UDP_PORT_MIN"]), int(env["TONGXIN_UDP_PORT_MAX"])
        assert f"{low}-{high}:{low}-{high}/udp" in node["ports"], name
        ranges.append(range(low, high + 1))
    assert not set(ranges[0]) & set(ranges[1]), "the nodes' UDP ranges overlap"


def test_nodes_sit_on_the_subnet_coturn_may_relay_to() -> None:
    subnet = ipaddress.ip_network(COMPOSE["networks"]["tongxin"]["ipam"]["config"][0]["subnet"])
    conf = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    allowed = re.findall(r"^allowed-peer-ip=(\S+)-(\S+)$", conf, re.M)
    assert allowed == [(str(subnet[0]), str(subnet[-1]))]
    for name, node in tongxin_nodes().items():
        address = ipaddress.ip_address(node["networks"]["tongxin"]["ipv4_address"])
        assert address in subnet, name


def test_prometheus_scrapes_every_node_with_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "tongxin")
    targets = {t.split(":")[0] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == set(tongxin_nodes())
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_bind_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_images_are_pinned_by_version() -> None:
    for name, service in SERVICES.items():
        tag = service["image"].rsplit(":", 1)[-1]
        assert ":" in service["image"] and re.search(r"\d", tag) and tag != "latest", name


def test_nodes_run_read_only_without_capabilities_and_check_readiness() -> None:
    for name, node in tongxin_nodes().items():
        assert node["read_only"] is True and node["cap_drop"] == ["ALL"], name
        assert "/readyz" in " ".join(node["healthcheck"]["test"]), name
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"


def test_each_node_has_its_own_address_behind_the_proxy() -> None:
    """A redirect names the node holding the room (TONGXIN_NODE_URL): each node its own,
    under the shared public URL, and the proxy sends /pods/<node>/ to that node alone."""
    nginx = (DEPLOY / "nginx" / "tongxin.conf").read_text()
    urls = set()
    for name, node in tongxin_nodes().items():
        env = node["environment"]
        url = env["TONGXIN_NODE_URL"]
        public = env["TONGXIN_PUBLIC_URL"]
        assert url == f"{public}/pods/{name}", name
        urls.add(url)
        location = re.search(rf"location /pods/{name}/ \{{(.*?)\}}", nginx, re.S)
        assert location is not None, f"nginx does not route /pods/{name}/"
        assert f"proxy_pass http://{name}:8080/;" in location[1]
        assert "proxy_set_header Upgrade $http_upgrade;" in location[1]
    assert len(urls) == len(tongxin_nodes())
