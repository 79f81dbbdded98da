"""Fixtures: the real Trusses, served as a user serves them (`python -m local_truss
serve`, with the host .venv: scripts/setup), once per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # local_truss.process: standard library only

from local_truss.process import ServedTruss  # noqa: E402


@pytest.fixture(scope="session")
def piper_realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    with ServedTruss(
        "piper-realtime", log_path=tmp_path_factory.mktemp("piper-realtime") / "server.log"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def piper_realtime_quick_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    """piper-realtime closing a session idle for 2 s: under the service's 15 s keepalive."""
    log = tmp_path_factory.mktemp("piper-realtime-idle") / "server.log"
    with ServedTruss("piper-realtime", log_path=log, extra_env={"TTS_WS_IDLE_TIMEOUT_S": "2"}) as server:
        yield server


@pytest.fixture(scope="session")
def piper_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    with ServedTruss(
        "piper-openai", log_path=tmp_path_factory.mktemp("piper-openai") / "server.log"
    ) as server:
        yield server


def ws_url(server: ServedTruss) -> str:
    return server.base_url.replace("http://", "ws://", 1) + "/v1/websocket"
