"""Every Truss's config.yaml passes truss's strict validation, the one `truss push` runs."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO
from truss.base.truss_config import TrussConfig
from truss.truss_handle.truss_handle import TrussHandle

TRUSSES = sorted(p.parent.name for p in REPO.glob("*/config.yaml"))


def test_every_truss_is_found():
    assert {"piper-streaming", "piper-realtime", "xtts-streaming", "parler-batch"} <= set(TRUSSES)


@pytest.mark.parametrize("name", TRUSSES)
def test_config_passes_strict_validation(name):
    config = TrussConfig.from_yaml(REPO / name / "config.yaml")
    config.validate_forbid_extra()  # what `truss push` checks before uploading
    TrussHandle(REPO / name)  # model module, external packages, data dir


@pytest.mark.parametrize("name", TRUSSES)
@pytest.mark.parametrize("path", [("resourcez",), ("runtime", "predict_concurency")])
def test_a_mistyped_key_fails(name, path, tmp_path: Path):
    raw = yaml.safe_load((REPO / name / "config.yaml").read_text())
    target = raw
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = 1
    with pytest.raises(ValueError, match=path[-1]):
        TrussConfig.from_dict(raw).validate_forbid_extra()


@pytest.mark.parametrize("name", ["xtts-streaming", "parler-batch"])
def test_gpu_trusses_pin_weights_and_accelerator(name):
    config = TrussConfig.from_yaml(REPO / name / "config.yaml")
    assert config.resources.accelerator.accelerator.value in ("T4", "A10G")
    (source,) = config.weights.sources
    assert source.source.startswith("hf://") and "@" in source.source
    assert not source.source.endswith(("@main", "@master"))


def test_xtts_agrees_to_the_coqui_terms_non_interactively():
    config = TrussConfig.from_yaml(REPO / "xtts-streaming" / "config.yaml")
    assert config.environment_variables["COQUI_TOS_AGREED"] == "1"


def test_the_realtime_truss_is_a_websocket_endpoint_over_the_same_environment():
    realtime = TrussConfig.from_yaml(REPO / "piper-realtime" / "config.yaml")
    http = TrussConfig.from_yaml(REPO / "piper-streaming" / "config.yaml")
    assert realtime.runtime.transport.kind == "websocket" and realtime.runtime.is_websocket_endpoint
    assert realtime.requirements == http.requirements and realtime.resources == http.resources
