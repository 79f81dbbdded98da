"""Compressed audio streams (Opus in Ogg, MP3, FLAC, AAC in ADTS) through FFmpeg's
encoders, by PyAV: 16-bit PCM goes in chunk by chunk as a model makes it, and
the container's bytes come out as soon as each codec frame is encoded.

Low latency comes from the muxer options: every packet is flushed to the output
at once (`flush_packets`), and an Ogg page holds one Opus packet (`page_duration`
20 ms) instead of a second of them. The output is not seekable, so a FLAC stream
carries no total length and an MP3 no gapless (LAME) header: a decoder then keeps
the encoder's delay (MP3: 1,105 samples at 24 kHz) at the start.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .contract import AudioFormat


@dataclass(frozen=True)
class Codec:
    container: str  # FFmpeg's muxer
    encoder: str  # FFmpeg's encoder
    bit_rate: int | None  # bits/s; None: lossless
    rates: tuple[int, ...] | None  # sample rates the encoder takes; None: any
    content_type: str
    frame_samples: int  # samples in one codec frame at 24 kHz (the most a first byte waits)


# Bit rates for one voice: Opus is transparent for speech at 32 kbit/s, MP3 and AAC
# need about twice that.
CODECS: dict[str, Codec] = {
    "opus": Codec(
        "ogg", "libopus", 32_000, (8000, 12000, 16000, 24000, 48000), "audio/ogg; codecs=opus", 480
    ),
    "mp3": Codec(
        "mp3",
        "libmp3lame",
        64_000,
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
        "audio/mpeg",
        576,
    ),
    "flac": Codec("flac", "flac", None, None, "audio/flac", 4608),
    "aac": Codec(
        "adts",
        "aac",
        64_000,
        (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
        "audio/aac",
        1024,
    ),
}
_MUXER_OPTIONS = {"flush_packets": "1"}
_OGG_OPTIONS = {**_MUXER_OPTIONS, "page_duration": "20000"}  # microseconds


def codec_of(fmt: AudioFormat) -> Codec | None:
    """The codec of a compressed format; None for PCM, WAV and µ-law."""
    return CODECS.get(fmt.value)


def check_rate(fmt: AudioFormat, rate: int) -> str | None:
    """Why `fmt` cannot be sent at `rate`, or None when it can."""
    codec = codec_of(fmt)
    if codec is None or codec.rates is None or rate in codec.rates:
        return None
    return f"{fmt.value} takes {', '.join(map(str, codec.rates))} Hz, not {rate}"


class _Sink(io.RawIOBase):
    """Where the muxer writes: bytes kept until the stream takes them."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class CompressedStream:
    """One compressed stream of mono 16-bit PCM at `rate`."""

    def __init__(self, codec: Codec, rate: int):
        import av  # only the Trusses that offer compressed formats install it

        self._av = av
        self._rate = rate
        self._sink = _Sink()
        options = _OGG_OPTIONS if codec.container == "ogg" else _MUXER_OPTIONS
        self._container = av.open(self._sink, mode="w", format=codec.container, options=options)
        self._stream: Any = self._container.add_stream(codec.encoder, rate=rate, layout="mono")
        if codec.bit_rate is not None:
            self._stream.codec_context.bit_rate = codec.bit_rate
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        """`pcm`: int16 samples; returns the bytes complete so far (maybe none)."""
        if len(pcm):
            frame = self._av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._pts
            self._pts += len(pcm)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        """Flushes the encoder and writes the container's trailer."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
