"""Audio encoding shared by both kinds of answer: resampling, PCM16, mu-law, WAV header."""

from __future__ import annotations

import struct

import numpy as np
import soxr

from .codecs import CompressedStream, codec_of
from .contract import AudioFormat

_UNKNOWN_SIZE = 0xFFFFFFFF  # what streaming WAV writers put in the size fields


def wav_header(sample_rate: int, data_size: int | None = None, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header: exact sizes for a whole clip of `data_size` bytes,
    or sizes that say 'unknown length' for a stream (data_size None)."""
    block_align = channels * bits // 8
    riff_size = _UNKNOWN_SIZE if data_size is None else 36 + data_size
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", riff_size),
            b"WAVEfmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                1,
                channels,
                sample_rate,
                sample_rate * block_align,
                block_align,
                bits,
            ),
            b"data",
            struct.pack("<I", _UNKNOWN_SIZE if data_size is None else data_size),
        ]
    )


def resample_clip(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One-shot resampling of a whole clip to mono float32 (the streaming path's soxr quality)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if from_rate == to_rate:
        return samples
    return np.asarray(soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to signed 16-bit little-endian integers."""
    pcm: np.ndarray = np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    return pcm


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to signed 16-bit little-endian bytes."""
    return float_to_int16(samples).tobytes()


_MULAW_BIAS = 0x84
_MULAW_CLIP_14 = 8159  # the reference codec works on 14-bit magnitudes


def pcm16_to_mulaw(pcm: np.ndarray) -> bytes:
    """G.711 mu-law encoding of int16 samples, bit-exact with the ITU/Sun reference."""
    x = pcm.astype(np.int32) >> 2  # 14-bit, floor shift as the reference does
    negative = x < 0
    magnitude = np.minimum(np.where(negative, -x, x), _MULAW_CLIP_14) + (_MULAW_BIAS >> 2)
    segment = np.maximum(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0)
    code = np.where(
        segment > 7,  # past the last segment: the largest code
        0x7F,
        (np.minimum(segment, 7) << 4) | ((magnitude >> (segment + 1)) & 0x0F),
    )
    encoded = code ^ np.where(negative, 0x7F, 0xFF)
    return encoded.astype(np.uint8).tobytes()


def mulaw_to_pcm16(data: bytes) -> np.ndarray:
    """G.711 mu-law decoding to int16 samples."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


class StreamEncoder:
    """Turns a model's float chunks into the requested wire format, chunk by chunk.

    The resampler keeps its filter state between chunks, so chunk boundaries leave
    no clicks or gaps; `finish()` flushes the samples it still holds, and a
    compressed stream's last frames and trailer.
    """

    def __init__(self, model_rate: int, output_rate: int, fmt: AudioFormat):
        self.fmt = fmt
        self.output_rate = output_rate
        self._resampler = (
            soxr.ResampleStream(model_rate, output_rate, 1, dtype="float32", quality="HQ")
            if model_rate != output_rate
            else None
        )
        self._header_pending = fmt is AudioFormat.wav
        codec = codec_of(fmt)
        self._compressed = CompressedStream(codec, output_rate) if codec is not None else None

    def encode(self, samples: np.ndarray, last: bool = False) -> bytes:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        if self._compressed is not None:
            body = self._compressed.encode(float_to_int16(samples))
            return body + self._compressed.finish() if last else body
        if self.fmt is AudioFormat.mulaw:
            body = pcm16_to_mulaw(float_to_int16(samples))
        else:
            body = float_to_pcm16(samples)
        if self._header_pending:
            self._header_pending = False
            body = wav_header(self.output_rate) + body
        return body

    def finish(self) -> bytes:
        return self.encode(np.zeros(0, dtype=np.float32), last=True)
