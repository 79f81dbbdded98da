"""Where an environment's CPU build of torch comes from.

`cpu-constraints.txt` pins CPU builds (`torch==X+cpu`) where Baseten's image has the
CUDA build of the same version. PyPI has no `+cpu` builds. If pip's own configuration
(find-links, extra indexes) has the pinned wheel, it comes from there; otherwise it is
installed first, alone and without its dependencies, from the PyTorch CPU index
(`TTS_STACK_TORCH_INDEX_URL`), so that every other package still resolves from the same
indexes as in the image. Which way is decided by a dry run of pip with the options the
install itself will have: it reads the configured indexes only, never the CPU index,
so a machine that has the wheel at hand never waits on an index it may not reach.
"""

import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .paths import REPO_ROOT

logger = logging.getLogger(__name__)

CPU_CONSTRAINTS = REPO_ROOT / "local_truss" / "cpu-constraints.txt"
INDEX_URL_ENV = "TTS_STACK_TORCH_INDEX_URL"
DEFAULT_INDEX_URL = "https://download.pytorch.org/whl/cpu"
# TTS_STACK_TORCH_INDEX_URL=pypi: PyPI's default build instead, CUDA libraries and all.
USE_PYPI = "pypi"
PIP = ["-m", "pip", "--disable-pip-version-check"]


class CpuTorchUnavailable(RuntimeError):
    """No CPU build of torch could be installed; the message says how to get one."""


def uses_cpu_builds() -> bool:
    """Whether environments get the `+cpu` pins (part of the environment cache key).

    macOS wheels on PyPI are CPU builds already, and none carries a `+cpu` label.
    """
    return CPU_CONSTRAINTS.exists() and sys.platform != "darwin" and os.environ.get(INDEX_URL_ENV) != USE_PYPI


def index_url() -> str:
    return os.environ.get(INDEX_URL_ENV) or DEFAULT_INDEX_URL


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def cpu_pins() -> list[str]:
    """The `+cpu` requirements of cpu-constraints.txt, e.g. `torch==2.13.0+cpu`."""
    if not CPU_CONSTRAINTS.exists():
        return []
    return [line for line in _requirement_lines(CPU_CONSTRAINTS) if "+" in line]


def _names(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for line in lines:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            pass  # an option line (-i, -f ...) or a URL
    return names


def _option_lines(lines: list[str]) -> list[str]:
    """A requirements file's pip options (e.g. truss's `-i`): the probe needs the same ones."""
    nested = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")
    return [line for line in lines if line.startswith("-") and line.split()[0].split("=")[0] not in nested]


@dataclass(frozen=True)
class TorchPlan:
    """What the environment build asks pip for, besides the Truss's requirements."""

    constraints: list[str]  # constraints arguments of the main install
    pins: list[str]  # the CPU builds to install first, from index_url
    index_url: str | None
    source: str  # where torch comes from, in words (logged, and recorded in the environment)

    @property
    def prefetch_args(self) -> list[str]:
        """pip arguments that install the CPU builds alone, first; empty when not needed."""
        if not (self.pins and self.index_url):
            return []
        return ["install", "--no-deps", "-q", "--index-url", self.index_url, *self.pins]


def _configured_pip_has(python: Path, env: dict[str, str], options: list[str], pins: list[str]) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_text("\n".join([*options, *pins]) + "\n")
        result = subprocess.run(
            [
                str(python),
                *PIP,
                "install",
                "--dry-run",
                "--no-deps",
                "--ignore-installed",
                "-q",
                "-r",
                str(probe),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        logger.info(
            "pip's configured indexes have no %s: %s",
            " ".join(pins),
            result.stderr.strip().splitlines()[-1:] or result.returncode,
        )
    return result.returncode == 0


def plan(python: Path, env: dict[str, str], requirement_files: list[Path]) -> TorchPlan:
    """Decide where torch comes from for an environment built with this python and env."""
    lines = [line for path in requirement_files for line in _requirement_lines(path)]
    wanted = _names(lines)
    pins = [pin for pin in cpu_pins() if canonicalize_name(Requirement(pin).name) in wanted]
    constraints = ["-c", str(CPU_CONSTRAINTS)] if uses_cpu_builds() else []
    if not pins:
        return TorchPlan(constraints=constraints, pins=[], index_url=None, source="not required")
    if not constraints:
        if sys.platform != "darwin":
            logger.warning(
                "%s=%s: installing PyPI's default torch, the CUDA build, whose download "
                "(with its CUDA libraries) is several times the CPU wheel's",
                INDEX_URL_ENV,
                USE_PYPI,
            )
        return TorchPlan(constraints=[], pins=[], index_url=None, source="PyPI's default build")
    if _configured_pip_has(python, env, _option_lines(lines), pins):
        return TorchPlan(constraints=constraints, pins=[], index_url=None, source="pip's configured indexes")
    url = index_url()
    return TorchPlan(constraints=constraints, pins=pins, index_url=url, source=url)


def prefetch(python: Path, env: dict[str, str], torch_plan: TorchPlan) -> None:
    """Install the CPU builds from the CPU index, or say plainly how to get them."""
    if not torch_plan.prefetch_args:
        return
    pins = torch_plan.pins
    logger.info("installing %s from %s (%s)", " ".join(pins), torch_plan.index_url, INDEX_URL_ENV)
    if subprocess.run([str(python), *PIP, *torch_plan.prefetch_args], env=env).returncode == 0:
        return
    wanted = " ".join(f"'{pin}'" for pin in pins)
    raise CpuTorchUnavailable(
        f"{' '.join(pins)} (the CPU build the local runner installs in place of the image's "
        f"CUDA build) is in none of pip's configured indexes or find-links, and pip could not "
        f"install it from {torch_plan.index_url} either (pip's output is above). Any one of these fixes it:\n"
        f"  - let pip reach {DEFAULT_INDEX_URL}, or point {INDEX_URL_ENV} at a copy of that index;\n"
        f"  - download the wheel where the index is reachable (same OS, CPU and Python "
        f"{sys.version_info.major}.{sys.version_info.minor}) and give pip the folder:\n"
        f"      pip download --no-deps -d ~/wheels --index-url {DEFAULT_INDEX_URL} {wanted}\n"
        f"      export PIP_FIND_LINKS=~/wheels\n"
        f"  - or install PyPI's default build instead, the CUDA one (several times the download):\n"
        f"      export {INDEX_URL_ENV}={USE_PYPI}"
    )
