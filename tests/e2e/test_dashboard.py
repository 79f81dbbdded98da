"""deploy/grafana/tts-dashboard.json against what the Trusses really export: every
PromQL expression's tts_* metric, and every label it groups or filters by, is in a
served Truss's /metrics after real traffic over HTTP and the WebSocket, so the
dashboard cannot drift from the code. The pods' CPU and memory come from cAdvisor."""

from __future__ import annotations

import json
import re

import pytest
import requests
import yaml
from conftest import REPO
from metrics_scrape import Samples, scrape
from realtime_client import send, session, turn

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "tts-dashboard.json").read_text())
# The kubelet's cAdvisor metrics the pod panels read (not a Truss's).
CADVISOR = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
_METRIC = re.compile(r"\b((?:tts|container)_[a-z_]+)\b")
_BY = re.compile(r"\bby \(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!=|=)")


def expressions() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]


@pytest.fixture(scope="module")
def exported(piper, serve) -> Samples:
    """Both transports' metrics after real traffic: an HTTP request to piper-streaming,
    a WebSocket turn to piper-realtime."""
    realtime = serve("piper-realtime", name="piper-realtime-dashboard")
    assert requests.post(piper.predict_url, json={"text": "Metrics, please."}, timeout=60).status_code == 200
    with session(realtime) as ws:
        send(ws, type="session.config", voice="en_US-joe-medium")
        send(ws, type="input.text", text="And over the socket.")
        send(ws, type="input.done")
        turn(ws)
    return {**scrape(piper), **scrape(realtime)}


def test_the_dashboard_loads_as_grafana_reads_it():
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in panels)
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert "tts_" in variables["model"]["definition"]
    titles = " ".join(p["title"].lower() for p in panels)
    for wanted in (
        "requests",
        "sessions",
        "first audio",
        "in flight",
        "queue wait",
        "real-time",
        "cpu",
        "memory",
    ):
        assert wanted in titles, wanted


def test_the_configmap_carries_the_dashboard_for_the_sidecar():
    kustomization = yaml.safe_load((GRAFANA / "kustomization.yaml").read_text())
    assert kustomization["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    (generated,) = kustomization["configMapGenerator"]
    assert generated["files"] == ["tts-dashboard.json"]


def test_every_metric_and_label_the_dashboard_names_is_exported(exported):
    names = {name for name, _ in exported}
    labels_of: dict[str, set[str]] = {}
    for name, labels in exported:
        labels_of.setdefault(name, set()).update(label for label, _ in labels)
    for expr in expressions():
        metrics = set(_METRIC.findall(expr))
        assert metrics, expr
        for metric in metrics - CADVISOR:
            assert metric in names, f"{metric} is not exported: {expr}"
            used = {label.strip() for group in _BY.findall(expr) for label in group.split(",")}
            used |= set(_MATCHER.findall(expr.split(metric, 1)[1].split("}", 1)[0]))
            used -= {"le"} if metric.endswith("_bucket") else set()
            missing = used - labels_of[metric] - {"le"}
            assert not missing, f"{metric} has no label {missing}: {expr}"
        assert metrics & CADVISOR or any(m.startswith("tts_") for m in metrics)


def test_the_dashboard_covers_every_tts_metric_a_truss_exports(exported):
    """Nothing served goes unwatched (the per-model extras aside)."""
    named = {re.sub(r"_(bucket|count|sum)$", "", m) for e in expressions() for m in _METRIC.findall(e)}
    served = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n, _ in exported if n.startswith("tts_")}
    extras = {"tts_voice_cache_lookups_total", "tts_batch_items"}  # xtts-streaming's, parler-batch's own
    assert served - extras <= named, served - extras - named
