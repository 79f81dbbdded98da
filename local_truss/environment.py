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

from .paths import REPO_ROOT, cache_dir

logger = logging.getLogger(__name__)

# The one local difference from the image Baseten builds: on a machine without a
# GPU, torch and its companions come as CPU builds (see the README).
CPU_CONSTRAINTS = REPO_ROOT / "local_truss" / "cpu-constraints.txt"


def _requirement_files(build_dir: Path) -> list[Path]:
    return [build_dir / "requirements.txt"]


def _build_commands(build_dir: Path) -> list[str]:
    config = yaml.safe_load((build_dir / "config.yaml").read_text())
    return list(config.get("build_commands") or [])


def _key(build_dir: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    digest.update("\n".join(_build_commands(build_dir)).encode())
    for path in [
        *_requirement_files(build_dir),
        build_dir / "constraints.txt",
        CPU_CONSTRAINTS,
    ]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:16]


def ensure_environment(name: str, build_dir: Path) -> Path:
    """Return the python executable of this Truss's environment, building it if needed."""
    env_dir = cache_dir() / "envs" / f"{name}-{_key(build_dir)}"
    python = env_dir / "bin" / "python"
    marker = env_dir / ".complete"
    if marker.exists():
        return python
    if env_dir.exists():
        shutil.rmtree(env_dir)  # a half-built environment from an interrupted run
    logger.info("building environment %s (first start only)", env_dir.name)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    constraints = ["-c", str(build_dir / "constraints.txt")]
    if CPU_CONSTRAINTS.exists():
        constraints += ["-c", str(CPU_CONSTRAINTS)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for requirements in _requirement_files(build_dir):
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check",
             "-q", "-r", str(requirements), *constraints],
            check=True,
            env=env,
        )
    # The image runs config.yaml's build_commands after installing requirements,
    # with this environment's python first on PATH; so do we.
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for command in _build_commands(build_dir):
        logger.info("build command: %s", command)
        subprocess.run(["bash", "-c", command], check=True, env=env, cwd=build_dir)
    marker.write_text("ok\n")
    return python
