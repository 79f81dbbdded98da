"""Builds the container's filesystem (/app, /packages) for a Truss, without Docker."""

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from truss.contexts.image_builder.serving_image_builder import ServingImageBuilderContext
from truss.contexts.local_loader.docker_build_emulator import DockerBuildEmulator
from truss.contexts.local_loader.dockerfile_parser import DockerInstruction, parse_dockerfile
from truss.truss_handle.truss_gatherer import gather

from .paths import cache_dir

logger = logging.getLogger(__name__)


@dataclass
class AppTree:
    root: Path  # stands for the container's "/"
    build_dir: Path  # the Docker build context truss generated

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    @property
    def packages_dir(self) -> Path:
        return self.root / "packages"

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load((self.app_dir / "config.yaml").read_text())
        return config

    def remove(self) -> None:
        shutil.rmtree(self.root.parent, ignore_errors=True)


def build_app_tree(truss_dir: Path) -> AppTree:
    """Gather external packages (as `truss push` does) and emulate the image build."""
    gathered = gather(truss_dir.resolve())
    work = Path(tempfile.mkdtemp(prefix=f"{truss_dir.name}-", dir=cache_dir()))
    build_dir, root = work / "build", work / "fs"
    build_dir.mkdir()
    root.mkdir()
    ServingImageBuilderContext.run(gathered).prepare_image_build_dir(build_dir)
    _make_copy_targets(build_dir / "Dockerfile", root)
    DockerBuildEmulator(build_dir / "Dockerfile", build_dir).run(root)
    logger.info("built app tree for %s in %s", truss_dir.name, root)
    return AppTree(root=root, build_dir=build_dir)


def _make_copy_targets(dockerfile: Path, root: Path) -> None:
    """The folders a COPY writes into, which Docker makes and the emulator does not
    (a docker_server image's /etc/nginx/conf.d)."""
    for command in parse_dockerfile(dockerfile):
        if command.instruction == DockerInstruction.COPY and command.value[-1].startswith("/"):
            (root / command.value[-1].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
