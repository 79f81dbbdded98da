"""The streaming request contract shared by every streaming Truss.

One source of truth for limits and defaults: the client, the LiveKit plugin and
docs/contract.md describe exactly what is declared here.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

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

from .codecs import check_rate, codec_of

MAX_TEXT_CHARS = 5000
# Longest voice name and language tag a request may give.
MAX_NAME_CHARS = 128
MAX_LANGUAGE_CHARS = 32
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_SAMPLE_RATE: Final = 24000
MULAW_SAMPLE_RATE: Final = 8000

SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]


class AudioFormat(StrEnum):
    pcm = "pcm"  # raw signed 16-bit little-endian mono
    wav = "wav"  # streaming WAV header (unknown length), then the same PCM
    mulaw = "mulaw"  # G.711 mu-law, 8 kHz, for telephony
    # Compressed, streamed frame by frame (codecs.py)
    opus = "opus"  # Opus in Ogg
    mp3 = "mp3"
    flac = "flac"
    aac = "aac"  # AAC in ADTS


def content_type(fmt: AudioFormat, sample_rate: int) -> str:
    if fmt is AudioFormat.pcm:
        return f"audio/pcm;rate={sample_rate}"
    if fmt is AudioFormat.wav:
        return "audio/wav"
    if fmt is AudioFormat.mulaw:
        return f"audio/PCMU;rate={sample_rate}"
    codec = codec_of(fmt)
    assert codec is not None
    return codec.content_type


def bytes_per_second(fmt: AudioFormat, sample_rate: int) -> int:
    """About how many bytes a second of audio takes on the wire."""
    codec = codec_of(fmt)
    if codec is not None:
        return (codec.bit_rate or sample_rate * 8) // 8  # lossless: about half of PCM
    return sample_rate * (1 if fmt is AudioFormat.mulaw else 2)


class StreamRequest(BaseModel):
    """Fields every streaming Truss accepts. Trusses subclass it for their own fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # `prompt`: Baseten's default TTS shape (LiveKit's Baseten plugins, Python and Node).
    text: StrictStr = Field(max_length=MAX_TEXT_CHARS, validation_alias=AliasChoices("text", "prompt"))
    voice: StrictStr | None = Field(
        default=None, max_length=MAX_NAME_CHARS, validation_alias=AliasChoices("voice", "speaker")
    )
    language: StrictStr = Field(default="en", max_length=MAX_LANGUAGE_CHARS)
    format: AudioFormat = AudioFormat.pcm
    sample_rate: SampleRate | None = None
    # Baseten's default shape sends these beside `prompt`: accepted with their bounds, and
    # used by a model that has a meaning for them (XTTS declares its own); others ignore them.
    temperature: float | None = Field(default=None, gt=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("text")
    @classmethod
    def _text_speakable(cls, value: str) -> str:
        return check_text(value)

    @model_validator(mode="after")
    def _resolve_sample_rate(self) -> StreamRequest:
        if self.format is AudioFormat.mulaw:
            if self.sample_rate not in (None, MULAW_SAMPLE_RATE):
                raise FieldError("sample_rate", f"mulaw is always {MULAW_SAMPLE_RATE} Hz")
            self.sample_rate = MULAW_SAMPLE_RATE
        elif self.sample_rate is None:
            self.sample_rate = DEFAULT_SAMPLE_RATE
        problem = check_rate(self.format, self.sample_rate)
        if problem is not None:
            raise FieldError("sample_rate", problem)
        return self

    @property
    def output_rate(self) -> int:
        assert self.sample_rate is not None  # set by the validator
        return self.sample_rate


# Line breaks and tabs are layout; every other control character is refused.
_LAYOUT_CONTROLS = frozenset("\t\n\r")


def check_text(value: str) -> str:
    """Refuse text with control characters or with nothing speakable in it.

    Control characters (NUL, escape codes, ...) are refused rather than removed:
    they mean the caller sent something other than the text it meant. Text made
    only of whitespace, zero-width and format characters (after NFKC
    normalisation) has nothing a voice could say.
    """
    for index, char in enumerate(value):
        if unicodedata.category(char) == "Cc" and char not in _LAYOUT_CONTROLS:
            raise ValueError(
                f"contains control character U+{ord(char):04X} at index {index}; "
                "only tab, line feed and carriage return are allowed"
            )
    if not any(_speakable(char) for char in unicodedata.normalize("NFKC", value)):
        raise ValueError("has nothing speakable (only whitespace, zero-width or format characters)")
    return value


def _speakable(char: str) -> bool:
    # Z*: separators (spaces); C*: control, format (zero-width), surrogate,
    # private use and unassigned code points.
    return not char.isspace() and unicodedata.category(char)[0] not in "ZC"


# A client's value echoed in an error or a log line is cut to this many characters,
# so a hostile value (a megabyte-long voice name) costs no more than a short one.
MAX_SHOWN_CHARS = 64


def shown(value: object) -> str:
    """`value` as an error message quotes it: its repr, cut to MAX_SHOWN_CHARS."""
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "\u2026"


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


def _field_name(loc: tuple[int | str, ...]) -> str:
    """The field's path; a client's own key (an unknown field) cut as `shown` cuts values."""
    return _cut(".".join(str(part) for part in loc) or "body")


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
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


def _body_error(err: Any) -> str:
    if err["type"] == "model_type":
        return "must be a JSON object"
    message = err["msg"].removeprefix("Invalid JSON: ")
    if "hex escape" in message:  # jiter's words for a lone surrogate such as \ud800
        message += " (\\uD800 to \\uDFFF escapes must come as surrogate pairs)"
    elif "code point" in message:
        message += " (the body must be UTF-8 and each \\u escape a character)"
    elif "recursion limit" in message:
        message = f"nested too deeply: {message}"
    return f"invalid JSON: {message}"


def check_body_size(body: bytes, limit: int) -> None:
    """A 413 for a body over `limit` bytes, before it is parsed."""
    if len(body) > limit:
        raise RequestError(413, [{"field": "body", "message": f"is {len(body)} bytes; at most {limit}"}])


def parse_request(body: bytes, model: type[RequestT]) -> RequestT:
    """Parse a raw HTTP body into `model`, or raise RequestError (400 or 422).

    pydantic's own JSON parser (jiter) reads the body: it refuses nesting deeper
    than 200 levels, invalid UTF-8 and lone surrogates as invalid JSON (400),
    where json.loads would recurse until RecursionError or pass a lone surrogate
    on to the model.
    """
    try:
        # Strict: "1.5" is not a number and true is not a sample rate.
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        body_errors = [e for e in exc.errors(include_url=False) if e["type"] in _BODY_ERRORS and not e["loc"]]
        if body_errors:
            raise RequestError(400, [{"field": "body", "message": _body_error(body_errors[0])}]) from exc
        raise RequestError(422, validation_errors(exc)) from exc


_BODY_ERRORS = frozenset({"json_invalid", "json_type", "model_type"})


def field_error(field: str, message: str) -> RequestError:
    """A 422 for a check the schema cannot express (an unknown voice, say)."""
    return RequestError(422, [{"field": field, "message": message}])
