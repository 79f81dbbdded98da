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


def _served(truss: str, logs: Path, **env: str) -> Iterator[ServedTruss]:
    with ServedTruss(truss, log_path=logs / "server.log", extra_env=env) as server:
        yield server


@pytest.fixture(scope="session")
def piper_realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from _served("piper-realtime", tmp_path_factory.mktemp("piper-realtime"))


@pytest.fixture(scope="session")
def piper_realtime_quick_idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    """piper-realtime closing a session idle for 2 s: under the service's 15 s keepalive."""
    logs = tmp_path_factory.mktemp("piper-realtime-idle")
    yield from _served("piper-realtime", logs, TTS_WS_IDLE_TIMEOUT_S="2")


@pytest.fixture(scope="session")
def piper_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from _served("piper-openai", tmp_path_factory.mktemp("piper-openai"))


def ws_url(server: ServedTruss) -> str:
    return server.base_url.replace("http://", "ws://", 1) + "/v1/websocket"
