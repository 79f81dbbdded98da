"""Where the runner gets the CPU build of torch, with pip's configuration isolated.

A fresh machine's pip knows no `+cpu` wheel; ours has a local wheel directory. Each
test gives pip only what it sets here (no configuration files, no PIP_* variables) and
a small real wheel named like the pinned CPU build, then checks what the runner asks
pip for, or builds a real environment with it.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from local_truss import cpu_torch, environment
from local_truss.cpu_torch import CpuTorchUnavailable

PIN = next(pin for pin in cpu_torch.cpu_pins() if Requirement(pin).name == "torch")
VERSION = PIN.split("==", 1)[1]  # e.g. 2.13.0+cpu
PUBLIC_VERSION = VERSION.split("+", 1)[0]


def write_wheel(folder: Path, name: str = "torch", version: str = VERSION, requires: str = "") -> Path:
    """A tiny installable wheel; by default named and versioned like the pinned CPU torch."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    requires_dist = f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_dist}",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def write_index(root: Path, *wheels: Path) -> str:
    """A PEP 503 index as a file: URL, holding these wheels (none: an empty index)."""
    root.mkdir(parents=True)
    for wheel in wheels:
        project = root / wheel.name.split("-", 1)[0]
        project.mkdir()
        (project / wheel.name).write_bytes(wheel.read_bytes())
        (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    return root.as_uri()


@pytest.fixture
def isolated_pip(monkeypatch, tmp_path):
    """pip as on a fresh machine: no configuration files, no PIP_* variables."""
    for name in list(os.environ):
        if name.startswith("PIP_") or name == cpu_torch.INDEX_URL_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("TTS_STACK_CACHE", str(tmp_path / "cache"))
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture
def empty_index(tmp_path) -> str:
    return write_index(tmp_path / "empty-index")


def build_dir(tmp_path: Path, requirements: str) -> Path:
    """A Truss build context as the runner sees one: requirements, constraints, config."""
    build = tmp_path / "build"
    build.mkdir()
    (build / "requirements.txt").write_text(requirements)
    (build / "constraints.txt").write_text("")
    (build / "config.yaml").write_text("model_name: tiny\n")
    return build


def plan_for(build: Path, env: dict) -> cpu_torch.TorchPlan:
    return cpu_torch.plan(Path(sys.executable), env, [build / "requirements.txt"])


def test_fresh_machine_fetches_torch_alone_from_the_cpu_index(tmp_path, isolated_pip):
    # pip's default index, as a new user's pip has it: no +cpu build there.
    plan = plan_for(build_dir(tmp_path, f"torch=={PUBLIC_VERSION}\n"), isolated_pip)
    assert plan.prefetch_args == [
        "install",
        "--no-deps",
        "-q",
        "--index-url",
        cpu_torch.DEFAULT_INDEX_URL,
        PIN,
    ]
    assert plan.constraints == ["-c", str(cpu_torch.CPU_CONSTRAINTS)]
    assert plan.source == cpu_torch.DEFAULT_INDEX_URL


def test_cpu_index_url_comes_from_the_environment(tmp_path, isolated_pip, empty_index, monkeypatch):
    monkeypatch.setenv(cpu_torch.INDEX_URL_ENV, "https://mirror.example/whl/cpu")
    plan = plan_for(build_dir(tmp_path, f"-i {empty_index}\ntorch=={PUBLIC_VERSION}\n"), isolated_pip)
    assert plan.prefetch_args[-3:] == ["--index-url", "https://mirror.example/whl/cpu", PIN]


def test_wheel_at_hand_adds_no_index(tmp_path, isolated_pip, empty_index):
    wheels = write_wheel(tmp_path / "wheels").parent
    env = {**isolated_pip, "PIP_FIND_LINKS": str(wheels)}
    plan = plan_for(build_dir(tmp_path, f"-i {empty_index}\ntorch=={PUBLIC_VERSION}\n"), env)
    assert plan.prefetch_args == []
    assert plan.source == "pip's configured indexes"
    assert plan.constraints == ["-c", str(cpu_torch.CPU_CONSTRAINTS)]


def test_probe_sees_the_index_the_requirements_choose(tmp_path, isolated_pip, empty_index):
    # truss's requirements.txt names its index with -i, which replaces a configured
    # index-url: a wheel only there is not at hand for the install.
    has_it = write_index(tmp_path / "configured", write_wheel(tmp_path / "wheels"))
    env = {**isolated_pip, "PIP_INDEX_URL": has_it}
    requirements = f"torch=={PUBLIC_VERSION}\n"
    assert plan_for(build_dir(tmp_path, requirements), env).prefetch_args == []
    (tmp_path / "build" / "requirements.txt").write_text(f"-i {empty_index}\n{requirements}")
    assert plan_for(tmp_path / "build", env).prefetch_args[-1] == PIN


def test_truss_without_torch_asks_for_nothing(tmp_path, isolated_pip):
    plan = plan_for(build_dir(tmp_path, "numpy>=1.26,<2\n"), isolated_pip)
    assert (plan.prefetch_args, plan.source) == ([], "not required")


def test_pypi_build_drops_the_pins_and_changes_the_cache_key(tmp_path, isolated_pip, monkeypatch):
    build = build_dir(tmp_path, f"torch=={PUBLIC_VERSION}\n")
    cpu_key = environment._key(build)
    monkeypatch.setenv(cpu_torch.INDEX_URL_ENV, cpu_torch.USE_PYPI)
    plan = plan_for(build, isolated_pip)
    assert (plan.constraints, plan.prefetch_args) == ([], [])
    assert environment._key(build) != cpu_key


def test_environment_gets_torch_alone_from_the_cpu_index(tmp_path, isolated_pip, monkeypatch):
    # torch's dependency is only in the Truss's own index: installed from there, it
    # shows the CPU index served torch alone.
    wheels = tmp_path / "wheels"
    cpu_index = write_index(tmp_path / "cpu-index", write_wheel(wheels, requires="torchdep"))
    truss_index = write_index(tmp_path / "truss-index", write_wheel(wheels, "torchdep", "1.0"))
    monkeypatch.setenv(cpu_torch.INDEX_URL_ENV, cpu_index)
    build = build_dir(tmp_path, f"-i {truss_index}\ntorch=={PUBLIC_VERSION}\n")
    python = environment.ensure_environment("tiny", build)
    installed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('torch'), m.version('torchdep'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert installed == [VERSION, "1.0"]
    assert f"torch: {cpu_index}" in (python.parent.parent / ".complete").read_text()


def test_no_cpu_build_anywhere_says_how_to_get_one(tmp_path, isolated_pip, empty_index, monkeypatch):
    monkeypatch.setenv(cpu_torch.INDEX_URL_ENV, empty_index)
    build = build_dir(tmp_path, f"-i {empty_index}\ntorch=={PUBLIC_VERSION}\n")
    with pytest.raises(CpuTorchUnavailable) as raised:
        environment.ensure_environment("tiny", build)
    message = str(raised.value)
    assert PIN in message and empty_index in message
    assert f"pip download --no-deps -d ~/wheels --index-url {cpu_torch.DEFAULT_INDEX_URL} '{PIN}'" in message
    assert "export PIP_FIND_LINKS=~/wheels" in message
    assert f"export {cpu_torch.INDEX_URL_ENV}={cpu_torch.USE_PYPI}" in message
