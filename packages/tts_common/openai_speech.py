"""OpenAI's speech surface over the serving core: `POST /v1/audio/speech`,
`GET /v1/models` and a voice list, errors in OpenAI's shape.

A third thin transport: the HTTP transport's streamer (`streaming.py`) admits,
runs and streams; this module only translates OpenAI's request into a Speech
(the engine's checks, the text plan, the output format), its refusals into
`{"error": {"message", "type", "param", "code"}}`, and, for `stream_format:
"sse"`, the audio into `speech.audio.delta` / `speech.audio.done` events.

What real clients send, not only the reference page: `model` is one of OpenAI's
TTS names or this deployment's own id (LiveKit's OpenAI plugin picks SSE or
bytes by the model's name); `voice` is a voice of ours, one of OpenAI's voice
names (mapped to a voice of ours, by default the model's default voice), or an
object `{"id": ...}` as the SDKs send custom voices; `instructions` is accepted
and unused (neither piper nor XTTS takes a style prompt).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import replies
from .auth import REFUSAL
from .connection import REQUEST_ID_HEADER, request_id
from .contract import (
    MAX_LANGUAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    AudioFormat,
    FieldError,
    RequestError,
    check_text,
    field_error,
    parse_request,
    shown,
    validation_errors,
)
from .engine import Engine, plan
from .metrics import Transport
from .streaming import AudioStreamer, Speech
from .synthesis import Finished, SynthesisCore

logger = logging.getLogger(__name__)

# OpenAI's speech is 24 kHz mono whatever the format (`pcm`: 16-bit little-endian).
OPENAI_RATE: Final = 24000
OPENAI_MODELS: Final = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES: Final = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
MAX_INSTRUCTIONS_CHARS: Final = 4096


class VoiceId(BaseModel):
    """A custom voice as the SDKs pass one: `{"id": "..."}`."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(max_length=MAX_NAME_CHARS)


class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech`'s body, with OpenAI's names, defaults and bounds
    (`input` up to our contract's 5,000 characters), and `language` for a model
    that speaks several (XTTS; default: detected)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(min_length=1, max_length=MAX_NAME_CHARS)
    input: StrictStr = Field(max_length=MAX_TEXT_CHARS)
    voice: StrictStr | VoiceId | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: StrictStr | None = Field(default=None, max_length=MAX_INSTRUCTIONS_CHARS)
    stream_format: Literal["audio", "sse"] = "audio"
    language: StrictStr | None = Field(default=None, max_length=MAX_LANGUAGE_CHARS)

    @field_validator("input")
    @classmethod
    def _speakable(cls, value: str) -> str:
        return check_text(value)

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


class SseEvents:
    """`stream_format: "sse"`: each piece of audio a `speech.audio.delta` event
    (base64 in `audio`), then one `speech.audio.done`. No token accounting: its
    `usage` counts are 0."""

    media_type = "text/event-stream"

    def chunk(self, data: bytes) -> bytes:
        return _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})

    def end(self, finished: Finished) -> bytes:
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        return _event({"type": "speech.audio.done", "usage": usage})


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def openai_error(
    status: int,
    message: str,
    rid: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), REQUEST_ID_HEADER: rid})


# Our statuses in OpenAI's terms: a schema problem is its 400, not 422.
_CODES: Final = {404: "model_not_found", 413: "request_too_large"}


class OpenAIReplies(replies.Replies):
    """Refusals in OpenAI's error shape, naming the field in `param`."""

    def unauthorized(self, rid: str) -> Response:
        return openai_error(
            401, REFUSAL, rid, code="invalid_api_key", headers={"WWW-Authenticate": 'Bearer realm="tts"'}
        )

    def request_error(self, exc: RequestError, rid: str) -> Response:
        logger.info("[%s] rejected request (%s): %s", rid, exc.status, exc)
        status = 400 if exc.status == 422 else exc.status
        field = exc.errors[0]["field"]
        return openai_error(status, str(exc), rid, param=field, code=_CODES.get(status))

    def busy(self, message: str, rid: str) -> Response:
        return openai_error(
            503, message, rid, kind="server_error", code="overloaded", headers={"Retry-After": "1"}
        )

    def internal_error(self, what: str, rid: str) -> Response:
        message = f"{what}; the server log has details under request id {rid}"
        return openai_error(500, message, rid, kind="server_error")


REPLIES = OpenAIReplies()


class OpenAISpeech:
    """OpenAI's speech surface for one engine. `model_id`: this deployment's own
    model name (also answered to OpenAI's TTS names); `options(speed)`: the
    engine's own options for a request's speed (its bounds are the engine's);
    `voice_map`: OpenAI's voice names to voices of ours (unlisted: the default)."""

    def __init__(
        self,
        engine: Engine,
        core: SynthesisCore,
        key: str | None,
        model_id: str,
        options: Callable[[float], Any],
        voice_map: Mapping[str, str] | None = None,
        created: int | None = None,
    ):
        self._engine = engine
        self._model_id = model_id
        self._options = options
        self._voice_map = dict(voice_map or {})
        self._created = int(time.time()) if created is None else created
        self.core = core
        self._streamer = AudioStreamer(core, key, REPLIES, Transport.openai)

    @property
    def model_ids(self) -> list[str]:
        return [self._model_id, *OPENAI_MODELS]

    async def speech(self, request: Request) -> Response:
        return await self._streamer.respond(request, self.prepare)

    def prepare(self, body: bytes) -> Speech:
        req = parse_request(body, SpeechRequest)
        self._check_model(req.model)
        try:
            voice = self._voice(req.voice_name)
            options = self._options(req.speed)
            synthesis = plan(self._engine, req.input, req.language, voice, options)
        except FieldError as exc:
            raise field_error(exc.field, exc.message) from None
        except ValidationError as exc:  # the engine's own bounds (speed)
            raise RequestError(400, validation_errors(exc)) from None
        framing = SseEvents() if req.stream_format == "sse" else None
        return Speech(synthesis, AudioFormat(req.response_format), OPENAI_RATE, framing)

    def _check_model(self, model: str) -> None:
        # OpenAI's dated snapshots (gpt-4o-mini-tts-2025-12-15) name the same model.
        if model in self.model_ids or model.startswith("gpt-4o-mini-tts-"):
            return
        known = ", ".join(self.model_ids)
        message = f"the model {shown(model)} does not exist; models: {known}"
        raise RequestError(404, [{"field": "model", "message": message}])

    def _voice(self, name: str | None) -> str | None:
        """A voice for the engine (None: its default): one of OpenAI's names that is
        not a voice of ours becomes the voice it is mapped to; any other name goes
        as it is, for the engine's own check (`plan`) to name the voices there are."""
        if name is not None and name.lower() in OPENAI_VOICES and name not in self._engine.voice_names():
            return self._voice_map.get(name.lower())
        return name

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model(m) for m in self.model_ids]})

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        try:
            self._check_model(model_id)
        except RequestError as exc:
            return REPLIES.request_error(exc, request_id(request))
        return JSONResponse(self._model(model_id))

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": self._created, "owned_by": "tts-stack"}

    async def voices(self, request: Request) -> Response:
        """Our voices, and OpenAI's names with the voice each speaks in."""
        ours = self._engine.voice_names()
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": name, "object": "audio.voice", "name": name} for name in ours],
                "voices": ours,  # Kokoro-FastAPI's shape, which several UIs read
                "aliases": {name: self._voice_map.get(name) or "default" for name in OPENAI_VOICES},
            }
        )
