"""deploy/k8s: every manifest parses, the kustomization names files that exist, and the
essentials hold: probes on /readyz and /healthz, non-root with a read-only root, limits, pinned
images, Secrets and ConfigMaps that exist, a PDB and an HPA that select the Tongxin pods, and
each pod reachable at its own URL (the one its redirects name) through its own Service."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import KNOWN_SERIES

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists."""
    objects = []
    for name in KUSTOMIZATION["resources"]:
        objects.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return objects


def one(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] in ("Deployment", "StatefulSet")]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def tongxin_container() -> dict[str, Any]:
    return one("StatefulSet", "tongxin")["spec"]["template"]["spec"]["containers"][0]


def test_every_yaml_file_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path} is empty"


def test_kustomization_lists_existing_files_and_every_manifest() -> None:
    listed = {K8S / name for name in KUSTOMIZATION["resources"]}
    generated = {
        K8S / spec.split("=", 1)[-1]
        for gen in KUSTOMIZATION["configMapGenerator"]
        for spec in gen["files"]
    }
    assert all(p.is_file() for p in listed | generated)
    on_disk = {p for p in K8S.rglob("*.yaml") if "extras" not in p.parts}
    assert on_disk - listed == {K8S / "kustomization.yaml"}, "a manifest left out of kustomize"


def test_the_required_kinds_are_present() -> None:
    kinds = {m["kind"] for m in manifests()}
    assert {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "StatefulSet",
        "PodDisruptionBudget", "HorizontalPodAutoscaler",
    } <= kinds  # fmt: skip


def test_tongxin_is_ready_on_readyz_and_alive_on_healthz() -> None:
    container = tongxin_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_tongxin_stops_gracefully() -> None:
    spec = one("StatefulSet", "tongxin")["spec"]["template"]["spec"]
    sleep = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # the process needs time after the preStop sleep to send WebSocket going-away frames
    assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + 20


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_workload_runs_non_root_with_a_read_only_root(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    for container in containers(workload):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]


