"""The streaming request contract shared by every streaming Truss.

One source of truth for limits and defaults: the client, the LiveKit plugin and
the README describe exactly what is declared here.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal, Optional, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_TEXT_CHARS = 5000
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_SAMPLE_RATE = 24000
MULAW_SAMPLE_RATE = 8000

SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]


class AudioFormat(str, Enum):
    pcm = "pcm"  # raw signed 16-bit little-endian mono
    wav = "wav"  # streaming WAV header (unknown length), then the same PCM
    mulaw = "mulaw"  # G.711 mu-law, 8 kHz, for telephony


def content_type(fmt: AudioFormat, sample_rate: int) -> str:
    if fmt is AudioFormat.pcm:
        return f"audio/pcm;rate={sample_rate}"
    if fmt is AudioFormat.wav:
        return "audio/wav"
    return f"audio/PCMU;rate={sample_rate}"


class StreamRequest(BaseModel):
    """Fields every streaming Truss accepts. Trusses subclass it for their own fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: StrictStr = Field(max_length=MAX_TEXT_CHARS)
    voice: Optional[StrictStr] = Field(
        default=None, validation_alias=AliasChoices("voice", "speaker")
    )
    language: StrictStr = "en"
    format: AudioFormat = AudioFormat.pcm
    sample_rate: Optional[SampleRate] = None

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain non-whitespace text")
        return value

    @model_validator(mode="after")
    def _resolve_sample_rate(self) -> "StreamRequest":
        if self.format is AudioFormat.mulaw:
            if self.sample_rate not in (None, MULAW_SAMPLE_RATE):
                raise FieldError(
                    "sample_rate", f"mulaw is always {MULAW_SAMPLE_RATE} Hz"
                )
            self.sample_rate = MULAW_SAMPLE_RATE
        elif self.sample_rate is None:
            self.sample_rate = DEFAULT_SAMPLE_RATE
        return self

    @property
    def output_rate(self) -> int:
        assert self.sample_rate is not None  # set by the validator
        return self.sample_rate


class FieldError(ValueError):
    """A request problem that names the field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RequestError(Exception):
    """A 4xx answer: status, and every problem found, each naming its field."""

    def __init__(self, status: int, errors: list[dict[str, str]]):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.status = status
        self.errors = errors

    def body(self) -> dict[str, Any]:
        first = self.errors[0]
        return {
            "error": str(self),
            "field": first["field"],
            "errors": self.errors,
        }


def _field_name(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _errors_from_validation(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            errors.append({"field": ctx_error.field, "message": ctx_error.message})
            continue
        field = _field_name(err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "field required"
        else:
            message = err["msg"].removeprefix("Value error, ")
        errors.append({"field": field, "message": message})
    return errors


RequestT = TypeVar("RequestT", bound=BaseModel)


def parse_request(body: bytes, model: type[RequestT]) -> RequestT:
    """Parse a raw HTTP body into `model`, or raise RequestError (400 or 422)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, [{"field": "body", "message": f"invalid JSON: {exc}"}])
    if not isinstance(payload, dict):
        raise RequestError(
            400, [{"field": "body", "message": "must be a JSON object"}]
        )
    try:
        # Strict: "1.5" is not a number and true is not a sample rate.
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise RequestError(422, _errors_from_validation(exc))


def field_error(field: str, message: str) -> RequestError:
    """A 422 for a check the schema cannot express (an unknown voice, say)."""
    return RequestError(422, [{"field": field, "message": message}])
