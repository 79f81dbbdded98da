"""Start, wait for and stop a locally served Truss."""

import logging
import os
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
            "LOCAL_TRUSS_HOST": host,
            # The image copies bundled packages to /packages, on sys.path there.
            "PYTHONPATH": str(tree.packages_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


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
            [str(python), str(LAUNCHER)],
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
