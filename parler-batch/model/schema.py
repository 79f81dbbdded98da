"""parler-batch's request schema: one item, or a batch of items answered as JSON.

Limits and checks shared with the streaming Trusses (sample rates, blank text,
error shapes) come from tts_common.contract.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from tts_common.contract import AudioFormat, FieldError, SampleRate, check_text, parse_request, shown

# mini-v1 stops at ~30 s of audio (generation_config max_length 2580 frames at
# 86 Hz); 400 characters is about 25 s of speech.
MAX_TEXT_CHARS = 400
MAX_DESCRIPTION_CHARS = 500
MAX_SEED = 2**63 - 1
BINARY_FORMATS = (AudioFormat.wav, AudioFormat.pcm)


class ParlerItem(BaseModel):
    """One clip: what to say, how it should sound, and optionally a seed."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(max_length=MAX_TEXT_CHARS)
    description: StrictStr = Field(max_length=MAX_DESCRIPTION_CHARS)
    # Same text, description and seed give the same audio, alone or in a batch.
    seed: StrictInt | None = Field(default=None, ge=0, le=MAX_SEED)

    @field_validator("text", "description")
    @classmethod
    def _speakable(cls, value: str) -> str:
        return check_text(value)


def _check_format(value: str, batch: bool) -> str:
    supported = ["json"] if batch else ["json", *(f.value for f in BINARY_FORMATS)]
    if value not in supported:
        hint = "; a batch always answers JSON" if batch and value in ("wav", "pcm") else ""
        raise FieldError(
            "format", f"unsupported format {shown(value)}; supported: {', '.join(supported)}{hint}"
        )
    return value


class SingleRequest(ParlerItem):
    """One item; `format` json (base64 WAV in JSON), wav or pcm (binary body)."""

    format: StrictStr = "json"
    sample_rate: SampleRate | None = None  # default: the model's own rate

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _check_format(value, batch=False)


class BatchRequest(BaseModel):
    """Up to `max_items` items, answered as JSON in item order."""

    model_config = ConfigDict(extra="forbid")
    max_items: ClassVar[int] = 16  # set from model_metadata.max_batch_items

    items: list[ParlerItem] = Field(min_length=1)
    format: StrictStr = "json"
    sample_rate: SampleRate | None = None

    @field_validator("items", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        # Checked before the items themselves, so an oversized batch costs nothing.
        if isinstance(value, list) and len(value) > cls.max_items:
            raise FieldError("items", f"at most {cls.max_items} items per request, got {len(value)}")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _check_format(value, batch=True)


def parse_parler_request(body: bytes, batch_model: type[BatchRequest]) -> SingleRequest | BatchRequest:
    """A body with an `items` key is a batch; anything else is one item."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None  # parse_request answers the 400
    if isinstance(payload, dict) and "items" in payload:
        return parse_request(body, batch_model)
    return parse_request(body, SingleRequest)
