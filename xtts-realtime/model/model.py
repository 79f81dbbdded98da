"""Coqui XTTS-v2 speaking the realtime WebSocket protocol, with `voice.add` cloning
(scoped to the caller: uploads.py).

The same engine as xtts-streaming (packages/xtts_engine). Each speakable unit is one
generation on its own view of the shared model, so TTS_MAX_STREAMS units (of any
sessions) run at once. No word timestamps: XTTS's GPT emits audio codes with no
alignment to the text, and a guess would not be honest.
"""

from typing import Any

from starlette.websockets import WebSocket

from model.uploads import UploadedVoices
from tts_common.realtime_protocol import SessionConfig
from tts_common.realtime_session import RealtimeService
from tts_common.settings import RealtimeSettings
from tts_common.truss_context import TrussContext
from xtts_engine.engine import Sampling, XttsEngine


class XttsSessionConfig(Sampling, SessionConfig):
    """The shared session fields and XTTS's sampling fields (their bounds are the HTTP request's)."""


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._max_streams = truss.serving.max_streams
        core = truss.core()
        self._engine = XttsEngine.for_truss(truss, on_voice_cache=core.metrics.voice_cache)
        self._realtime = RealtimeService(
            core,
            self._engine,
            XttsSessionConfig,
            RealtimeSettings.load(truss.metadata),
            truss.api_key,
            UploadedVoices(self._engine, core),
        )

    def load(self) -> None:
        self._engine.load(self._max_streams)

    def is_healthy(self) -> bool:
        return self._realtime.core.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
