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


def _serve(truss: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[ServedTruss]:
    server = ServedTruss(truss, log_path=log_dir / "server.log", extra_env=extra_env)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def piper_realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from _serve("piper-realtime", tmp_path_factory.mktemp("piper-realtime"))


@pytest.fixture(scope="session")
def piper_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from _serve("piper-openai", tmp_path_factory.mktemp("piper-openai"))


def ws_url(server: ServedTruss) -> str:
    return server.base_url.replace("http://", "ws://", 1) + "/v1/websocket"
