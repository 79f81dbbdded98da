"""Coqui XTTS-v2 speaking the realtime WebSocket protocol, with `voice.add` cloning.

The same engine as xtts-streaming (packages/xtts_engine). Each speakable unit is one
generation on its own view of the shared model, so TTS_MAX_STREAMS units (of any
sessions) run at once. No word timestamps: XTTS's GPT emits audio codes with no
alignment to the text, and a guess would not be honest.
"""

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.websockets import WebSocket

from tts_common.contract import RequestError, shown, validation_errors
from tts_common.realtime_protocol import ProtocolError, SessionConfig, VoiceAdded, VoiceList
from tts_common.realtime_session import RealtimeService
from tts_common.reference_audio import decode_reference_wav
from tts_common.settings import RealtimeSettings
from tts_common.truss_context import TrussContext
from xtts_engine.engine import XTTS_REFERENCE_RATE, Sampling, XttsEngine


class XttsSessionConfig(Sampling, SessionConfig):
    """The shared session fields and XTTS's sampling fields (their bounds are the HTTP request's)."""


class VoiceAdd(BaseModel):
    """`voice.add`, as LiveKit's plugin (`register_voice`) sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: StrictStr
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[\w .'-]+$")
    audio_data: StrictStr  # base64 WAV, 1 to 30 s
    audio_format: StrictStr = Field(default="wav", max_length=16)
    # Accepted for the plugin's sake: XTTS conditions on the audio alone.
    ref_text: StrictStr | None = None
    consent: StrictStr | None = None


class UploadedVoices:
    """`voice.add` and `voice.list`: voices cloned for the replica, pinned like the built-in ones."""

    def __init__(self, engine: XttsEngine):
        self._engine = engine
        self._uploaded: list[str] = []
        self._cloning = asyncio.Semaphore(1)  # model work outside the slots: one at a time

    def voices(self) -> VoiceList:
        uploaded = set(self._uploaded)
        return VoiceList(
            voices=sorted(v for v in self._engine.voices if v not in uploaded), uploaded_voices=self._uploaded
        )

    async def add_voice(self, message: dict[str, Any]) -> VoiceAdded:
        """Clone a voice from a reference clip and pin it like the built-in ones."""
        try:
            add = VoiceAdd.model_validate(message, strict=True)
        except ValidationError as exc:
            raise ProtocolError(validation_errors(exc), "voice.add") from None
        engine = self._engine
        if add.audio_format.lower() != "wav":
            raise ProtocolError.of(
                "audio_format", f"{shown(add.audio_format)} is not supported; send wav", "voice.add"
            )
        if add.name in engine.voices and add.name not in self._uploaded:
            raise ProtocolError.of("name", f"{shown(add.name)} is a built-in voice", "voice.add")
        limit = engine.settings.max_cloned_voices
        if add.name not in self._uploaded and len(self._uploaded) >= limit:
            raise ProtocolError.of(
                "name", f"{limit} voices are uploaded already; at most {limit}", "voice.add"
            )
        try:
            clip = await asyncio.to_thread(
                decode_reference_wav, add.audio_data, XTTS_REFERENCE_RATE, "audio_data"
            )
        except RequestError as exc:
            raise ProtocolError(exc.errors, "voice.add") from None
        async with self._cloning:
            latents = await asyncio.to_thread(engine.latents, clip.samples)
        engine.voices[add.name] = latents
        if add.name not in self._uploaded:
            self._uploaded.append(add.name)
        return VoiceAdded(voice={"name": add.name})


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._max_streams = truss.serving.max_streams
        core = truss.core()
        self._engine = XttsEngine.for_truss(truss, on_voice_cache=core.metrics.voice_cache)
        uploads = UploadedVoices(self._engine)
        self._realtime = RealtimeService(
            core,
            self._engine,
            XttsSessionConfig,
            RealtimeSettings.load(truss.metadata),
            truss.api_key,
            control={"voice.add": uploads.add_voice},
            voice_list=uploads.voices,
        )

    def load(self) -> None:
        self._engine.load(self._max_streams)

    def is_healthy(self) -> bool:
        return self._realtime.core.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
