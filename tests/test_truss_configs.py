"""Every Truss's config.yaml passes truss's strict validation, the one `truss push` runs."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO
from truss.base.truss_config import TrussConfig
from truss.truss_handle.truss_handle import TrussHandle

TRUSSES = sorted(p.parent.name for p in REPO.glob("*/config.yaml"))


def test_every_truss_is_found():
    assert {"piper-streaming", "xtts-streaming"} <= set(TRUSSES)


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


def test_gpu_trusses_pin_weights_and_accelerator():
    xtts = TrussConfig.from_yaml(REPO / "xtts-streaming" / "config.yaml")
    assert xtts.resources.accelerator.accelerator.value in ("T4", "A10G")
    (source,) = xtts.weights.sources
    assert "@" in source.source and not source.source.endswith("@main")
    assert xtts.environment_variables["COQUI_TOS_AGREED"] == "1"
