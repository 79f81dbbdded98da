"""Non-streaming answers for Trusses that return whole clips (batch synthesis).

The streaming Trusses send audio as it is produced (`streaming.py`); a batch
Truss validates the whole request, generates every clip, then answers once:
JSON with base64 WAVs, or one clip as binary. Errors keep the contract's shape.
"""

from __future__ import annotations

import base64
import struct
from typing import Optional

import numpy as np
import soxr
from starlette.responses import Response

from .audio import float_to_pcm16, pcm16_to_mulaw
from .contract import AudioFormat, content_type


def resample(samples: np.ndarray, model_rate: int, output_rate: int) -> np.ndarray:
    """One-shot resampling of a whole clip (same soxr quality as the streaming path)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if model_rate == output_rate:
        return samples
    return soxr.resample(samples, model_rate, output_rate, quality="HQ").astype(np.float32)


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """A complete PCM16 WAV file: unlike the streaming header, sizes are exact."""
    block_align = channels * 2
    header = b"".join(
        [
            b"RIFF",
            struct.pack("<I", 36 + len(pcm16)),
            b"WAVEfmt ",
            struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16),
            b"data",
            struct.pack("<I", len(pcm16)),
        ]
    )
    return header + pcm16


def encode_clip(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """A finished float clip at `sample_rate` in the wire format `fmt`."""
    pcm = float_to_pcm16(samples)
    if fmt is AudioFormat.wav:
        return wav_bytes(pcm, sample_rate)
    if fmt is AudioFormat.mulaw:
        return pcm16_to_mulaw(np.frombuffer(pcm, dtype="<i2"))
    return pcm


def clip_response(
    samples: np.ndarray, sample_rate: int, fmt: AudioFormat, headers: Optional[dict[str, str]] = None
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
    return base64.b64encode(wav_bytes(float_to_pcm16(samples), sample_rate)).decode("ascii")
