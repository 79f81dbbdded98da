"""`voice.add`, `voice.delete` and `voice.list` on xtts-realtime: voices cloned from
a caller's clip, usable at once, and visible to that caller alone.

Whose is whose (XTTS_VOICE_SCOPE): by default one namespace per API key presented
(checked by this Truss, or by Baseten in front of it): every session presenting
the key shares its voices, as LiveKit's `register_voice` then `TTS` on separate
sockets need; a session presenting no key gets a namespace of its own, dropped
when it ends. "session" makes every session its own; "shared" puts every caller
in one namespace, for a single-tenant deployment. Bounds (tts_common.voice_store):
XTTS_MAX_VOICES_PER_CALLER per namespace, `max_cloned_voices` in the replica,
XTTS_VOICE_TTL_S unused before a voice is dropped. Cloning runs the model, so it
is admitted like synthesis: it takes a slot (or gets `busy`).
"""

import asyncio
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from tts_common.contract import FieldError, RequestError, shown, validation_errors
from tts_common.engine import Engine
from tts_common.metrics import Transport
from tts_common.realtime_protocol import ProtocolError, VoiceAdded, VoiceList
from tts_common.realtime_session import Caller, ControlHandler, Extension
from tts_common.reference_audio import decode_reference_wav
from tts_common.slots import Busy
from tts_common.synthesis import SynthesisCore
from tts_common.voice_store import ID_PREFIX, VoiceStore
from xtts_engine.engine import XTTS_REFERENCE_RATE, XttsEngine

_NAME = Field(min_length=1, max_length=64, pattern=r"^[\w .'-]+$")


class VoiceAdd(BaseModel):
    """`voice.add`, as LiveKit's plugin (`register_voice`) sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: StrictStr
    name: StrictStr = _NAME
    audio_data: StrictStr  # base64 WAV, 1 to 30 s
    audio_format: StrictStr = Field(default="wav", max_length=16)
    # Accepted for the plugin's sake: XTTS conditions on the audio alone.
    ref_text: StrictStr | None = None
    consent: StrictStr | None = None


class VoiceDelete(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: StrictStr
    name: StrictStr = _NAME


class UploadedVoices(Extension):
    def __init__(self, engine: XttsEngine, core: SynthesisCore):
        self._engine = engine
        self._core = core
        settings = engine.settings
        self._scope = settings.voice_scope
        self._store = VoiceStore(
            settings.max_voices_per_caller, settings.max_cloned_voices, settings.voice_ttl_s, engine.unpin
        )
        self.messages: dict[str, ControlHandler] = {"voice.add": self.add, "voice.delete": self.delete}

    def scope(self, caller: Caller) -> str:
        if self._scope == "shared":
            return "shared"
        if self._scope == "caller" and caller.key_id is not None:
            return f"key:{caller.key_id}"
        return f"session:{caller.rid}"

    def voice_list(self, caller: Caller, engine: Engine) -> VoiceList:
        mine = self._store.names(self.scope(caller))
        return VoiceList(voices=engine.voice_names(), uploaded_voices=mine)

    def voice(self, caller: Caller, name: str | None) -> str | None:
        if name is None:
            return None
        if name.startswith(ID_PREFIX):  # an engine-side id is no client's voice name
            raise FieldError("voice", f"unknown voice {shown(name)}")
        found = self._store.lookup(self.scope(caller), name)
        return found or name  # a built-in (or unknown: the engine says so)

    def closed(self, caller: Caller) -> None:
        if self.scope(caller).startswith("session:"):
            self._store.drop_scope(self.scope(caller))

    async def add(self, message: dict[str, Any], caller: Caller) -> VoiceAdded:
        """Clone a voice from a reference clip and pin it for this caller."""
        add = _parse(VoiceAdd, message, "voice.add")
        if add.audio_format.lower() != "wav":
            raise ProtocolError.of(
                "audio_format", f"{shown(add.audio_format)} is not supported; send wav", "voice.add"
            )
        if add.name in self._engine.voice_names():
            raise ProtocolError.of("name", f"{shown(add.name)} is a built-in voice", "voice.add")
        try:
            clip = await asyncio.to_thread(
                decode_reference_wav, add.audio_data, XTTS_REFERENCE_RATE, "audio_data"
            )
            voice_id = self._store.reserve(self.scope(caller), add.name)  # no await since the check
        except RequestError as exc:
            raise ProtocolError(exc.errors, "voice.add") from None
        except FieldError as exc:
            raise ProtocolError.of(exc.field, exc.message, "voice.add") from None
        try:
            lease = await self._core.admit(Transport.websocket, caller.rid)
        except Busy as exc:
            self._store.abandon(voice_id)
            raise ProtocolError.of("message", str(exc), "voice.add") from None
        try:
            latents = await asyncio.to_thread(self._engine.latents, clip.samples)
        except BaseException:
            self._store.abandon(voice_id)
            raise
        finally:
            lease.release()
        self._engine.pin(voice_id, latents)
        self._store.commit(voice_id)
        return VoiceAdded(voice={"name": add.name})

    async def delete(self, message: dict[str, Any], caller: Caller) -> dict[str, Any]:
        name = _parse(VoiceDelete, message, "voice.delete").name
        if not self._store.delete(self.scope(caller), name):
            raise ProtocolError.of("name", f"you have no voice {shown(name)}", "voice.delete")
        return {"type": "voice.delete", "success": True, "voice": {"name": name}}


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], message: dict[str, Any], kind: str) -> M:
    try:
        return model.model_validate(message, strict=True)
    except ValidationError as exc:
        raise ProtocolError(validation_errors(exc), kind) from None
