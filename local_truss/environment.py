"""The Python environment a Truss runs in, built from its image's requirements.

Environments are cached by a hash of everything that goes into them, so a second
start of the same Truss installs nothing.
"""

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import cpu_torch
from .paths import cache_dir

logger = logging.getLogger(__name__)


def _requirement_files(build_dir: Path) -> list[Path]:
    return [build_dir / "requirements.txt"]


def _build_commands(build_dir: Path) -> list[str]:
    config = yaml.safe_load((build_dir / "config.yaml").read_text())
    return list(config.get("build_commands") or [])


def _key(build_dir: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    digest.update("\n".join(_build_commands(build_dir)).encode())
    # The one local difference from the image Baseten builds: CPU builds of torch
    # (cpu_torch.py), unless PyPI's default build was asked for.
    cpu_constraints = [cpu_torch.CPU_CONSTRAINTS] if cpu_torch.uses_cpu_builds() else []
    for path in [
        *_requirement_files(build_dir),
        build_dir / "constraints.txt",
        *cpu_constraints,
    ]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:16]


def ensure_environment(name: str, build_dir: Path) -> Path:
    """Return the python executable of this Truss's environment, building it if needed."""
    key = _key(build_dir)
    envs = cache_dir() / "envs"
    # Trusses with the same requirements (piper-streaming and piper-realtime) share one.
    for built in sorted(envs.glob(f"*-{key}/.complete")):
        return built.parent / "bin" / "python"
    env_dir = envs / f"{name}-{key}"
    python = env_dir / "bin" / "python"
    marker = env_dir / ".complete"
    if env_dir.exists():
        shutil.rmtree(env_dir)  # a half-built environment from an interrupted run
    logger.info("building environment %s (first start only)", env_dir.name)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    torch_plan = cpu_torch.plan(python, env, _requirement_files(build_dir))
    cpu_torch.prefetch(python, env, torch_plan)
    constraints = ["-c", str(build_dir / "constraints.txt"), *torch_plan.constraints]
    for requirements in _requirement_files(build_dir):
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
                str(requirements),
                *constraints,
            ],
            check=True,
            env=env,
        )
    # The image runs config.yaml's build_commands after installing requirements,
    # with this environment's python first on PATH; so do we.
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for command in _build_commands(build_dir):
        logger.info("build command: %s", command)
        subprocess.run(["bash", "-c", command], check=True, env=env, cwd=build_dir)
    # Where torch came from does not change what is installed (the pins are exact
    # versions), so it is recorded here rather than keyed.
    marker.write_text(f"ok\ntorch: {torch_plan.source}\n")
    return python
