"""Coqui XTTS-v2 speaking the shared streaming contract.

load(): the engine (packages/xtts_engine): the model from the cached weights (or
XTTS_MODEL_DIR), every built-in and folder speaker's conditioning pinned on the
device, a warm-up. predict(): validate, then stream 16-bit PCM chunk by chunk,
each stream on its own view of the loaded model, so TTS_MAX_STREAMS run at once.
"""

import logging
from pathlib import Path
from typing import Any

from pydantic import StrictStr
from starlette.requests import Request
from starlette.responses import Response

from tts_common.contract import StreamRequest, field_error
from tts_common.reference_audio import decode_reference_wav
from tts_common.settings import XttsSettings
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments
from xtts_engine.engine import XTTS_REFERENCE_RATE, Latents, Sampling, XttsEngine

logger = logging.getLogger(__name__)


class XttsRequest(Sampling, StreamRequest):
    """The contract's fields, XTTS's sampling fields and a reference clip."""

    speaker_wav: StrictStr | None = None  # base64 WAV, 1 to 30 s, for cloning


class Model:
    def __init__(self, **kwargs: Any) -> None:
        config = kwargs["config"]
        self._streamer = AudioStreamer.for_truss(kwargs)
        self.engine = XttsEngine(
            XttsSettings.load(config.get("model_metadata") or {}),
            weights_dir=Path(config["weights"][0]["mount_location"]),
            data_dir=Path(kwargs.get("data_dir") or "data"),
            lazy_data=kwargs.get("lazy_data_resolver"),
        )

    def load(self) -> None:
        self.engine.load(self._streamer.settings.max_streams)

    def _prepare(self, req: XttsRequest) -> Synthesis:
        engine = self.engine
        if req.language not in engine.languages:
            raise field_error(
                "language", f"unsupported language {req.language!r}; supported: {', '.join(engine.languages)}"
            )
        if req.voice is not None and req.speaker_wav is not None:
            raise field_error("speaker_wav", "give either voice or speaker_wav, not both")
        if req.voice is not None and req.voice not in engine.voices:
            raise field_error(
                "voice", f"unknown voice {req.voice!r}; available: {', '.join(sorted(engine.voices))}"
            )
        clip = (
            decode_reference_wav(req.speaker_wav, XTTS_REFERENCE_RATE)
            if req.speaker_wav is not None
            else None
        )
        segments = plan_segments(req.text, max_chars=engine.char_limit(req.language))
        headers: dict[str, str] = {"X-Voice": req.voice or ("cloned" if clip else engine.default_voice)}

        def voice() -> Latents:
            if clip is None:
                return engine.voices[req.voice or engine.default_voice]
            latents, cached = engine.cloned(clip.raw, lambda: clip.samples)
            headers["X-Voice-Cache"] = "hit" if cached else "miss"
            self._streamer.metrics.voice_cache(cached)
            return latents

        return Synthesis(
            model_rate=engine.sample_rate,
            chunks=engine.stream(segments, req.language, voice, req, req.seed),
            headers=headers,
        )

    def is_healthy(self) -> bool:
        return self._streamer.healthy()

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, XttsRequest, self._prepare)
