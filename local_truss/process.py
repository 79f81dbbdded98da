"""A served Truss's process: a free port, readiness, shutdown, CPU time.

Standard library only, so environments without truss (the LiveKit plugin's tests
and bench, in .venv-agent) start and stop servers with the same code as the
serving side: they run `python -m local_truss serve` with the host .venv's python
(`ServedTruss`); the serving side starts `LocalTrussServer` in-process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .paths import REPO_ROOT

HOST_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
# A first start builds the Truss's environment: minutes on a fresh machine.
READY_TIMEOUT_S = float(os.environ.get("TRUSS_READY_TIMEOUT_S", "900"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def is_ready(base_url: str) -> bool:
    """Whether truss's readiness route answers 200 (the model has loaded)."""
    try:
        with urllib.request.urlopen(f"{base_url}/v1/models/model", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(
    base_url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float, log_path: Path | None = None
) -> None:
    """Poll until ready; RuntimeError (with the log's tail) if the process exits first,
    TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
            raise RuntimeError(
                f"{what} server exited with {process.returncode}" + (f":\n{tail}" if tail else "")
            )
        if is_ready(base_url):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s:g} s")


def stop(process: subprocess.Popen[bytes], group: bool = False) -> None:
    """SIGTERM (to the whole process group when `group`), SIGKILL after 15 s."""
    if process.poll() is not None:
        return
    if group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def cpu_seconds(root: int) -> float:
    """CPU time used so far by process `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


class ServedTruss:
    """`python -m local_truss serve TRUSS` as a user runs it, on a free port, in its
    own process group (so stopping it stops the model server it starts)."""

    def __init__(
        self,
        truss: str,
        log_path: Path | None = None,
        python: Path = HOST_PYTHON,
        extra_env: dict[str, str] | None = None,
    ):
        self.truss = truss
        self.log_path = log_path
        self.python = python
        self.extra_env = extra_env or {}  # e.g. TRUSS_SECRET_<name>, as a deployment sets secrets
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def predict_url(self) -> str:
        return f"{self.base_url}/v1/models/model:predict"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> ServedTruss:
        if not self.python.exists():
            raise RuntimeError(f"{self.python} is missing: run scripts/setup first")
        command = [str(self.python), "-m", "local_truss", "serve", self.truss, "--port", str(self.port)]
        with open(self.log_path or os.devnull, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.extra_env},
            )
        try:
            wait_ready(self.base_url, self.process, self.truss, timeout_s, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def cpu_seconds(self) -> float:
        """CPU time of the server and its children (synthesis runs in a child)."""
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, group=True)

    def __enter__(self) -> ServedTruss:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
