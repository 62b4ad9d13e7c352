"""deploy/k8s/extras/edge.yaml: edge pods never hold rooms, say their region, are reached at
their own URLs, and share no Kubernetes node with any Tongxin media pod; the base pods take
their region from the node's topology label."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from signaling.config import parse_serve_config

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
EDGE = [d for d in yaml.safe_load_all((K8S / "extras" / "edge.yaml").read_text()) if d]
CONFIG = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
BASE = yaml.safe_load((K8S / "statefulset.yaml").read_text())


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in EDGE if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}"
    return found[0]


def pod_environment(statefulset: dict[str, Any], pod: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it (stand-ins for Secrets)."""
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = dict(CONFIG)
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]),
                                      var["value"])
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = ""  # a label the pod may lack: empty
        elif var["name"] == "TONGXIN_REDIS_URL":
            env[var["name"]] = "redis://redis-0.redis:6379/0"
        else:
            env[var["name"]] = "stand-in-secret-of-at-least-32-bytes-for-the-check"
    return env


def test_edge_pods_never_hold_rooms_and_redirects_reach_each_of_them():
    edge = one("StatefulSet", "tongxin-edge")
    replicas = int(edge["spec"]["replicas"])
    public = CONFIG["TONGXIN_PUBLIC_URL"]
    for ordinal in range(replicas):
        pod = f"tongxin-edge-{ordinal}"
        config = parse_serve_config([], pod_environment(edge, pod))
        assert config.media_role == "edge"
        assert config.region == "REPLACE-edge-region"
        assert config.placement_url == f"{public}/pods/{pod}"
        selector = one("Service", pod)["spec"]["selector"]
        assert selector["statefulset.kubernetes.io/pod-name"] == pod
        paths = [p for p in one("Ingress", "tongxin-edge-pods")["spec"]["rules"][0]["http"]
                 ["paths"] if re.match(p["path"], f"/pods/{pod}/ws", re.I)]
        assert [p["backend"]["service"]["name"] for p in paths] == [pod]
        assert not re.match(r"/pods/tongxin-\d+(/|$)", f"/pods/{pod}/ws")


def test_edge_pods_share_no_node_with_any_media_pod_and_stay_in_their_region():
    spec = one("StatefulSet", "tongxin-edge")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    term = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    components = next(e["values"] for e in term["labelSelector"]["matchExpressions"]
                      if e["key"] == "app.kubernetes.io/component")
    assert set(components) == {"node", "edge"}
    assert spec["nodeSelector"]["topology.kubernetes.io/region"] == "REPLACE-edge-region"


def test_base_pods_hold_and_serve_rooms_and_read_their_region_from_the_node_label():
    env = pod_environment(BASE, "tongxin-0")
    config = parse_serve_config([], env)
    assert config.media_role == "any" and config.span_after == 100
    region = next(v for v in BASE["spec"]["template"]["spec"]["containers"][0]["env"]
                  if v["name"] == "TONGXIN_REGION")
    assert region["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['topology.kubernetes.io/region']")
    assert config.region is None  # no label on the pod: no region, nothing breaks