def test_tongxin_writes_only_to_empty_dirs() -> None:
    pod = one("StatefulSet", "tongxin")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in tongxin_container()["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/var/lib/tongxin"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_containers_have_requests_and_memory_limits(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_images_are_pinned_by_tag(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        image = container["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{image} is not pinned by version"
    pinned = {i["name"]: i["newTag"] for i in KUSTOMIZATION["images"]}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned["tongxin"])


def test_referenced_secrets_and_config_maps_exist() -> None:
    secret = one("Secret", "tongxin-secrets")
    secret_keys = set(secret["stringData"])
    config_maps = {m["metadata"]["name"] for m in manifests() if m["kind"] == "ConfigMap"}
    config_maps |= {g["name"] for g in KUSTOMIZATION["configMapGenerator"]}
    for workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "tongxin-secrets" and ref["key"] in secret_keys
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    assert "TONGXIN_TOKEN_SECRET" in secret_keys and "TONGXIN_TURN_SECRET" in secret_keys


def test_secret_values_are_marked_placeholders() -> None:
    for key, value in one("Secret", "tongxin-secrets")["stringData"].items():
        assert "REPLACE" in value, f"{key} looks like a real secret; commit placeholders only"


def test_config_map_carries_the_udp_range_and_turn_urls() -> None:
    data = one("ConfigMap", "tongxin-config")["data"]
    low, high = int(data["TONGXIN_UDP_PORT_MIN"]), int(data["TONGXIN_UDP_PORT_MAX"])
    assert 1024 < low < high < 65536
    urls = data["TONGXIN_TURN_URLS"].split(",")
    assert urls and all(u.startswith(("turn:", "turns:")) for u in urls)


def pod_labels(name: str) -> dict[str, str]:
    return one("StatefulSet", name)["spec"]["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_pdb_and_hpa_target_the_tongxin_pods() -> None:
    labels = pod_labels("tongxin")
    assert selects(one("Service", "tongxin")["spec"]["selector"], labels)
    pdb = one("PodDisruptionBudget", "tongxin")
    assert pdb["apiVersion"] == "policy/v1"
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    hpa = one("HorizontalPodAutoscaler", "tongxin")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "tongxin",
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2


def test_hpa_scales_on_a_tongxin_metric() -> None:
    metrics = one("HorizontalPodAutoscaler", "tongxin")["spec"]["metrics"]
    pods_metrics = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert pods_metrics and all(name in KNOWN_SERIES for name in pods_metrics)
    adapter = yaml.safe_load((K8S / "extras" / "prometheus-adapter-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert set(pods_metrics) <= served, "prometheus-adapter must serve the HPA's metric"


def test_pdb_leaves_a_pod_serving() -> None:
    pdb = one("PodDisruptionBudget", "tongxin")["spec"]
    replicas = one("StatefulSet", "tongxin")["spec"]["replicas"]
    assert pdb.get("maxUnavailable", replicas) < replicas or pdb.get("minAvailable", 0) >= 1


def test_media_pods_share_no_node() -> None:
    # host network: two Tongxin pods on one node would fight over 8080 and the UDP range
    pod = one("StatefulSet", "tongxin")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and selects(t["labelSelector"]["matchLabels"], pod_labels("tongxin"))
        for t in terms
    )


def test_redis_persists_with_aof_on_a_volume() -> None:
    redis = one("StatefulSet", "redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = (K8S / "redis" / "redis.conf").read_text().split("\n")
    assert "appendonly yes" in conf
    assert "appendfsync always" in conf or "appendfsync everysec" in conf
    assert "maxmemory-policy noeviction" in conf
    container = redis["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/data" in mounts and "dir /data" in conf


def test_kustomize_builds_when_kubectl_is_installed() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the manifests are checked above)")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    namespaces = {d["metadata"].get("namespace") for d in built if d["kind"] != "Namespace"}
    assert namespaces == {"tongxin"}
    images = {c["image"] for d in built if d["kind"] in ("Deployment", "StatefulSet")
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert "registry.example.org/tongxin:0.1.0" in images


# --- each pod at its own address (redirects to the pod holding a room) ----------------------
POD_REFERENCE = re.compile(r"\$\((\w+)\)")


def pod_environment(pod_name: str) -> dict[str, str]:
    """The Tongxin container's environment as the kubelet builds it for `pod_name`: envFrom
    ConfigMaps first, then `env` in order, `$(VAR)` expanded from what is defined before."""
    container = tongxin_container()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = POD_REFERENCE.sub(lambda m: env.get(m[1], m[0]), var["value"])
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod_name
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath", "").startswith(
                "metadata.labels["):  # a node topology label copied onto the pod: a stand-in
            env[var["name"]] = "cn-northwest-1"
        elif var["name"] == "TONGXIN_REDIS_URL":  # Secrets hold placeholders: stand-ins
            env[var["name"]] = "redis://redis-0.redis:6379/0"
        else:
            env[var["name"]] = "stand-in-secret-of-at-least-32-bytes-for-the-check"
    return env


def ingress_paths(name: str) -> list[tuple[str, str]]:
    """(path, backend Service) of one Ingress."""
    rules = one("Ingress", name)["spec"]["rules"]
    return [(p["path"], p["backend"]["service"]["name"]) for r in rules
            for p in r["http"]["paths"]]


def max_replicas() -> int:
    return int(one("HorizontalPodAutoscaler", "tongxin")["spec"]["maxReplicas"])


@pytest.mark.parametrize("ordinal", [0, 1, 7])
def test_each_pod_redirects_to_its_own_url_and_links_keep_the_public_one(ordinal: int) -> None:
    from signaling.config import parse_serve_config

    env = pod_environment(f"tongxin-{ordinal}")
    config = parse_serve_config([], env)
    public = one("ConfigMap", "tongxin-config")["data"]["TONGXIN_PUBLIC_URL"]
    assert config.display_url == public  # join links: any pod
    assert config.placement_url == f"{public}/pods/tongxin-{ordinal}"  # redirects: this pod


def test_the_statefulset_names_a_headless_service_of_its_pods() -> None:
    statefulset = one("StatefulSet", "tongxin")["spec"]
    headless = one("Service", statefulset["serviceName"])["spec"]
    assert headless["clusterIP"] == "None"
    assert selects(headless["selector"], pod_labels("tongxin"))


@pytest.mark.parametrize("ordinal", range(8))
def test_every_possible_pod_has_a_service_and_an_ingress_path_of_its_own(ordinal: int) -> None:
    if ordinal >= max_replicas():
        pytest.skip("beyond the autoscaler's maximum")
    pod = f"tongxin-{ordinal}"
    selector = one("Service", pod)["spec"]["selector"]
    labels = {**pod_labels("tongxin"), "statefulset.kubernetes.io/pod-name": pod}
    assert selects(selector, labels)
    assert not selects(selector, {**labels, "statefulset.kubernetes.io/pod-name": "tongxin-9"})
    # ingress-nginx matches paths as case-insensitive prefixes and rewrites to /$2
    routes = [(path, backend) for path, backend in ingress_paths("tongxin-pods")
              if re.match(path, f"/pods/{pod}/ws", re.I)]
    assert [backend for _, backend in routes] == [pod]
    rewrite = one("Ingress", "tongxin-pods")["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/rewrite-target"]
    match = re.match(routes[0][0], f"/pods/{pod}/ws")
    assert match is not None
    assert rewrite.replace("$2", match[2]) == "/ws"


def test_there_are_as_many_pod_addresses_as_the_autoscaler_may_make() -> None:
    services = {m["metadata"]["name"] for m in manifests() if m["kind"] == "Service"}
    addresses = {s for s in services if re.fullmatch(r"tongxin-\d+", s)}
    assert addresses == {f"tongxin-{i}" for i in range(max_replicas())}
    assert len(ingress_paths("tongxin-pods")) == max_replicas()


def test_pod_urls_are_served_on_the_public_host() -> None:
    from urllib.parse import urlparse

    public = urlparse(one("ConfigMap", "tongxin-config")["data"]["TONGXIN_PUBLIC_URL"])
    for name in ("tongxin", "tongxin-pods"):
        spec = one("Ingress", name)["spec"]
        assert [r["host"] for r in spec["rules"]] == [public.hostname]
        assert public.hostname in spec["tls"][0]["hosts"]
