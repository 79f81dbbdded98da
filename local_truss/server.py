"""Start, wait for and stop a locally served Truss."""

import logging
import os
import re
import subprocess
from pathlib import Path

from .app_tree import AppTree, build_app_tree
from .environment import ensure_environment
from .paths import REPO_ROOT
from .process import is_ready, stop, wait_ready

logger = logging.getLogger(__name__)

LAUNCHER = REPO_ROOT / "local_truss" / "launch.py"


def server_environment(tree: AppTree, port: int, host: str) -> dict[str, str]:
    """The process environment the container would give the server."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    config = tree.config
    # Baseten sets these on the running container; so do we.
    env.update({k: str(v) for k, v in (config.get("environment_variables") or {}).items()})
    env.update(
        {
            "INFERENCE_SERVER_PORT": str(port),
            "TTS_SERVER_PORT": str(port),  # a docker_server Truss's own server
            "LOCAL_TRUSS_HOST": host,
            # The image copies bundled packages to /packages, on sys.path there.
            "PYTHONPATH": str(tree.packages_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# What a docker_server Truss's start_command must run for the runner to serve it:
# a python script under /app (its image's model directory).
_START_SCRIPT = re.compile(r"\bpython3?\s+/app/([^\s\"']+)")


def server_command(tree: AppTree, python: Path) -> list[str]:
    """The process that serves the Truss: truss's own server (the image's
    /app/main.py, through our launcher), or for a docker_server Truss the script
    its start_command runs, with the image's /app and /packages mapped onto the
    app tree (server_environment puts the packages on PYTHONPATH)."""
    docker_server = tree.config.get("docker_server")
    if not docker_server:
        return [str(python), str(LAUNCHER)]
    found = _START_SCRIPT.search(docker_server["start_command"])
    if found is None:
        raise ValueError(
            f"docker_server.start_command {docker_server['start_command']!r}: the local runner "
            "serves a start_command that runs `python3 /app/<script>`"
        )
    return [str(python), str(tree.app_dir / found.group(1))]


def truss_python(truss_dir: Path) -> Path:
    """The python of a Truss's environment (built if needed), for in-process work."""
    server = LocalTrussServer(truss_dir)
    try:
        return server.prepare()
    finally:
        server.stop()


class LocalTrussServer:
    """One Truss served by truss's inference server in a child process."""

    def __init__(
        self,
        truss_dir: Path,
        port: int = 8080,
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ):
        self.truss_dir = Path(truss_dir)
        self.port = port
        self.host = host
        self.extra_env = extra_env or {}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.tree: AppTree | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def predict_url(self) -> str:
        return f"{self.base_url}/v1/models/model:predict"

    def prepare(self) -> Path:
        """Build the app tree and environment; return the environment's python."""
        self.tree = build_app_tree(self.truss_dir)
        return ensure_environment(self.truss_dir.name, self.tree.build_dir)

    def start(self) -> "LocalTrussServer":
        python = self.prepare()
        assert self.tree is not None
        env = server_environment(self.tree, self.port, self.host)
        env.update(self.extra_env)
        stdout = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(
            server_command(self.tree, python),
            cwd=self.tree.app_dir,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
        )
        return self

    def ready(self) -> bool:
        return is_ready(self.base_url)

    def wait_ready(self, timeout_s: float = 300) -> "LocalTrussServer":
        assert self.process is not None, "start() first"
        wait_ready(self.base_url, self.process, self.truss_dir.name, timeout_s, self.log_path)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        if self.tree is not None:
            self.tree.remove()

    def __enter__(self) -> "LocalTrussServer":
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
