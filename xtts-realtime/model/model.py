"""Coqui XTTS-v2 speaking the realtime WebSocket protocol, with `voice.add` cloning.

The same engine as xtts-streaming (packages/xtts_engine). Each speakable unit is one
generation on its own view of the shared model, so TTS_MAX_STREAMS units (of any
sessions) run at once. No word timestamps: XTTS's GPT emits audio codes with no
alignment to the text, and a guess would not be honest.
"""

import asyncio
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.websockets import WebSocket

from tts_common.contract import RequestError, validation_errors
from tts_common.realtime_protocol import ProtocolError, SessionConfig, VoiceAdded, VoiceList
from tts_common.realtime_session import RealtimeService, Utterance
from tts_common.reference_audio import decode_reference_wav
from tts_common.settings import XttsSettings
from xtts_engine.engine import XTTS_REFERENCE_RATE, Sampling, XttsEngine

# "Auto" (LiveKit's plugin's default) cannot be detected by XTTS: it speaks this.
AUTO_LANGUAGE = "en"


class XttsSessionConfig(Sampling, SessionConfig):
    """The shared session fields and XTTS's sampling fields (their bounds are the HTTP request's)."""


class VoiceAdd(BaseModel):
    """`voice.add`, as LiveKit's plugin (`register_voice`) sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: StrictStr
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[\w .'-]+$")
    audio_data: StrictStr  # base64 WAV, 1 to 30 s
    audio_format: StrictStr = "wav"
    # Accepted for the plugin's sake: XTTS conditions on the audio alone.
    ref_text: StrictStr | None = None
    consent: StrictStr | None = None


class XttsRealtime:
    """The session's view of the engine (tts_common.realtime_session.RealtimeModel)."""

    config_model = XttsSessionConfig

    def __init__(self, engine: XttsEngine):
        self._engine = engine
        self._uploaded: list[str] = []
        self._cloning = asyncio.Semaphore(1)  # model work outside the slots: one at a time

    @property
    def max_unit_chars(self) -> int:
        return self._engine.char_limit(AUTO_LANGUAGE)

    def language(self, config: SessionConfig) -> str:
        wanted = config.language
        return AUTO_LANGUAGE if wanted is None or wanted.lower() == "auto" else wanted

    def check(self, config: XttsSessionConfig) -> None:
        engine = self._engine
        if config.word_timestamps:
            raise ProtocolError.of(
                "timestamp_type", 'XTTS gives no word timestamps; send "none"', config.type
            )
        if config.voice is not None and config.voice not in engine.voices:
            available = ", ".join(sorted(engine.voices))
            raise ProtocolError.of(
                "voice", f"unknown voice {config.voice!r}; available: {available}", config.type
            )
        if self.language(config) not in engine.languages:
            raise ProtocolError.of(
                "language",
                f"unsupported language {config.language!r}; supported: Auto, {', '.join(engine.languages)}",
                config.type,
            )

    def voices(self) -> VoiceList:
        uploaded = set(self._uploaded)
        return VoiceList(
            voices=sorted(v for v in self._engine.voices if v not in uploaded), uploaded_voices=self._uploaded
        )

    def utterance(self, text: str, config: XttsSessionConfig, in_hand_s: float) -> Utterance | None:
        engine = self._engine
        if not any(c.isalnum() for c in text):
            return None
        voice = engine.voices[config.voice or engine.default_voice]
        language = self.language(config)

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            for chunk in engine.generate(engine.view(config.seed), text, language, voice, config):
                if cancel.is_set():
                    return
                yield chunk

        return Utterance(engine.sample_rate, chunks)

    async def add_voice(self, message: dict[str, Any]) -> VoiceAdded:
        """Clone a voice from a reference clip and pin it like the built-in ones."""
        try:
            add = VoiceAdd.model_validate(message, strict=True)
        except ValidationError as exc:
            raise ProtocolError(validation_errors(exc), "voice.add") from None
        engine = self._engine
        if add.audio_format.lower() != "wav":
            raise ProtocolError.of(
                "audio_format", f"{add.audio_format!r} is not supported; send wav", "voice.add"
            )
        if add.name in engine.voices and add.name not in self._uploaded:
            raise ProtocolError.of("name", f"{add.name!r} is a built-in voice", "voice.add")
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
        config = kwargs["config"]
        self._engine = XttsEngine(
            XttsSettings.load(config.get("model_metadata") or {}),
            weights_dir=Path(config["weights"][0]["mount_location"]),
            data_dir=Path(kwargs.get("data_dir") or "data"),
            lazy_data=kwargs.get("lazy_data_resolver"),
        )
        realtime = XttsRealtime(self._engine)
        self._realtime = RealtimeService.for_truss(
            kwargs, realtime, control={"voice.add": realtime.add_voice}
        )

    def load(self) -> None:
        self._engine.load(self._realtime.serving.max_streams)

    def is_healthy(self) -> bool:
        return self._realtime.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
