"""Shared fixtures: real Truss servers started by the local runner, one per session."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "packages")]

from local_truss.server import LocalTrussServer  # noqa: E402

READY_TIMEOUT_S = float(os.environ.get("TRUSS_READY_TIMEOUT_S", "900"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve(tmp_path_factory):
    """Start a Truss directory with the real truss server; stopped at session end."""
    started: list[LocalTrussServer] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def _serve(truss_dir: str, extra_env: dict | None = None) -> LocalTrussServer:
        server = LocalTrussServer(
            REPO / truss_dir,
            port=free_port(),
            extra_env=extra_env,
            log_path=logs / f"{Path(truss_dir).name}.log",
        )
        started.append(server)
        server.start().wait_ready(READY_TIMEOUT_S)
        return server

    yield _serve
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def piper(serve) -> LocalTrussServer:
    return serve("piper-streaming")


@pytest.fixture(scope="session")
def faults(serve, tmp_path_factory) -> LocalTrussServer:
    """The fault-injecting test Truss (see tests/trusses/fault-streaming)."""
    events = tmp_path_factory.mktemp("fault-events") / "events.jsonl"
    server = serve(
        "tests/trusses/fault-streaming",
        extra_env={"FAULT_EVENTS_PATH": str(events), "TRUSS_SECRET_fault_token": "s3cret"},
    )
    server.events_path = events
    return server


@pytest.fixture(scope="session")
def piper_python() -> Path:
    from local_truss.server import truss_python

    return truss_python(REPO / "piper-streaming")


@pytest.fixture(scope="session")
def xtts_python() -> Path:
    from local_truss.server import truss_python

    return truss_python(REPO / "xtts-streaming")


@pytest.fixture(scope="session")
def xtts_checkpoint(xtts_python) -> Path:
    """A tiny random XTTS-v2 checkpoint in the real format (tests/fixtures/tiny_xtts.py)."""
    from local_truss.paths import cache_dir

    out = cache_dir() / "models" / "tiny-xtts"
    subprocess.run([str(xtts_python), str(REPO / "tests/fixtures/tiny_xtts.py"), str(out)], check=True)
    return out


def _serve_xtts(serve, checkpoint: Path, **env: str) -> LocalTrussServer:
    # A loaded 2-core CI machine can take longer than production's 10 s queue
    # bound to finish one tiny-model stream; the concurrency tests wait instead.
    # Four slots: the concurrency tests run four streams at once on the shared model.
    return serve(
        "xtts-streaming",
        extra_env={"XTTS_MODEL_DIR": str(checkpoint), "TTS_QUEUE_TIMEOUT_S": "300", "TTS_MAX_STREAMS": "4", **env},
    )


@pytest.fixture(scope="session")
def xtts(serve, xtts_checkpoint) -> LocalTrussServer:
    """xtts-streaming as configured (incremental decoder) on the tiny checkpoint."""
    return _serve_xtts(serve, xtts_checkpoint)


@pytest.fixture(scope="session")
def xtts_stock(serve, xtts_checkpoint) -> LocalTrussServer:
    """xtts-streaming with XTTS_STREAM_DECODER=stock: Xtts.inference_stream as shipped."""
    return _serve_xtts(serve, xtts_checkpoint, XTTS_STREAM_DECODER="stock")
