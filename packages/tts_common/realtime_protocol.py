"""The realtime (WebSocket) protocol's messages, as LiveKit's own Baseten plugin
(`livekit-plugins-baseten`, `TTS(model="qwen3-tts")`) speaks it.

Client text frames, each a JSON object with a `type`:
  session.config  voice, language, speed, ... (sticky for the socket; may be sent
                  again between turns)
  input.text      {"text": "..."}: more text, in any pieces
  input.done      a flush: speak what is buffered, answer session.done, keep the socket
  session.close   stop at once and close
  voice.list      answered with the voices

Server frames: `audio.start`, binary PCM s16le mono, `audio.done` (per speakable
unit, `sentence_index` counting from 0 in each flush), `session.done`, `voice.list`,
`error`. Every model field and bound lives here or in the Truss's subclass of
`SessionConfig`; nothing here knows a model.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, field_validator

from .contract import (
    DEFAULT_SAMPLE_RATE,
    MAX_LANGUAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    SampleRate,
    shown,
    validation_errors,
)


class ProtocolError(Exception):
    """A client message the server refuses: answered with an `error` event naming
    the field(s) at fault; the session goes on."""

    def __init__(self, errors: list[dict[str, str]], message_type: str | None = None):
        where = f"{message_type}: " if message_type else ""
        super().__init__(where + "; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.message_type = message_type

    @classmethod
    def of(cls, field: str, message: str, message_type: str | None = None) -> ProtocolError:
        return cls([{"field": field, "message": message}], message_type)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionConfig(_Message):
    """`session.config`: what the plugin sends, and the sample rate. A Truss
    subclasses it for its own fields and bounds (e.g. piper's `speed` range); an
    unknown field is refused by name, as the HTTP contract does."""

    type: Literal["session.config"] = "session.config"
    voice: StrictStr | None = Field(default=None, max_length=MAX_NAME_CHARS)
    # "Auto" (the plugin's default) lets the model choose; the Truss says which others it takes.
    language: StrictStr | None = Field(default=None, max_length=MAX_LANGUAGE_CHARS)
    speed: float = Field(default=1.0, gt=0)
    # Accepted as the plugin sends them; only streamed raw PCM is produced.
    task_type: Literal["Base", "CustomVoice", "VoiceDesign"] | None = None
    response_format: Literal["pcm"] = "pcm"
    stream_audio: Literal[True] = True
    sample_rate: SampleRate = DEFAULT_SAMPLE_RATE
    timestamp_type: Literal["none", "word"] = "none"
    # "sync": a unit's word times come in its audio.done, after its audio.
    timestamp_transport_strategy: Literal["sync"] = "sync"

    @property
    def word_timestamps(self) -> bool:
        return self.timestamp_type == "word"


class InputText(_Message):
    type: Literal["input.text"]
    text: StrictStr = Field(max_length=MAX_TEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _no_controls(cls, value: str) -> str:
        # A piece may be a lone space or comma (LLM tokens), so only control
        # characters are refused here; what is unspeakable is simply not spoken.
        for index, char in enumerate(value):
            if ord(char) < 32 and char not in "\t\n\r" or 0x7F <= ord(char) < 0xA0:
                raise ValueError(f"contains control character U+{ord(char):04X} at index {index}")
        return value


class InputDone(_Message):
    type: Literal["input.done"]


class SessionClose(_Message):
    type: Literal["session.close"]


class VoiceListRequest(_Message):
    type: Literal["voice.list"]


ClientMessage = SessionConfig | InputText | InputDone | SessionClose | VoiceListRequest
_KINDS: dict[str, type[_Message]] = {
    "input.text": InputText,
    "input.done": InputDone,
    "session.close": SessionClose,
    "voice.list": VoiceListRequest,
}


def message_type(raw: str) -> tuple[str, dict[str, Any]]:
    """The `type` of a client text frame and its object, or ProtocolError."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError.of("message", f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError.of("message", "must be a JSON object with a 'type'")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError.of("type", "missing, or not a string")
    return kind, data


def parse_message(
    kind: str, data: dict[str, Any], config_model: type[SessionConfig], extra_kinds: tuple[str, ...] = ()
) -> ClientMessage | dict[str, Any]:
    """A validated client message; an `extra_kinds` message (a Truss's own control
    message, e.g. voice.add) comes back as its raw object for the Truss to check."""
    if kind in extra_kinds:
        return data
    model: type[_Message] | None = config_model if kind == "session.config" else _KINDS.get(kind)
    if model is None:
        known = ", ".join(["session.config", *_KINDS, *extra_kinds])
        raise ProtocolError.of("type", f"unknown message type {shown(kind)}; expected one of {known}")
    try:
        # Strict, as over HTTP: "1.0" is not a speed and true is not a sample rate.
        parsed: ClientMessage = model.model_validate(data, strict=True)  # type: ignore[assignment]
    except ValidationError as exc:
        raise ProtocolError(validation_errors(exc), kind) from None
    return parsed


# Server events ------------------------------------------------------------------


class _Event(BaseModel):
    def json_text(self) -> str:
        return self.model_dump_json(exclude_none=True)


class WordAlignment(_Event):
    """Word times in seconds from the start of one unit's audio, one per word of
    the text as sent."""

    words: list[str]
    word_start_times_seconds: list[float]
    word_end_times_seconds: list[float]


class TimestampInfo(_Event):
    word_alignment: WordAlignment


class AudioStart(_Event):
    type: Literal["audio.start"] = "audio.start"
    sentence_index: int
    sample_rate: int
    text: str


class AudioDone(_Event):
    type: Literal["audio.done"] = "audio.done"
    sentence_index: int
    audio_seconds: float
    timestamp_info: TimestampInfo | None = None


class SessionDone(_Event):
    """Answers an input.done once everything it flushed has been sent."""

    type: Literal["session.done"] = "session.done"
    sentences: int  # units spoken in this flush (0 for an empty one)


class VoiceList(_Event):
    type: Literal["voice.list"] = "voice.list"
    voices: list[str]
    uploaded_voices: list[str] = Field(default_factory=list)


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    message: str
    field: str | None = None
    errors: list[dict[str, str]] | None = None
    sentence_index: int | None = None
    fatal: StrictBool = False  # the server closes the socket after it

    @classmethod
    def of(cls, exc: ProtocolError) -> ErrorEvent:
        return cls(message=str(exc), field=exc.errors[0]["field"], errors=exc.errors)


class VoiceAdded(_Event):
    """Answers a `voice.add` (a Truss that clones voices): the voice is usable at once."""

    type: Literal["voice.add"] = "voice.add"
    success: StrictBool = True
    voice: dict[str, str]
