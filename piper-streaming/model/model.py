"""Piper (en_US-joe-medium) speaking the shared streaming contract, on CPU."""

import logging
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from piper_engine.engine import MAX_SENTENCE_CHARS, PiperEngine
from tts_common.contract import StreamRequest, field_error
from tts_common.settings import CpuSettings, PiperSettings
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments

logger = logging.getLogger(__name__)


class PiperRequest(StreamRequest):
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        settings = PiperSettings.load(kwargs["config"].get("model_metadata") or {})
        self._engine = PiperEngine(settings, CpuSettings.from_env())
        # admitted by CPU load: a request waits only while the lanes are behind
        self._streamer = AudioStreamer.for_truss(kwargs, behind=self._engine.behind_s)

    def load(self) -> None:
        self._engine.load()

    def _prepare(self, req: PiperRequest) -> Synthesis:
        name = self._engine.settings.voice
        if req.voice not in (None, name):
            raise field_error("voice", f"unknown voice {req.voice!r}; available: {name}")
        if req.language != "en":
            raise field_error("language", f"unsupported language {req.language!r}; available: en")
        # Each sentence is spoken whole; only one over the limit is split, at its own punctuation.
        segments = plan_segments(req.text, max_chars=MAX_SENTENCE_CHARS)
        return Synthesis(model_rate=self._engine.sample_rate, chunks=self._engine.stream(segments, req.speed))

    def is_healthy(self) -> bool:
        return self._streamer.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, PiperRequest, self._prepare)
