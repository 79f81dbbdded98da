"""deploy/kubernetes: each Truss's manifests against the Kubernetes schemas and the
invariants that tie them to the Truss (resources, probes, image placeholder,
graceful shutdown, autoscaling on the metrics tts_common serves). No cluster is
involved: nothing here applies them."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

DEPLOY = REPO / "deploy" / "kubernetes"
TRUSSES = [
    "piper-streaming",
    "xtts-streaming",
    "parler-batch",
    "piper-realtime",
    "xtts-realtime",
    "piper-openai",
    "xtts-openai",
]
REALTIME = {"piper-realtime", "xtts-realtime"}
OPENAI = {"piper-openai", "xtts-openai"}  # docker_server Trusses: OpenAI's speech API (docs/openai.md)
CLIENT_LABEL = {"tts-stack/client": "true"}  # the label contract: pods that may call a model
READY_PATH = "/v1/models/model"
PORT = 8080  # truss's server in the image
# The Kubernetes versions checked: an older one still in wide use, and the schemas' newest.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
# config.yaml's accelerator, as NVIDIA GPU feature discovery names the product.
GPU_PRODUCTS = {"T4": "Tesla-T4", "A10G": "NVIDIA-A10G"}
TRUSS_METRICS = {"tts_streams_in_flight", "tts_streams_waiting"}


def manifests(name: str) -> dict[str, dict[str, Any]]:
    """The resources kustomization.yaml lists, by kind."""
    kustomization = yaml.safe_load((DEPLOY / name / "kustomization.yaml").read_text())
    docs = [yaml.safe_load((DEPLOY / name / f).read_text()) for f in kustomization["resources"]]
    return {doc["kind"]: doc for doc in docs}


def truss_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / name / "config.yaml").read_text())
    return config


def container(name: str) -> dict[str, Any]:
    (only,) = manifests(name)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_every_truss_has_manifests_and_every_file_is_applied():
    assert sorted(p.name for p in DEPLOY.iterdir() if p.is_dir()) == sorted([*TRUSSES, "agent"])
    for name in TRUSSES:
        listed = yaml.safe_load((DEPLOY / name / "kustomization.yaml").read_text())["resources"]
        on_disk = sorted(p.name for p in (DEPLOY / name).glob("*.yaml") if p.name != "kustomization.yaml")
        assert sorted(listed) == on_disk
        assert set(manifests(name)) == {
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Ingress",
            "NetworkPolicy",
        }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", TRUSSES)
def test_manifests_pass_the_kubernetes_schemas(name, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")  # requirements-dev.txt
    for doc in manifests(name).values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = copy.deepcopy(manifests("piper-streaming")["Deployment"])
    probe = doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", TRUSSES)
def test_resource_requests_equal_the_truss_config(name):
    resources = truss_config(name)["resources"]
    want = {"cpu": str(resources["cpu"]), "memory": str(resources["memory"])}
    if resources.get("use_gpu"):
        want["nvidia.com/gpu"] = "1"
    got = container(name)["resources"]
    assert {k: str(v) for k, v in got["requests"].items()} == want
    # Memory and GPU are limited to what is requested; CPU is not, so a pod may burst.
    assert {k: str(v) for k, v in got["limits"].items()} == {k: v for k, v in want.items() if k != "cpu"}
    pod = manifests(name)["Deployment"]["spec"]["template"]["spec"]
    if resources.get("use_gpu"):
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": GPU_PRODUCTS[resources["accelerator"]]}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nodeSelector" not in pod


@pytest.mark.parametrize("name", TRUSSES)
def test_probes_port_and_service(name):
    spec = container(name)
    (port,) = spec["ports"]
    assert port == {"name": "http", "containerPort": PORT}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert spec[probe]["httpGet"] == {"path": READY_PATH, "port": "http"}, probe
    # Liveness restarts only after config.yaml's restart threshold (or 120 s) unhealthy.
    liveness = spec["livenessProbe"]
    threshold = truss_config(name)["runtime"].get("health_checks", {}).get("restart_threshold_seconds", 120)
    assert liveness["periodSeconds"] * liveness["failureThreshold"] == threshold
    docs = manifests(name)
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert docs["Service"]["spec"]["selector"] == selector
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(PORT) and annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", TRUSSES)
def test_image_placeholder_is_set_by_the_kustomization(name):
    (image,) = yaml.safe_load((DEPLOY / name / "kustomization.yaml").read_text())["images"]
    assert container(name)["image"] == image["name"] == f"tts-{name}"
    assert image["newName"].endswith(f"/{name}")
    assert f"truss image build {name}" in (DEPLOY / name / "kustomization.yaml").read_text()


@pytest.mark.parametrize("name", TRUSSES)
def test_graceful_shutdown_outlasts_the_prestop(name):
    pod = manifests(name)["Deployment"]["spec"]["template"]["spec"]
    command = container(name)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The rest of the grace period is for streams in flight: minutes, not seconds.
    assert pod["terminationGracePeriodSeconds"] - int(command[1]) >= 240


@pytest.mark.parametrize("name", TRUSSES)
def test_environment_equals_the_truss_config(name):
    """Baseten sets config.yaml's environment_variables on the container; the image
    `truss image build` makes does not hold them, so the Deployment must."""
    values = {e["name"]: e["value"] for e in container(name)["env"] if "value" in e}
    values.pop("XTTS_MODEL_DIR", None)
    values.pop("PARLER_MODEL_DIR", None)
    want = {k: str(v) for k, v in truss_config(name)["environment_variables"].items()}
    assert values == want


@pytest.mark.parametrize("name", TRUSSES)
def test_api_key_comes_from_an_optional_secret(name):
    env = {e["name"]: e for e in container(name)["env"]}
    ref = env["TRUSS_SECRET_tts_api_key"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True  # no Secret: no key checked, as with the secret unset
    assert "tts_api_key" in truss_config(name)["secrets"]


@pytest.mark.parametrize("name", TRUSSES)
def test_autoscaling_targets_the_deployment_on_cpu_or_truss_metrics(name):
    docs = manifests(name)
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    if truss_config(name)["resources"].get("use_gpu"):
        assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in TRUSS_METRICS
    else:
        assert metric["resource"]["name"] == "cpu"
    # The adapter rules serve every metric an HPA (or its commented alternative) names.
    adapter = (DEPLOY / "prometheus-adapter-values.yaml").read_text()
    (rule,) = yaml.safe_load(adapter)["rules"]["custom"]
    served = re.search(r'__name__=~"([^"]+)"', rule["seriesQuery"])
    assert served is not None
    named = set(re.findall(r"\btts_[a-z_]+", (DEPLOY / name / "hpa.yaml").read_text()))
    assert named <= TRUSS_METRICS
    assert all(re.fullmatch(served.group(1), m) for m in named)


def test_kubernetes_section_in_the_operations_guide_names_every_truss():
    readme = (REPO / "docs" / "operations.md").read_text()
    section = readme.split("## Self-hosting (Kubernetes)", 1)[1].split("\n## ", 1)[0]
    for name in TRUSSES:
        assert f"kubectl apply -k deploy/kubernetes/{name}" in section
        assert f"truss image build {name}" in section
    assert Path(DEPLOY / "prometheus-adapter-values.yaml").exists()


@pytest.mark.parametrize("name", sorted(set(TRUSSES) - REALTIME))
def test_the_ingress_bounds_bodies_as_the_truss_does_and_routes_predict_only(name):
    """truss reads a whole body before the API key is checked: the ingress's limit is
    what bounds an unauthenticated upload, so it must not exceed the Truss's own."""
    from tts_common.settings import ServingSettings

    serving = ServingSettings.load({}, truss_config(name).get("environment_variables", {}))
    ingress = manifests(name)["Ingress"]
    notes = ingress["metadata"]["annotations"]
    limit = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert re.fullmatch(r"\d+m", limit) and int(limit[:-1]) * 2**20 == serving.max_body_bytes
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # audio streams as made
    if name in OPENAI:  # the OpenAI SDK's routes under https://<host>/v1
        assert routes(name) == ["/v1/audio/speech", "/v1/audio/voices", "/v1/models"]
    else:
        assert routes(name) == ["/v1/models/model:predict"]


