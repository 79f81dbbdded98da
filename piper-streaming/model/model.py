"""Piper (en_US-joe-medium) speaking the shared streaming contract, on CPU."""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from piper_engine.engine import PiperEngine, PiperOptions
from tts_common.contract import StreamRequest
from tts_common.engine import plan
from tts_common.streaming import AudioStreamer, contract_speech
from tts_common.synthesis import Synthesis
from tts_common.truss_context import TrussContext


class PiperRequest(PiperOptions, StreamRequest):
    """The contract's fields and piper's own."""


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._engine = PiperEngine.from_metadata(truss.metadata)
        # admitted by CPU load: a request waits only while the lanes are behind
        self._streamer = AudioStreamer(truss.core(self._engine.behind_s), truss.api_key)

    def load(self) -> None:
        self._engine.load()

    def prepare(self, req: PiperRequest) -> Synthesis:
        return plan(self._engine, req.text, req.language, req.voice, req)

    def is_healthy(self) -> bool:
        return self._streamer.core.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, contract_speech(PiperRequest, self.prepare))
