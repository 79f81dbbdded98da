"""Coqui XTTS-v2 speaking the shared streaming contract.

load(): the engine (packages/xtts_engine): the model from the cached weights (or
XTTS_MODEL_DIR), every built-in and folder speaker's conditioning pinned on the
device, a warm-up. predict(): validate, then stream 16-bit PCM chunk by chunk,
each stream on its own view of the loaded model, so TTS_MAX_STREAMS run at once.
"""

from typing import Any

from pydantic import StrictStr
from starlette.requests import Request
from starlette.responses import Response

from tts_common.contract import FieldError, StreamRequest
from tts_common.engine import plan
from tts_common.reference_audio import decode_reference_wav
from tts_common.streaming import AudioStreamer, contract_speech
from tts_common.synthesis import Synthesis
from tts_common.truss_context import TrussContext
from xtts_engine.engine import XTTS_REFERENCE_RATE, Sampling, XttsEngine


class XttsRequest(Sampling, StreamRequest):
    """The contract's fields, XTTS's sampling fields and a reference clip."""

    speaker_wav: StrictStr | None = None  # base64 WAV, 1 to 30 s, for cloning


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._max_streams = truss.serving.max_streams
        core = truss.core()
        self._streamer = AudioStreamer(core, truss.api_key)
        self.engine = XttsEngine.for_truss(truss, on_voice_cache=core.metrics.voice_cache)

    def load(self) -> None:
        self.engine.load(self._max_streams)

    def prepare(self, req: XttsRequest) -> Synthesis:
        if req.voice is not None and req.speaker_wav is not None:
            raise FieldError("speaker_wav", "give either voice or speaker_wav, not both")
        self.engine.language(req.language)  # a bad language is named before the clip is decoded
        clip = None
        if req.speaker_wav is not None:
            clip = decode_reference_wav(req.speaker_wav, XTTS_REFERENCE_RATE)
        return plan(self.engine, req.text, req.language, req.voice, req, clip=clip)

    def is_healthy(self) -> bool:
        return self._streamer.core.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, contract_speech(XttsRequest, self.prepare))
