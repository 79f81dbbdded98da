"""Shared fixtures: real Truss servers started by the local runner, one per session."""

import os
import socket
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
