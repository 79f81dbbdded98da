"""Shared fixtures. Tests are laid out by kind:

    tests/unit/      pure functions and classes: seconds, no truss needed
                     (`.venv/bin/python -m pytest tests/unit -q`)
    tests/runner/    the local runner and the Truss configs (truss, pip)
    tests/e2e/       real Truss servers over real HTTP (the fixtures below)
    tests/tools/     helpers the tests import and scripts they run in a Truss's environment
    tests/fixtures/  tiny random models built with the real library classes
    tests/trusses/   Trusses that exist only for tests

Nothing here imports truss at collection: the server fixtures import the runner
when a test first asks for a server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "packages"), str(REPO / "tests" / "tools")]

from local_truss.process import READY_TIMEOUT_S, free_port  # noqa: E402  (standard library only)

if TYPE_CHECKING:
    from local_truss.server import LocalTrussServer

__all__ = ["REPO", "free_port"]

FAULTS_API_KEY = "k-0123456789abcdef"


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalTrussServer]]:
    """Start a Truss directory with the real truss server; stopped at session end."""
    from local_truss.server import LocalTrussServer

    started: list[LocalTrussServer] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def _serve(truss_dir: str, extra_env: dict[str, str] | None = None, name: str = "") -> LocalTrussServer:
        """`name` tells apart the logs of two instances of one Truss."""
        server = LocalTrussServer(
            REPO / truss_dir,
            port=free_port(),
            extra_env=extra_env,
            log_path=logs / f"{name or Path(truss_dir).name}.log",
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
def faults_with_key(serve) -> LocalTrussServer:
    """The fault-streaming Truss with its optional API key set."""
    server = serve(
        "tests/trusses/fault-streaming",
        extra_env={"TRUSS_SECRET_tts_api_key": FAULTS_API_KEY},
        name="faults-key",
    )
    server.api_key = FAULTS_API_KEY
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
        extra_env={
            "XTTS_MODEL_DIR": str(checkpoint),
            "TTS_QUEUE_TIMEOUT_S": "300",
            "TTS_MAX_STREAMS": "4",
            **env,
        },
    )


@pytest.fixture(scope="session")
def xtts(serve, xtts_checkpoint) -> LocalTrussServer:
    """xtts-streaming as configured (incremental decoder) on the tiny checkpoint, its
    streams' GPT steps batched as on a GPU (XTTS_BATCH_STEPS's default is CUDA only)."""
    return _serve_xtts(serve, xtts_checkpoint, XTTS_BATCH_STEPS="1")


@pytest.fixture(scope="session")
def xtts_stock(serve, xtts_checkpoint) -> LocalTrussServer:
    """xtts-streaming with XTTS_STREAM_DECODER=stock: Xtts.inference_stream as shipped."""
    return _serve_xtts(serve, xtts_checkpoint, XTTS_STREAM_DECODER="stock")
