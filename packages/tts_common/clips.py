"""Whole-clip answers for Trusses that return finished clips (batch synthesis).

The streaming Trusses send audio as it is produced (`streaming.py`); a batch
Truss validates the whole request, generates every clip, then answers once:
JSON with base64 WAVs, or one clip as binary. Errors keep the contract's shape.
"""

from __future__ import annotations

import base64

import numpy as np
from starlette.responses import Response

from .audio import float_to_int16, float_to_pcm16, pcm16_to_mulaw, wav_header
from .contract import AudioFormat, content_type


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete PCM16 WAV file: unlike the streaming header, sizes are exact."""
    pcm = float_to_pcm16(samples)
    return wav_header(sample_rate, data_size=len(pcm)) + pcm


def encode_clip(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """A finished float clip at `sample_rate` in the wire format `fmt`."""
    if fmt is AudioFormat.wav:
        return wav_bytes(samples, sample_rate)
    if fmt is AudioFormat.mulaw:
        return pcm16_to_mulaw(float_to_int16(samples))
    return float_to_pcm16(samples)


def clip_response(
    samples: np.ndarray, sample_rate: int, fmt: AudioFormat, headers: dict[str, str] | None = None
) -> Response:
    """One clip as a binary body with the contract's Content-Type and headers."""
    return Response(
        content=encode_clip(samples, sample_rate, fmt),
        media_type=content_type(fmt, sample_rate),
        headers={
            **(headers or {}),
            "X-Sample-Rate": str(sample_rate),
            "X-Audio-Format": fmt.value,
            "Cache-Control": "no-store",
        },
    )


def wav_base64(samples: np.ndarray, sample_rate: int) -> str:
    return base64.b64encode(wav_bytes(samples, sample_rate)).decode("ascii")
