"""Piper (en_US-joe-medium) speaking the realtime WebSocket protocol, on CPU."""

from typing import Any

from starlette.websockets import WebSocket

from piper_engine.engine import PiperEngine, PiperOptions
from tts_common.realtime_protocol import SessionConfig
from tts_common.realtime_session import RealtimeService
from tts_common.settings import RealtimeSettings
from tts_common.truss_context import TrussContext


class PiperSessionConfig(PiperOptions, SessionConfig):
    """The protocol's session fields and piper's own."""


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._engine = PiperEngine.from_metadata(truss.metadata)
        self._realtime = RealtimeService(
            truss.core(self._engine.behind_s),  # units admitted by CPU load, as HTTP requests are
            self._engine,
            PiperSessionConfig,
            RealtimeSettings.load(truss.metadata),
            truss.api_key,
        )

    def load(self) -> None:
        self._engine.load()

    def is_healthy(self) -> bool:
        return self._realtime.core.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