@pytest.mark.parametrize("name", sorted(REALTIME))
def test_the_websocket_ingress_outlasts_a_session_and_takes_no_uploads(name):
    from tts_common.settings import RealtimeSettings

    realtime = RealtimeSettings.load({}, truss_config(name).get("environment_variables", {}))
    notes = manifests(name)["Ingress"]["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        # nginx's default 60 s would cut a parked agent socket between turns
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 60 * realtime.idle_timeout_s
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"  # a handshake has no body
    assert routes(name) == ["/v1/websocket"]


def routes(name: str) -> list[str]:
    """The Ingress's paths, each to this Truss's Service."""
    (rule,) = manifests(name)["Ingress"]["spec"]["rules"]
    paths = rule["http"]["paths"]
    service = manifests(name)["Service"]["metadata"]["name"]
    assert all(p["backend"]["service"] == {"name": service, "port": {"name": "http"}} for p in paths)
    return [p["path"] for p in paths]


@pytest.mark.parametrize("name", TRUSSES)
def test_only_agents_the_ingress_and_prometheus_reach_the_model(name):
    policy = manifests(name)["NetworkPolicy"]["spec"]
    selector = manifests(name)["Deployment"]["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == selector and policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    assert {"namespaceSelector": {}, "podSelector": {"matchLabels": CLIENT_LABEL}} in peers
    namespaces = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers[1:]}
    assert namespaces == {"ingress-nginx", "monitoring"}
    assert all(p.get("podSelector") or p["namespaceSelector"] for p in peers)  # no open peer


def agent_workers() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "agent" / "kustomization.yaml").read_text())
    return [yaml.safe_load((DEPLOY / "agent" / f).read_text()) for f in kustomization["resources"]]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_agent_workers_pass_the_kubernetes_schemas(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in agent_workers():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_agent_workers_call_a_realtime_truss_by_its_service_and_carry_the_label():
    plugins = set()
    for worker in agent_workers():
        pod = worker["spec"]["template"]
        assert pod["metadata"]["labels"].items() >= CLIENT_LABEL.items()  # admitted by the NetworkPolicy
        (agent,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in agent["env"]}
        url = env["CUSTOM_TTS_URL"]["value"]
        host = re.fullmatch(r"ws://([a-z-]+)\.tts\.svc\.cluster\.local(/v1/websocket)?", url)
        assert host and host.group(1) in REALTIME, url
        assert manifests(host.group(1))["Service"]["spec"]["ports"][0]["port"] == 80
        assert agent["envFrom"] == [{"secretRef": {"name": "livekit"}}]  # LiveKit's credentials
        assert env["BASETEN_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tts-api-key"
        plugin = env.get("TTS_PLUGIN", {}).get("value", "custom_tts")
        plugins.add(plugin)
        if plugin == "custom_tts":  # plain ws:// with a key: allowed explicitly
            assert env["CUSTOM_TTS_ALLOW_INSECURE"]["value"] == "1"
    assert plugins == {"custom_tts", "baseten"}
    dockerfile = (REPO / "livekit_plugin" / "examples" / "Dockerfile").read_text()
    assert "docker build -f livekit_plugin/examples/Dockerfile" in dockerfile
    assert "livekit-plugins-baseten==1.8.9 livekit-plugins-openai==1.8.9" in dockerfile
